/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Concurrency & locking: the adapter is built, started, stopped and freed
 * on the main thread. Module threads reach it only through struct
 * cad_host, which touches the queue, the atomic counters and `conns_lock`.
 */
#include "adapter.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <choria-adapterd/cad_clock.h>

#include "host.h"
#include "log.h"
#include "queue.h"
#include "stream_workers.h"

/* From half a millisecond (a local JetStream acknowledges in less) to five
 * minutes (a stream that was down for a while). */
const struct adapter_time_bucket adapter_time_buckets[ADAPTER_TIME_BUCKETS] = {
	{500000ULL, "0.0005"},  {1000000ULL, "0.001"},    {2500000ULL, "0.0025"},
	{5000000ULL, "0.005"},  {10000000ULL, "0.01"},    {25000000ULL, "0.025"},
	{50000000ULL, "0.05"},  {100000000ULL, "0.1"},    {250000000ULL, "0.25"},
	{500000000ULL, "0.5"},  {1000000000ULL, "1"},     {2500000000ULL, "2.5"},
	{5000000000ULL, "5"},   {10000000000ULL, "10"},   {30000000000ULL, "30"},
	{60000000000ULL, "60"}, {300000000000ULL, "300"},
};

static int create_instance(struct adapter *a, struct cad_context *ctx,
			   const struct cad_config *block)
{
	ctx->adapter = a;
	ctx->module = block->module->desc;
	snprintf(ctx->prefix, sizeof(ctx->prefix), "adapter %s: %s: ", a->name,
		 block->module->type);
	return ctx->module->create(&ctx->instance, &a->host, ctx, block);
}

struct adapter_stats *adapter_stats_new(void)
{
	struct adapter_stats *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	atomic_init(&st->refs, 1);
	counters_init(&st->rejected);
	counters_init(&st->dropped);
	counters_init(&st->lost);
	return st;
}

struct adapter_stats *adapter_stats_ref(struct adapter_stats *st)
{
	atomic_fetch_add(&st->refs, 1);
	return st;
}

void adapter_stats_unref(struct adapter_stats *st)
{
	if (!st || atomic_fetch_sub(&st->refs, 1) != 1)
		return;
	counters_destroy(&st->rejected);
	counters_destroy(&st->dropped);
	counters_destroy(&st->lost);
	free(st);
}

int adapter_new(struct adapter **out, const struct adapter_config *ac, const char *identity,
		struct adapter *predecessor)
{
	struct adapter *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	pthread_mutex_init(&a->conns_lock, NULL);
	a->stats = predecessor ? adapter_stats_ref(predecessor->stats) : adapter_stats_new();
	if (!a->stats) {
		adapter_free(a);
		return -ENOMEM;
	}
	a->identity = strdup(identity ? identity : host_services.identity);
	if (!a->identity) {
		adapter_free(a);
		return -ENOMEM;
	}
	a->host = host_services;
	a->host.identity = a->identity;
	a->ingest_workers = ac->ingest.workers;
	a->stream_workers = ac->stream.workers;
	a->queue_wait_ns = (int64_t)ac->queue_wait_ms * CAD_NS_PER_MS;
	a->max_bytes = (size_t)ac->max_bytes;
	int rc = -ENOMEM;
	a->name = strdup(ac->name);
	if (!a->name)
		goto fail;
	rc = queue_new(&a->queue, (size_t)ac->queue_len);
	if (rc != 0)
		goto fail;
	/* Both are created even when the first fails, so that every config
	 * error in the adapter is reported at once. */
	int rc_in = create_instance(a, &a->ingest, &ac->ingest);
	int rc_out = create_instance(a, &a->stream, &ac->stream);
	rc = rc_in ? rc_in : rc_out;
	if (rc != 0)
		goto fail;
	*out = a;
	return 0;
fail:
	adapter_free(a);
	return rc;
}

int adapter_start(struct adapter *a)
{
	int rc = a->stream.module->start(a->stream.instance);
	if (rc != 0) {
		log_error("adapter %s: the %s stream could not start: %s", a->name,
			  a->stream.module->type, strerror(-rc));
		return rc;
	}
	rc = stream_workers_start(&a->workers, a, (unsigned)a->stream_workers);
	if (rc != 0) {
		log_error("adapter %s: the %s stream workers could not start: %s", a->name,
			  a->stream.module->type, strerror(-rc));
		return rc;
	}
	rc = a->ingest.module->start(a->ingest.instance);
	if (rc != 0) {
		log_error("adapter %s: the %s ingest could not start: %s", a->name,
			  a->ingest.module->type, strerror(-rc));
		return rc;
	}
	a->ingest_started = true;
	char desc[1024];
	adapter_describe(a, desc, sizeof(desc));
	log_info("adapter %s: started: %s", a->name, desc);
	return 0;
}

void adapter_stop_ingest(struct adapter *a)
{
	if (a->ingest_started) {
		a->ingest.module->stop(a->ingest.instance);
		a->ingest_started = false;
	}
	queue_close(a->queue);
}

