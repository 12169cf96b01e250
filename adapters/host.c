/* SPDX-License-Identifier: Apache-2.0 */
/*
 * struct cad_host: what modules may ask of the daemon. These functions run
 * on NATS delivery threads and stream worker threads; they touch only
 * atomics, the adapter's queue and the rate-limited log.
 */
#include "host.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <choria-adapterd/cad_clock.h>
#include <choria-adapterd/cad_text.h>

#include "adapter.h"
#include "config_opts.h"
#include "label.h"
#include "log.h"
#include "queue.h"

static void host_log(struct cad_context *ctx, enum cad_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, ctx ? ctx->prefix : NULL, fmt, ap);
	va_end(ap);
}

static bool host_log_enabled(enum cad_log_level level)
{
	return log_enabled(level);
}

static const char *host_adapter_name(struct cad_context *ctx)
{
	return ctx->adapter->name;
}

/* One allocation: the struct, then sender, request id and body, each
 * NUL-terminated. */
struct cad_msg *host_msg_new(const char *sender, size_t sender_len, const char *request_id,
			     size_t request_id_len, int64_t time, const char *body, size_t body_len)
{
	size_t size = sizeof(struct cad_msg) + sender_len + request_id_len + body_len + 3;
	struct cad_msg *m = malloc(size);
	if (!m)
		return NULL;
	char *p = (char *)(m + 1);
	memcpy(p, sender, sender_len);
	p[sender_len] = '\0';
	m->sender = p;
	m->sender_len = sender_len;
	p += sender_len + 1;
	memcpy(p, request_id, request_id_len);
	p[request_id_len] = '\0';
	m->request_id = p;
	m->request_id_len = request_id_len;
	p += request_id_len + 1;
	memcpy(p, body, body_len);
	p[body_len] = '\0';
	m->body = p;
	m->body_len = body_len;
	m->time = time;
	m->received_ns = cad_clock_mono_ns();
	m->module_data = NULL;
	m->attempts = 0;
	m->time_nsec = 0;
	return m;
}

void host_msg_free(struct cad_msg *m)
{
	free(m);
}

/* What a message holds of the adapter's byte budget: its one allocation. */
static size_t host_msg_bytes(const struct cad_msg *m)
{
	return sizeof(*m) + m->sender_len + m->request_id_len + m->body_len + 3;
}

void host_msg_release(struct adapter *a, struct cad_msg *m)
{
	atomic_fetch_sub_explicit(&a->held_bytes, host_msg_bytes(m), memory_order_relaxed);
	host_msg_free(m);
}

static int host_submit(struct cad_context *ctx, struct cad_msg **msg, size_t wire_bytes)
{
	struct adapter *a = ctx->adapter;
	struct cad_msg *m = *msg;
	*msg = NULL;
	atomic_fetch_add_explicit(&a->stats->received, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&a->stats->received_bytes, wire_bytes, memory_order_relaxed);
	/* Counted and its bytes taken before the push: a worker may settle
	 * it at once. Over the budget, the newest message is the one
	 * dropped. */
	atomic_fetch_add_explicit(&a->stats->accepted, 1, memory_order_relaxed);
	size_t bytes = host_msg_bytes(m);
	size_t held = atomic_fetch_add_explicit(&a->held_bytes, bytes, memory_order_relaxed);
	bool over = held + bytes > a->max_bytes;
	int rc = over ? -ENOBUFS : queue_push_wait(a->queue, m, a->queue_wait_ns);
	if (rc == 0)
		return 0;
	atomic_fetch_sub_explicit(&a->held_bytes, bytes, memory_order_relaxed);
	atomic_fetch_sub_explicit(&a->stats->accepted, 1, memory_order_relaxed);
	const char *reason = over ? "max_bytes" : rc == -ENOBUFS ? "queue_full" : "shutdown";
	counters_add(&a->stats->dropped, reason, 1);
	uint64_t suppressed;
	char who[128];
	if (cad_ratelimit_allow(&a->stats->drop_limit, ADAPTER_LOG_EVERY_NS, &suppressed))
		log_warn(
			"adapter %s: dropped a message from %s: %s (%llu more dropped since the last report)",
			a->name, cad_text_printable(who, sizeof(who), m->sender, m->sender_len),
			over             ? "the adapter holds max_bytes already"
			: rc == -ENOBUFS ? "the queue is full"
					 : "the adapter is stopping",
			(unsigned long long)suppressed);
	host_msg_free(m);
	return rc;
}

