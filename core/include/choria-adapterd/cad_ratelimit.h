/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cad_ratelimit.h - at most one log line per interval for a repeated event,
 * with the number of events silenced in between. Lock-free, so that the
 * per-message paths of the pipeline and of modules never contend on it.
 * Header only, C only (C11 atomics). A zeroed struct is ready to use.
 */
#ifndef CAD_RATELIMIT_H
#define CAD_RATELIMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cad_clock.h"

struct cad_ratelimit {
	_Atomic int64_t next_ns;     /* earliest cad_clock_mono_ns() for the next line */
	_Atomic uint64_t suppressed; /* events since the last line */
};

/* True when the caller may log now, and then no other caller may for
 * interval_ns. *suppressed (when not NULL) receives how many events were
 * silenced since the previous line. */
static inline bool cad_ratelimit_allow(struct cad_ratelimit *rl, int64_t interval_ns,
				       uint64_t *suppressed)
{
	int64_t now = cad_clock_mono_ns();
	int64_t next = atomic_load_explicit(&rl->next_ns, memory_order_relaxed);
	if (now >= next && atomic_compare_exchange_strong(&rl->next_ns, &next, now + interval_ns)) {
		uint64_t n = atomic_exchange(&rl->suppressed, 0);
		if (suppressed)
			*suppressed = n;
		return true;
	}
	atomic_fetch_add_explicit(&rl->suppressed, 1, memory_order_relaxed);
	return false;
}

#endif /* CAD_RATELIMIT_H */
