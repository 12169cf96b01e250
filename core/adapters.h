/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the daemon asks of the adapter pipeline, and all it knows of it.
 * The pipeline (adapters/) implements these; the core holds adapters only
 * as opaque pointers. Declared here, on the core's side, so that the
 * pipeline depends on the core and never the other way round.
 *
 * Lifecycle, driven by the daemon's main thread:
 *   adapter_new()         create both module instances (no network)
 *   adapter_start()       stream side first, then ingest
 *   adapter_stop_ingest() no more input; the queue is closed
 *   adapter_drain_begin() workers publish what is queued until the deadline
 *                         (every adapter's, before any is waited for)
 *   adapter_drain()       workers are joined; leftovers are counted as lost
 *   adapter_free()
 */
#ifndef CAD_ADAPTERS_H
#define CAD_ADAPTERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <choria-adapterd/cad_module.h>

#include "config.h"

struct adapter;

/* Create the adapter and both module instances from a checked block.
 * Module config errors are reported by the modules. A `predecessor` (the
 * instance a reload replaces, or NULL) shares its counters with the new
 * one, so that the adapter's series go on through the hand-over.
 * `identity` (NULL: the host's default) is copied: the adapter's modules
 * see it as host->identity for the adapter's life, whatever a reload
 * changes afterwards. */
CAD_MUSTCHECK int adapter_new(struct adapter **out, const struct adapter_config *ac,
			      const char *identity, struct adapter *predecessor);
CAD_MUSTCHECK int adapter_start(struct adapter *a);
void adapter_stop_ingest(struct adapter *a);
/* Let the stream side publish what is queued and in flight until
 * deadline_ns (CLOCK_MONOTONIC), without waiting: the adapters of a daemon
 * drain side by side, so that one slow stream does not use up the time of
 * the others. */
void adapter_drain_begin(struct adapter *a, int64_t deadline_ns);
/* Wait for the drain begun with the same deadline, join the workers, and
 * count whatever remains as lost. */
void adapter_drain(struct adapter *a, int64_t deadline_ns);
void adapter_free(struct adapter *a); /* accepts NULL */

const char *adapter_name(const struct adapter *a);
/* One line per adapter with every counter, for the log. */
void adapter_log_stats(struct adapter *a);
/* A one-line description of the adapter for `choria-adapterd -t`. */
void adapter_describe(struct adapter *a, char *buf, size_t len);

/* What the metrics endpoint answers, without the HTTP: every adapter's
 * counters in the Prometheus text exposition format (version 0.0.4), and
 * the health verdict as a short JSON document. Kept apart from the server
 * so that the text can be checked byte for byte. */

/* Where the daemon is in its life; only RUNNING can be healthy. */
enum metrics_phase {
	METRICS_STARTING,
	METRICS_RUNNING,
	METRICS_STOPPING,
};

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* How the configuration was loaded: at start (a success) and on each
 * reload since. */
struct config_status {
	bool last_ok;           /* the last load succeeded */
	int64_t success_unix_s; /* when the running configuration was loaded */
	uint64_t reloads_ok, reloads_failed;
	char error[256]; /* why the last reload failed; "" after a success */
};

/* The exposition of `n` adapters, the configuration's state (NULL: none)
 * and the daemon's build, malloc'd and NUL-terminated into *out (its
 * length in *len). `identity` labels every series (NULL: each adapter's
 * own). An adapter name must appear once in `adapters`. Reads only
 * atomics, the queue's length and, briefly, each adapter's `conns_lock`.
 * Returns 0 or -ENOMEM. */
CAD_MUSTCHECK int metrics_render(char **out, size_t *len, struct adapter *const *adapters, size_t n,
				 const char *identity, const struct config_status *config,
				 const char *version);

/* The health verdict: *healthy when the daemon runs, every connection the
 * modules reported is up and no queue is full; *out is
 * {"status":"healthy"} or {"status":"unhealthy","reasons":[...]}, malloc'd,
 * with a "config" member when `config` is given, which a failed reload
 * does not make unhealthy. Returns 0 or -ENOMEM. */
CAD_MUSTCHECK int metrics_health(char **out, size_t *len, bool *healthy,
				 struct adapter *const *adapters, size_t n,
				 const struct config_status *config, enum metrics_phase phase);

#endif