void adapter_drain_begin(struct adapter *a, int64_t deadline_ns)
{
	a->published_before_drain = atomic_load(&a->stats->published);
	a->lost_before_drain = counters_get(&a->stats->lost, "shutdown");
	atomic_store(&a->drain_deadline_ns, deadline_ns ? deadline_ns : 1);
	stream_workers_set_deadline(a->workers, deadline_ns);
}

void adapter_drain(struct adapter *a, int64_t deadline_ns)
{
	if (atomic_load(&a->drain_deadline_ns) == 0)
		adapter_drain_begin(a, deadline_ns);
	uint64_t before = a->published_before_drain;
	stream_workers_stop(a->workers, deadline_ns);
	a->workers = NULL;
	/* Whatever the workers did not take before the deadline. */
	void *item;
	uint64_t left = 0;
	while (queue_pop(a->queue, &item, 0) == 0) {
		counters_add(&a->stats->lost, "shutdown", 1);
		host_msg_release(a, item);
		left++;
	}
	/* Counters shared with a successor go on counting: only what was
	 * added since the drain began is this drain's. */
	uint64_t lost = counters_get(&a->stats->lost, "shutdown") - a->lost_before_drain;
	if (lost)
		log_error("adapter %s: %" PRIu64
			  " messages could not be delivered before the drain timeout (%" PRIu64
			  " were still queued)",
			  a->name, lost, left);
	log_info("adapter %s: drained, %" PRIu64 " messages published meanwhile", a->name,
		 atomic_load(&a->stats->published) - before);
}

void adapter_free(struct adapter *a)
{
	if (!a)
		return;
	if (a->workers)
		stream_workers_stop(a->workers, 0);
	if (a->ingest.instance)
		a->ingest.module->destroy(a->ingest.instance);
	if (a->stream.instance)
		a->stream.module->destroy(a->stream.instance);
	if (a->queue) {
		void *item;
		queue_close(a->queue);
		while (queue_pop(a->queue, &item, 0) == 0)
			host_msg_free(item);
	}
	queue_free(a->queue);
	adapter_stats_unref(a->stats);
	pthread_mutex_destroy(&a->conns_lock);
	free(a->conns);
	free(a->name);
	free(a->identity);
	free(a);
}

uint64_t adapter_in_flight(struct adapter *a)
{
	/* Settled counts are read first: read after `accepted`, a message
	 * settled in between would show as a negative flight. */
	uint64_t settled = atomic_load(&a->stats->published) + counters_total(&a->stats->lost);
	uint64_t accepted = atomic_load(&a->stats->accepted);
	return accepted > settled ? accepted - settled : 0;
}

struct label_list {
	char *buf;
	size_t len, used;
};

static void append_label(const char *label, uint64_t value, void *arg)
{
	struct label_list *l = arg;
	if (l->used < l->len)
		l->used += (size_t)snprintf(l->buf + l->used, l->len - l->used, "%s%s=%" PRIu64,
					    l->used ? ", " : " (", label, value);
}

/* " (reason=n, reason=n)" or "" for an empty set. */
static void format_labels(struct counter_set *s, char *buf, size_t len)
{
	struct label_list l = {buf, len - 1, 0};
	buf[0] = '\0';
	counters_each(s, append_label, &l);
	if (l.used)
		strcat(buf, ")");
}

void adapter_log_stats(struct adapter *a)
{
	char rej[512], drop[512], lost[512];
	format_labels(&a->stats->rejected, rej, sizeof(rej));
	format_labels(&a->stats->dropped, drop, sizeof(drop));
	format_labels(&a->stats->lost, lost, sizeof(lost));
	log_info("adapter %s: received=%" PRIu64 " published=%" PRIu64 " in_flight=%" PRIu64
		 " retries=%" PRIu64 " rejected=%" PRIu64 "%s dropped=%" PRIu64 "%s lost=%" PRIu64
		 "%s",
		 a->name, atomic_load(&a->stats->received), atomic_load(&a->stats->published),
		 adapter_in_flight(a), atomic_load(&a->stats->retries),
		 counters_total(&a->stats->rejected), rej, counters_total(&a->stats->dropped), drop,
		 counters_total(&a->stats->lost), lost);
}

const char *adapter_name(const struct adapter *a)
{
	return a->name;
}

void adapter_describe(struct adapter *a, char *buf, size_t len)
{
	char in[512] = "", out[512] = "";
	if (a->ingest.module->describe)
		a->ingest.module->describe(a->ingest.instance, in, sizeof(in));
	if (a->stream.module->describe)
		a->stream.module->describe(a->stream.instance, out, sizeof(out));
	snprintf(buf, len,
		 "ingest %s (%ld worker%s%s%s) -> queue %zu -> stream %s (%ld worker%s%s%s)",
		 a->ingest.module->type, a->ingest_workers, a->ingest_workers == 1 ? "" : "s",
		 *in ? ", " : "", in, queue_capacity(a->queue), a->stream.module->type,
		 a->stream_workers, a->stream_workers == 1 ? "" : "s", *out ? ", " : "", out);
}

size_t adapter_conns_down(struct adapter *a)
{
	size_t down = 0;
	pthread_mutex_lock(&a->conns_lock);
	for (size_t i = 0; i < a->n_conns; i++)
		down += !a->conns[i].up;
	pthread_mutex_unlock(&a->conns_lock);
	return down;
}
