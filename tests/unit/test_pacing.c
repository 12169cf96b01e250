/* SPDX-License-Identifier: Apache-2.0 */
/* The stream modules' pacing: capped exponential backoff, the window's
 * low-water mark, and the bounded condition wait. */
#include <criterion/criterion.h>
#include <pthread.h>

#include "pacing.h"
#include "publish_window.h"

Test(pacing, backoff_doubles_from_the_first_delay_up_to_the_cap)
{
	static const int64_t want[] = {100, 100, 200, 400, 800, 1600, 3200, 5000, 5000};
	for (uint32_t attempts = 0; attempts < sizeof(want) / sizeof(want[0]); attempts++)
		cr_assert_eq(pacing_backoff_ms(100, 5000, attempts), want[attempts],
			     "attempt %u: %lld ms", attempts,
			     (long long)pacing_backoff_ms(100, 5000, attempts));
	cr_assert_eq(pacing_backoff_ms(250, 5000, UINT32_MAX), 5000, "no overflow, however many");
	cr_assert_eq(pacing_backoff_ms(100, 50, 1), 50, "the cap wins over the first delay");
}

Test(pacing, waiters_wake_when_a_quarter_of_the_window_is_free)
{
	cr_assert_eq(publish_window_low_water(256), 192);
	cr_assert_eq(publish_window_low_water(2560), 1920);
	cr_assert_eq(publish_window_low_water(8), 6);
	/* Under 4, one free place is enough. */
	cr_assert_eq(publish_window_low_water(3), 2);
	cr_assert_eq(publish_window_low_water(1), 0);
}

/* A timed wait never ends before its time (spurious wake-ups aside), so
 * a wait that ignored its deadline would take its 45 ms at least each
 * time: that is the bound counted against, not how long a wait takes on
 * a busy machine. */
#define PACING_CAP_NS (45 * 1000000LL)

Test(pacing, a_condition_wait_ends_by_its_deadline_or_after_50_ms, .timeout = 30)
{
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cond;
	pacing_cond_init(&cond);
	pthread_mutex_lock(&lock);

	/* Not before its deadline. */
	int64_t t0 = cad_clock_mono_ns();
	pacing_cond_wait(&cond, &lock, t0 + 10 * 1000000LL);
	int64_t waited = cad_clock_mono_ns() - t0;
	cr_assert_geq(waited, 9 * 1000000LL, "%lld ns to a 10 ms deadline", (long long)waited);

	/* By its deadline: waits to a deadline 1 ms ahead, for half a second,
	 * are many more than waits held to the 50 ms could be. */
	int waits = 0;
	t0 = cad_clock_mono_ns();
	int64_t span;
	while ((span = cad_clock_mono_ns() - t0) < 500 * 1000000LL) {
		pacing_cond_wait(&cond, &lock, cad_clock_mono_ns() + 1000000LL);
		waits++;
	}
	cr_assert_gt(waits, 1 + span / PACING_CAP_NS, "%d waits to a 1 ms deadline in %lld ms",
		     waits, (long long)(span / 1000000LL));

	/* Without a deadline, or with one far away, after 50 ms: not sooner,
	 * and not at the deadline (the test's timeout would end it first). */
	t0 = cad_clock_mono_ns();
	pacing_cond_wait(&cond, &lock, 0);
	waited = cad_clock_mono_ns() - t0;
	cr_assert_geq(waited, PACING_CAP_NS, "%lld ns without a deadline", (long long)waited);
	t0 = cad_clock_mono_ns();
	pacing_cond_wait(&cond, &lock, t0 + 3600 * 1000000000LL);
	waited = cad_clock_mono_ns() - t0;
	cr_assert_geq(waited, PACING_CAP_NS, "%lld ns to a deadline an hour away",
		      (long long)waited);

	pthread_mutex_unlock(&lock);
	pthread_cond_destroy(&cond);
}
