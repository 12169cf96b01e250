/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One adapter: an ingest module instance, a bounded queue, the stream
 * workers and a stream module instance, with the counters that account for
 * every message it received. Its lifecycle is in core/adapters.h.
 */
#ifndef CAD_ADAPTER_H
#define CAD_ADAPTER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <choria-adapterd/cad_module.h>
#include <choria-adapterd/cad_ratelimit.h>

#include "adapters.h"
#include "counters.h"

struct queue;
struct stream_workers;
struct adapter;

/* A module's warnings, and the adapter's drops, are logged at most once a
 * second each. */
#define ADAPTER_LOG_EVERY_NS CAD_NS_PER_SEC

/* What the host knows of one module instance: handed to the module as its
 * opaque struct cad_context. */
struct cad_context {
	struct adapter *adapter;
	const struct cad_module *module;
	void *instance;
	char prefix[160]; /* "adapter NAME: TYPE: " */
	struct cad_ratelimit log_limit;
};

/* Upper bounds of the receipt-to-acknowledgement histogram, in
 * nanoseconds and as the exposition's `le` text. */
#define ADAPTER_TIME_BUCKETS 17
struct adapter_time_bucket {
	uint64_t ns;
	const char *le;
};
extern const struct adapter_time_bucket adapter_time_buckets[ADAPTER_TIME_BUCKETS];

/* Every message received is, at any moment, in exactly one of: rejected,
 * dropped, published, lost, or in flight (queued or held by the stream
 * module). In flight is derived, accepted - published - lost, so the
 * balance holds without a counter to move between the queue and the
 * stream.
 *
 * Allocated apart from the adapter and counted by reference: when a reload
 * replaces an adapter, the new instance shares the old one's counters, so
 * both add into them during the hand-over and an adapter name keeps one
 * set of series whose counts simply go on. */
struct adapter_stats {
	_Atomic unsigned refs;
	_Atomic uint64_t received;
	_Atomic uint64_t received_bytes;
	_Atomic uint64_t published;
	_Atomic uint64_t published_bytes;
	_Atomic uint64_t retries;
	_Atomic uint64_t accepted;    /* taken into the queue */
	_Atomic uint64_t time_sum_ns; /* receipt to acknowledgement */
	_Atomic uint64_t time_count;
	/* The same times by bucket: slot i counts times at most
	 * adapter_time_buckets[i].ns and above the bound before it; the last
	 * slot counts the rest. Not cumulative, so one increment each. */
	_Atomic uint64_t time_hist[ADAPTER_TIME_BUCKETS + 1];
	struct counter_set rejected; /* by reason, before the queue */
	struct counter_set dropped;  /* by reason, refused by the queue */
	struct counter_set lost;     /* by reason, after the queue */
	struct cad_ratelimit drop_limit;
};

struct conn_state {
	const struct cad_context *ctx;
	char name[48];
	bool up;
};

struct adapter {
	char *name;
	char *identity; /* as it was when the adapter was created */
	/* What its modules are handed: the daemon's services with this
	 * identity, which no reload changes under them. */
	struct cad_host host;
	struct queue *queue;
	int64_t queue_wait_ns; /* how long a full queue may hold an ingest back */
	/* Bytes of the messages accepted and not yet settled, in the queue
	 * or in the stream module, and the most there may be. */
	_Atomic size_t held_bytes;
	size_t max_bytes;
	struct cad_context ingest;
	struct cad_context stream;
	long ingest_workers;
	long stream_workers;
	struct stream_workers *workers;
	struct adapter_stats *stats; /* shared with a predecessor */
	bool ingest_started;
	uint64_t published_before_drain; /* for the drain's log lines */
	uint64_t lost_before_drain;
	_Atomic int64_t drain_deadline_ns; /* 0 until adapter_drain_begin() */

	pthread_mutex_t conns_lock;
	size_t n_conns, conns_cap;
	struct conn_state *conns; /* grows as the modules report connections */
};

/* Account one message acknowledged `ns` after its receipt. */
static inline void adapter_stats_time(struct adapter_stats *st, uint64_t ns)
{
	size_t i = 0;
	while (i < ADAPTER_TIME_BUCKETS && ns > adapter_time_buckets[i].ns)
		i++;
	atomic_fetch_add_explicit(&st->time_hist[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&st->time_sum_ns, ns, memory_order_relaxed);
	atomic_fetch_add_explicit(&st->time_count, 1, memory_order_relaxed);
}

/* New counters, all zero, with one reference; NULL without memory. */
struct adapter_stats *adapter_stats_new(void);
struct adapter_stats *adapter_stats_ref(struct adapter_stats *st);
void adapter_stats_unref(struct adapter_stats *st); /* accepts NULL */

/* Messages in flight: accepted and not yet published or lost. With
 * shared counters, those of every instance that shares them. */
uint64_t adapter_in_flight(struct adapter *a);
/* Connections reported down by the modules. */
size_t adapter_conns_down(struct adapter *a);

#endif