static void host_reject(struct cad_context *ctx, const char *reason, size_t wire_bytes,
			const char *fmt, ...)
{
	struct adapter *a = ctx->adapter;
	atomic_fetch_add_explicit(&a->stats->received, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&a->stats->received_bytes, wire_bytes, memory_order_relaxed);
	counters_add(&a->stats->rejected, reason, 1);
	uint64_t suppressed;
	if (!log_enabled(CAD_LOG_WARN) ||
	    !cad_ratelimit_allow(&ctx->log_limit, ADAPTER_LOG_EVERY_NS, &suppressed))
		return;
	char detail[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	log_warn("%srejected a message (%s): %s (%llu more rejections since the last report)",
		 ctx->prefix, reason, detail, (unsigned long long)suppressed);
}

static void host_msg_done(struct cad_context *ctx, struct cad_msg *m, int status,
			  const char *reason)
{
	struct adapter *a = ctx->adapter;
	if (status == 0) {
		atomic_fetch_add_explicit(&a->stats->published, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&a->stats->published_bytes, m->body_len,
					  memory_order_relaxed);
		adapter_stats_time(a->stats, (uint64_t)(cad_clock_mono_ns() - m->received_ns));
	} else {
		counters_add(&a->stats->lost, reason ? reason : "error", 1);
		uint64_t suppressed;
		char id[128], who[128];
		if (cad_ratelimit_allow(&ctx->log_limit, ADAPTER_LOG_EVERY_NS, &suppressed))
			log_error(
				"%slost the message %s from %s: %s: %s (%llu more reports suppressed)",
				ctx->prefix,
				cad_text_printable(id, sizeof(id), m->request_id,
						   m->request_id_len),
				cad_text_printable(who, sizeof(who), m->sender, m->sender_len),
				reason ? reason : "error", strerror(-status),
				(unsigned long long)suppressed);
	}
	host_msg_release(a, m);
}

static void host_count_retry(struct cad_context *ctx)
{
	atomic_fetch_add_explicit(&ctx->adapter->stats->retries, 1, memory_order_relaxed);
}

static void host_conn_state(struct cad_context *ctx, const char *name, bool up)
{
	struct adapter *a = ctx->adapter;
	bool changed = true;
	char key[sizeof(a->conns[0].name)];
	label_copy(key, sizeof(key), name);
	pthread_mutex_lock(&a->conns_lock);
	size_t i;
	for (i = 0; i < a->n_conns; i++)
		if (a->conns[i].ctx == ctx && strcmp(a->conns[i].name, key) == 0)
			break;
	/* Out of memory, a new connection is logged but not tracked. */
	if (i == a->conns_cap) {
		size_t cap = a->conns_cap ? 2 * a->conns_cap : 8;
		struct conn_state *c = realloc(a->conns, cap * sizeof(*c));
		if (c) {
			a->conns = c;
			a->conns_cap = cap;
		}
	}
	if (i < a->n_conns) {
		changed = a->conns[i].up != up;
		a->conns[i].up = up;
	} else if (i < a->conns_cap) {
		/* A connection first reported down has said why itself. */
		changed = up;
		a->conns[i].ctx = ctx;
		memcpy(a->conns[i].name, key, sizeof(key));
		a->conns[i].up = up;
		a->n_conns++;
	}
	pthread_mutex_unlock(&a->conns_lock);
	if (changed)
		log_msg(up ? CAD_LOG_INFO : CAD_LOG_WARN, "%s%s: %s", ctx->prefix, name,
			up ? "connected" : "disconnected");
}

static int64_t host_drain_deadline(struct cad_context *ctx)
{
	return atomic_load(&ctx->adapter->drain_deadline_ns);
}

struct cad_host host_services = {
	.abi_major = CAD_ABI_MAJOR,
	.abi_minor = CAD_ABI_MINOR,
	.size = sizeof(struct cad_host),
	.identity = "localhost",
	.log = host_log,
	.log_enabled = host_log_enabled,
	.adapter_name = host_adapter_name,
	.cfg_str = block_cfg_str,
	.cfg_int = block_cfg_int,
	.cfg_bool = block_cfg_bool,
	.cfg_list_len = block_cfg_list_len,
	.cfg_list_str = block_cfg_list_str,
	.cfg_error = block_cfg_error,
	.msg_new = host_msg_new,
	.msg_free = host_msg_free,
	.submit = host_submit,
	.reject = host_reject,
	.msg_done = host_msg_done,
	.count_retry = host_count_retry,
	.conn_state = host_conn_state,
	.drain_deadline = host_drain_deadline,
};
