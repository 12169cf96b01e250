/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cad_clock.h - the one monotonic clock of choria-adapterd and its modules.
 *
 * Deadlines, retry times and cad_msg.received_ns are all CLOCK_MONOTONIC
 * nanoseconds; the daemon, its pipeline and the bundled modules read the
 * clock here so that the times they pass each other (a drain deadline, a
 * message's arrival) compare. Header only: nothing to link.
 */
#ifndef CAD_CLOCK_H
#define CAD_CLOCK_H

#include <stdint.h>
#include <time.h>

#define CAD_NS_PER_SEC 1000000000LL
#define CAD_NS_PER_MS 1000000LL

/* CLOCK_MONOTONIC now, in nanoseconds. */
static inline int64_t cad_clock_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * CAD_NS_PER_SEC + ts.tv_nsec;
}

/* Nanoseconds (a time or a duration, not negative) as a timespec, for
 * pthread_cond_timedwait() on a CLOCK_MONOTONIC condition, nanosleep()
 * or sigtimedwait(). */
static inline struct timespec cad_clock_timespec(int64_t ns)
{
	return (struct timespec){.tv_sec = (time_t)(ns / CAD_NS_PER_SEC),
				 .tv_nsec = (long)(ns % CAD_NS_PER_SEC)};
}

#endif /* CAD_CLOCK_H */
