/* SPDX-License-Identifier: Apache-2.0 */
/* Monotonic and wall clock readings in nanoseconds. */
#ifndef CAD_CLOCK_H
#define CAD_CLOCK_H

#include <stdint.h>
#include <time.h>

#define CAD_NS_PER_SEC 1000000000LL
#define CAD_NS_PER_MS 1000000LL

static inline int64_t clock_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * CAD_NS_PER_SEC + ts.tv_nsec;
}

/* A CLOCK_REALTIME timespec `ns_from_now` ahead, for condition waits. */
static inline struct timespec clock_abs_in(int64_t ns_from_now)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t t = (int64_t)ts.tv_nsec + ns_from_now;
	ts.tv_sec += t / CAD_NS_PER_SEC;
	ts.tv_nsec = t % CAD_NS_PER_SEC;
	return ts;
}

#endif
