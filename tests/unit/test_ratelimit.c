/* SPDX-License-Identifier: Apache-2.0 */
/* The shared log rate limiter: one line per interval, the rest counted. */
#include <criterion/criterion.h>
#include <pthread.h>

#include <choria-adapterd/cad_ratelimit.h>

Test(ratelimit, the_first_call_passes_and_the_next_ones_are_counted)
{
	struct cad_ratelimit rl = {0};
	uint64_t suppressed = 99;
	cr_assert(cad_ratelimit_allow(&rl, 3600 * CAD_NS_PER_SEC, &suppressed));
	cr_assert_eq(suppressed, 0);
	for (int i = 0; i < 5; i++)
		cr_assert_not(cad_ratelimit_allow(&rl, 3600 * CAD_NS_PER_SEC, &suppressed));
	cr_assert_eq(atomic_load(&rl.suppressed), 5);
	cr_assert_not(cad_ratelimit_allow(&rl, 3600 * CAD_NS_PER_SEC, NULL), "NULL is accepted");
}

Test(ratelimit, the_next_line_after_the_interval_reports_what_was_silenced)
{
	struct cad_ratelimit rl = {0};
	uint64_t suppressed = 0;
	const int64_t every = 20 * CAD_NS_PER_MS;
	int64_t first = cad_clock_mono_ns();
	cr_assert(cad_ratelimit_allow(&rl, every, &suppressed));
	/* Refused until the interval is over, counted each time; then one
	 * passes with the count (bounded generously for a loaded machine). */
	uint64_t refused = 0;
	bool passed = false;
	while (!passed && cad_clock_mono_ns() - first < 30 * CAD_NS_PER_SEC) {
		passed = cad_ratelimit_allow(&rl, every, &suppressed);
		if (!passed)
			refused++;
	}
	cr_assert(passed);
	cr_assert_geq(cad_clock_mono_ns() - first, every, "not before the interval");
	cr_assert_eq(suppressed, refused);
	cr_assert_eq(atomic_load(&rl.suppressed), 0);
}

#define THREADS 4
#define CALLS 10000

static void *ratelimit_hammer(void *arg)
{
	struct cad_ratelimit *rl = arg;
	uintptr_t allowed = 0;
	for (int i = 0; i < CALLS; i++)
		allowed += cad_ratelimit_allow(rl, 3600 * CAD_NS_PER_SEC, NULL);
	return (void *)allowed;
}

Test(ratelimit, one_line_among_threads_racing_for_it)
{
	struct cad_ratelimit rl = {0};
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, ratelimit_hammer, &rl), 0);
	uintptr_t allowed = 0;
	for (int i = 0; i < THREADS; i++) {
		void *r;
		pthread_join(t[i], &r);
		allowed += (uintptr_t)r;
	}
	cr_assert_eq(allowed, 1);
	cr_assert_eq(atomic_load(&rl.suppressed), THREADS * CALLS - 1);
}
