/* SPDX-License-Identifier: Apache-2.0 */
/* The shared clock header: its units and its timespec conversion. */
#include <criterion/criterion.h>

#include <choria-adapterd/cad_clock.h>

Test(clock, units)
{
	cr_assert_eq(CAD_NS_PER_MS * 1000, CAD_NS_PER_SEC);
	cr_assert_eq(CAD_NS_PER_SEC, 1000000000LL);
}

Test(clock, reads_clock_monotonic_in_nanoseconds)
{
	struct timespec ts;
	int64_t before = cad_clock_mono_ns();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t after = cad_clock_mono_ns();
	int64_t libc = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
	cr_assert(before <= libc && libc <= after, "%lld <= %lld <= %lld", (long long)before,
		  (long long)libc, (long long)after);
}

Test(clock, timespec_splits_seconds_and_nanoseconds)
{
	struct timespec ts = cad_clock_timespec(3 * CAD_NS_PER_SEC + 250 * CAD_NS_PER_MS + 7);
	cr_assert_eq(ts.tv_sec, 3);
	cr_assert_eq(ts.tv_nsec, 250000007);
	ts = cad_clock_timespec(999999999);
	cr_assert_eq(ts.tv_sec, 0);
	cr_assert_eq(ts.tv_nsec, 999999999);
	ts = cad_clock_timespec(0);
	cr_assert_eq(ts.tv_sec, 0);
	cr_assert_eq(ts.tv_nsec, 0);
	/* A time far along the clock keeps every nanosecond. */
	int64_t t = 123456789LL * CAD_NS_PER_SEC + 1;
	ts = cad_clock_timespec(t);
	cr_assert_eq((int64_t)ts.tv_sec * CAD_NS_PER_SEC + ts.tv_nsec, t);
}
