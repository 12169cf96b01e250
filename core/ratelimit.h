/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A log rate limiter: at most one line per interval for a given event, with
 * the number of events that were suppressed in between. Lock-free, so the
 * per-message paths that use it never contend.
 */
#ifndef CAD_RATELIMIT_H
#define CAD_RATELIMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <choria-adapterd/cad_clock.h>

struct ratelimit {
	_Atomic int64_t next_ns;     /* earliest time the next line may go out */
	_Atomic uint64_t suppressed; /* events since the last line */
};

#define RATELIMIT_INTERVAL_NS CAD_NS_PER_SEC

/* True when the caller may log now; *suppressed receives how many events
 * were silenced since the previous line. */
static inline bool ratelimit_allow(struct ratelimit *rl, uint64_t *suppressed)
{
	int64_t now = cad_clock_mono_ns();
	int64_t next = atomic_load_explicit(&rl->next_ns, memory_order_relaxed);
	if (now >= next &&
	    atomic_compare_exchange_strong(&rl->next_ns, &next, now + RATELIMIT_INTERVAL_NS)) {
		*suppressed = atomic_exchange(&rl->suppressed, 0);
		return true;
	}
	atomic_fetch_add_explicit(&rl->suppressed, 1, memory_order_relaxed);
	return false;
}

#endif
