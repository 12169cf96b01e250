/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the metrics endpoint answers, without the HTTP: every adapter's
 * counters in the Prometheus text exposition format (version 0.0.4), and
 * the health verdict as a short JSON document. Kept apart from the server
 * so that the text can be checked byte for byte.
 */
#ifndef CAD_METRICS_RENDER_H
#define CAD_METRICS_RENDER_H

#include <stdbool.h>
#include <stddef.h>

#include "cad_module.h"

struct adapter;

/* Where the daemon is in its life; only RUNNING can be healthy. */
enum metrics_phase {
	METRICS_STARTING,
	METRICS_RUNNING,
	METRICS_STOPPING,
};

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* The exposition of `n` adapters and the daemon's build, malloc'd and
 * NUL-terminated into *out (its length in *len). Reads only atomics, the
 * queue's length and, briefly, each adapter's `conns_lock`. Returns 0 or
 * -ENOMEM. */
CAD_MUSTCHECK int metrics_render(char **out, size_t *len, struct adapter *const *adapters,
				 size_t n, const char *version);

/* The health verdict: *healthy when the daemon runs, every connection the
 * modules reported is up and no queue is full; *out is
 * {"status":"healthy"} or {"status":"unhealthy","reasons":[...]}, malloc'd.
 * Returns 0 or -ENOMEM. */
CAD_MUSTCHECK int metrics_health(char **out, size_t *len, bool *healthy,
				 struct adapter *const *adapters, size_t n,
				 enum metrics_phase phase);

#endif
