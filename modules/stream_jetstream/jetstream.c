/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `jetstream` stream module: publishes each message's envelope to
 * JetStream and gives it back to the host only once JetStream has
 * acknowledged it. Publishes are asynchronous; a failed or unanswered
 * publish is sent again with capped exponential backoff, under the same
 * Nats-Msg-Id, so the stream's duplicate window keeps a retry from landing
 * twice.
 *
 * The workers of an instance share one connection, one JetStream context
 * and one window of workers x max_inflight publishes: every connection
 * costs a reader, a flusher and an acknowledgement thread, and on a busy
 * machine those wake-ups, not the publishing, were most of the cost. The
 * workers build envelopes and publish in parallel.
 *
 * Concurrency & locking: start() connects on the main thread; the workers
 * publish and resend on their own threads; the acknowledgement handler
 * runs on a cnats thread. `lock` guards the in-flight table, `waiting`
 * and `open_workers`; `room` is broadcast when the window falls to its
 * low-water mark or empties, and when an entry is parked for a retry.
 * host->msg_done() is called outside the lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "build_config.h"
#include "cad_module.h"
#include "envelope.h"
#include "inflight.h"
#include "nats_conn.h"
#include "nats_msg_batch.h"
#include "pacing.h"
#include "subject.h"

#define NS_PER_MS 1000000LL
#define RETRY_FIRST_MS 100

struct jetstream {
	const struct cad_host *host;
	struct cad_context *ctx;
	struct nats_conn_opts conn_opts;
	char *topic;
	struct publish_window win;
	long window; /* max_inflight x workers, shared by the workers */
	long low_water; /* in flight when waiting publishers are woken */
	_Atomic int64_t next_warn_ns; /* rate limit for retry warnings */

	struct nats_conn conn; /* stable address: cnats callbacks point at it */
	bool connected;
	jsCtx *js;
	pthread_mutex_t lock;
	pthread_cond_t room;
	struct inflight table;
	size_t waiting; /* entries due for a resend, not with the library */
	/* Entries out of the table whose msg_done() has not returned yet:
	 * until it has, the host has not counted them, and a closing worker
	 * that saw only the empty table would let the adapter log its
	 * counts, or go away, too soon. */
	_Atomic size_t settling;
	unsigned open_workers;
	struct nats_msg_batch acked; /* stored messages, destroyed a batch at a time */
};

struct js_worker {
	struct jetstream *js;
	char *env; /* the envelope being built; this worker's thread only */
	size_t env_cap;
};

/* ------------------------------------------------------------ options */

static const struct cad_option jetstream_options[] = {
	NATS_CONN_OPTIONS,
	{.name = "topic", .type = CAD_OPT_STRING,
	 .help = "subject to publish to; %s is replaced by the sender (default: the adapter name)"},
	PUBLISH_WINDOW_OPTIONS,
	{.name = NULL},
};

static void jetstream_destroy(void *instance)
{
	struct jetstream *js = instance;
	if (!js)
		return;
	jsCtx_Destroy(js->js);
	if (js->connected)
		nats_conn_close(&js->conn, 1000);
	nats_msg_batch_fini(&js->acked);
	inflight_destroy(&js->table);
	pthread_cond_destroy(&js->room);
	pthread_mutex_destroy(&js->lock);
	nats_conn_opts_clear(&js->conn_opts);
	free(js->topic);
	free(js);
}

static int jetstream_create(void **instance, const struct cad_host *host, struct cad_context *ctx,
			    const struct cad_config *cfg)
{
	struct jetstream *js = calloc(1, sizeof(*js));
	if (!js)
		return -ENOMEM;
	js->host = host;
	js->ctx = ctx;
	pthread_mutex_init(&js->lock, NULL);
	pacing_cond_init(&js->room);
	nats_msg_batch_init(&js->acked);
	int rc = nats_conn_opts_read(&js->conn_opts, host, cfg);
	if (rc == -ENOMEM)
		goto fail;

	const char *topic = host->cfg_str(cfg, "topic");
	js->topic = strdup(topic ? topic : host->adapter_name(ctx));
	if (!js->topic) {
		rc = -ENOMEM;
		goto fail;
	}
	const char *why;
	if (!subject_topic_valid(js->topic, &why)) {
		host->cfg_error(cfg, "topic", "'%s': %s", js->topic, why);
		rc = -EINVAL;
	}
	publish_window_read(&js->win, host, cfg);
	js->window = js->win.max_inflight * host->cfg_int(cfg, "workers");
	js->low_water = publish_window_low_water(js->window);
	if (rc != 0)
		goto fail;
	rc = inflight_init(&js->table, (size_t)js->window);
	if (rc != 0)
		goto fail;
	*instance = js;
	return 0;
fail:
	jetstream_destroy(js);
	return rc;
}

static void jetstream_on_ack(jsCtx *ctx, natsMsg *nm, jsPubAck *pa, jsPubAckErr *pae,
			     void *closure);

static int jetstream_start(void *instance)
{
	struct jetstream *js = instance;
	int rc = nats_conn_open(&js->conn, &js->conn_opts, js->host, js->ctx, "stream");
	if (rc != 0) /* logged by nats_conn_open */
		return rc;
	js->connected = true;

	jsOptions jo;
	jsOptions_Init(&jo);
	jo.PublishAsync.AckHandler = jetstream_on_ack;
	jo.PublishAsync.AckHandlerClosure = js;
	/* Our own window is the limit; the library's must never stall us. */
	jo.PublishAsync.MaxPending = js->window + 1;
	natsStatus s = natsConnection_JetStream(&js->js, js->conn.nc, &jo);
	if (s != NATS_OK) {
		nats_conn_log_status(js->host, js->ctx, CAD_LOG_ERROR, s, "JetStream context");
		return nats_status_errno(s);
	}
	return 0;
}

static void jetstream_describe(void *instance, char *buf, size_t len)
{
	struct jetstream *js = instance;
	char servers[512];
	nats_conn_opts_servers(&js->conn_opts, servers, sizeof(servers));
	snprintf(buf, len, "servers %s, subject %s, at most %ld unacknowledged", servers,
		 js->topic, js->window);
}

/* ------------------------------------------------------------ publishing */

/* Errors no retry can mend. */
static bool is_permanent(natsStatus s, jsErrCode code)
{
	return s == NATS_MAX_PAYLOAD || code == JSStreamMessageExceedsMaximumErr;
}

/* Settle an entry: remove it and tell the host. Called with the lock
 * held; returns with it released. */
static void settle_unlock(struct jetstream *js, struct inflight_entry *e, int status,
			  const char *reason)
{
	struct cad_msg *m = e->msg;
	inflight_del(&js->table, e);
	atomic_fetch_add(&js->settling, 1);
	/* Publishers wait only on a full window: wake them all at its low
	 * water, not one per acknowledgement. An empty window wakes the
	 * closing workers too. */
	if (js->table.count == 0 || (long)js->table.count == js->low_water)
		pthread_cond_broadcast(&js->room);
	pthread_mutex_unlock(&js->lock);
	js->host->msg_done(js->ctx, m, status, reason);
	atomic_fetch_sub(&js->settling, 1);
}

/* Park an entry for a resend after its backoff. Lock held. */
static void park(struct jetstream *js, struct inflight_entry *e)
{
	int64_t delay_ms = pacing_backoff_ms(RETRY_FIRST_MS, js->win.retry_max_ms, e->msg->attempts);
	e->retry_at_ns = pacing_now_ns() + delay_ms * NS_PER_MS;
	js->waiting++;
	pthread_cond_broadcast(&js->room);
}

static void jetstream_on_ack(jsCtx *ctx, natsMsg *nm, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	(void)ctx;
	struct jetstream *js = closure;
	pthread_mutex_lock(&js->lock);
	struct inflight_entry *e = inflight_get(&js->table, nm);
	if (!e) { /* given up at shutdown; nothing holds it any more */
		pthread_mutex_unlock(&js->lock);
		natsMsg_Destroy(nm);
		return;
	}
	if (pa) {
		/* Formatted before settling: settling frees the message. */
		char line[400] = "";
		if (js->host->log_enabled(CAD_LOG_DEBUG))
			snprintf(line, sizeof(line), "%.64s from %.128s stored in %.64s at %" PRIu64 "%s%s",
				 e->msg->request_id, e->msg->sender, pa->Stream ? pa->Stream : "?",
				 pa->Sequence, pa->Duplicate ? ", a duplicate" : "",
				 e->msg->attempts > 1 ? ", after a retry" : "");
		settle_unlock(js, e, 0, NULL);
		nats_msg_batch_put(&js->acked, nm);
		if (*line)
			js->host->log(js->ctx, CAD_LOG_DEBUG, "%s", line);
		return;
	}
	natsStatus s = pae ? pae->Err : NATS_ERR;
	jsErrCode code = pae ? pae->ErrCode : 0;
	const char *text = pae && pae->ErrText ? pae->ErrText : natsStatus_GetText(s);
	if (is_permanent(s, code)) {
		char id[160];
		snprintf(id, sizeof(id), "%s", e->msg->request_id);
		settle_unlock(js, e, -EMSGSIZE, "too_large");
		natsMsg_Destroy(nm);
		js->host->log(js->ctx, CAD_LOG_ERROR, "the stream refused message %s for good: %s", id,
			      text);
		return;
	}
	/* Keep the NATS message: it is sent again as it is. Once parked it
	 * is the workers' (a drain may give it up at once): what the warning
	 * needs of it is copied first. */
	char subject[256] = "";
	if (s == NATS_NO_RESPONDERS)
		snprintf(subject, sizeof(subject), "%s", natsMsg_GetSubject(nm));
	park(js, e);
	pthread_mutex_unlock(&js->lock);
	if (s == NATS_NO_RESPONDERS)
		pacing_warn(js->host, js->ctx, &js->next_warn_ns,
			    "no JetStream stream answers on %s: create a stream that captures it; retrying",
			    subject);
	else
		pacing_warn(js->host, js->ctx, &js->next_warn_ns,
			    "publishing to JetStream failed (%s); retrying", text);
}

static natsStatus send_async(struct jetstream *js, natsMsg **nm)
{
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = js->win.ack_timeout_ms;
	return js_PublishMsgAsync(js->js, nm, &po);
}

/* Hand one entry's NATS message to the library. The entry is in the table
 * before the send, because the acknowledgement may arrive before the call
 * returns. */
static void send_entry(struct jetstream *js, natsMsg *nm)
{
	natsMsg *owned = nm;
	natsStatus s = send_async(js, &owned);
	if (s == NATS_OK)
		return;
	pthread_mutex_lock(&js->lock);
	struct inflight_entry *e = inflight_get(&js->table, nm);
	if (is_permanent(s, 0)) {
		settle_unlock(js, e, -EMSGSIZE, "too_large");
		natsMsg_Destroy(nm);
		js->host->log(js->ctx, CAD_LOG_ERROR,
			      "a message is larger than the server accepts (max_payload)");
		return;
	}
	park(js, e);
	pthread_mutex_unlock(&js->lock);
	pacing_warn(js->host, js->ctx, &js->next_warn_ns,
		    "publishing to JetStream failed (%s); retrying", natsStatus_GetText(s));
}

/* Resend every parked entry whose time has come. */
static void resend_due(struct jetstream *js)
{
	for (;;) {
		natsMsg *nm = NULL;
		pthread_mutex_lock(&js->lock);
		if (js->waiting) {
			int64_t now = pacing_now_ns();
			for (size_t i = 0; i <= js->table.mask; i++) {
				struct inflight_entry *e = &js->table.slots[i];
				if (e->key && e->retry_at_ns && e->retry_at_ns <= now) {
					e->retry_at_ns = 0;
					e->msg->attempts++;
					js->waiting--;
					nm = (natsMsg *)e->key;
					break;
				}
			}
		}
		pthread_mutex_unlock(&js->lock);
		if (!nm)
			return;
		js->host->count_retry(js->ctx);
		send_entry(js, nm);
	}
}

/* 0 while running; the drain deadline once the adapter stops. */
static int64_t jetstream_drain_deadline(const struct jetstream *js)
{
	return js->host->abi_minor >= 1 ? js->host->drain_deadline(js->ctx) : 0;
}

/* The worker's envelope buffer, grown to `need` bytes. */
static int env_room(struct js_worker *w, size_t need)
{
	if (need <= w->env_cap)
		return 0;
	char *b = realloc(w->env, need);
	if (!b)
		return -ENOMEM;
	w->env = b;
	w->env_cap = need;
	return 0;
}

/* On failure *err is set, and *reason names the step that failed. */
static natsStatus build_nats_msg(natsMsg **out, struct js_worker *w, const struct cad_msg *m,
				 int *err, const char **reason)
{
	struct jetstream *js = w->js;
	char subject[1024];
	int n = subject_build(subject, sizeof(subject), js->topic, m->sender, m->sender_len);
	if (n < 0) {
		*err = n;
		*reason = "bad_subject";
		return NATS_INVALID_SUBJECT;
	}
	*reason = "encode_failed";
	size_t len;
	*err = env_room(w, envelope_max_len(ENVELOPE_PROTOCOL_JETSTREAM, m));
	if (*err == 0)
		*err = envelope_write(w->env, w->env_cap, &len, ENVELOPE_PROTOCOL_JETSTREAM, m);
	if (*err != 0)
		return NATS_ERR;
	natsMsg *nm = NULL;
	/* cnats copies the data into the message. */
	natsStatus s = natsMsg_Create(&nm, subject, NULL, w->env, (int)len);
	/* Request id and sender together: every node answers the same
	 * request, so the request id alone is not unique. */
	char id[1024];
	snprintf(id, sizeof(id), "%s:%s", m->request_id, m->sender);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(nm, "Nats-Msg-Id", id);
	if (s != NATS_OK) {
		natsMsg_Destroy(nm);
		*err = -ENOMEM;
		return s;
	}
	*out = nm;
	return NATS_OK;
}

static void jetstream_publish(void *worker, struct cad_msg *m)
{
	struct js_worker *w = worker;
	struct jetstream *js = w->js;
	natsMsg *nm = NULL;
	int err = 0;
	const char *reason = NULL;
	if (build_nats_msg(&nm, w, m, &err, &reason) != NATS_OK) {
		/* The host logs the loss, with the sender made printable. */
		js->host->msg_done(js->ctx, m, err ? err : -EIO, reason);
		return;
	}
	m->attempts = 1;

	pthread_mutex_lock(&js->lock);
	while ((long)js->table.count >= js->window) {
		int64_t deadline = jetstream_drain_deadline(js);
		if (deadline && pacing_now_ns() >= deadline) {
			/* Draining, and no room came: this one is not sent. */
			pthread_mutex_unlock(&js->lock);
			natsMsg_Destroy(nm);
			js->host->msg_done(js->ctx, m, -ETIMEDOUT, "shutdown");
			return;
		}
		if (js->waiting) {
			pthread_mutex_unlock(&js->lock);
			resend_due(js);
			pthread_mutex_lock(&js->lock);
			if ((long)js->table.count < js->window)
				break;
		}
		pacing_cond_wait(&js->room, &js->lock, 0);
	}
	inflight_put(&js->table, nm, m);
	pthread_mutex_unlock(&js->lock);
	send_entry(js, nm);
}

static void jetstream_worker_idle(void *worker)
{
	struct js_worker *w = worker;
	resend_due(w->js);
}

static int jetstream_worker_open(void **out, void *instance, unsigned index)
{
	(void)index;
	struct jetstream *js = instance;
	struct js_worker *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->js = js;
	pthread_mutex_lock(&js->lock);
	js->open_workers++;
	pthread_mutex_unlock(&js->lock);
	*out = w;
	return 0;
}

/* Give every message still held back to the host as lost. */
static void give_up_all(struct jetstream *js)
{
	/* The library keeps no pending list until the first asynchronous
	 * publish, and cannot be asked for one before. */
	pthread_mutex_lock(&js->lock);
	bool with_library = js->table.count > js->waiting;
	pthread_mutex_unlock(&js->lock);
	natsMsgList pending = {0};
	if (with_library && js_PublishAsyncGetPendingList(&pending, js->js) == NATS_OK)
		natsMsgList_Destroy(&pending); /* the entries below still map them */
	for (;;) {
		pthread_mutex_lock(&js->lock);
		struct inflight_entry *e = NULL;
		for (size_t i = 0; i <= js->table.mask && !e; i++)
			if (js->table.slots[i].key)
				e = &js->table.slots[i];
		if (!e) {
			pthread_mutex_unlock(&js->lock);
			return;
		}
		/* A parked message is ours; the others went with the list. */
		natsMsg *parked = e->retry_at_ns ? (natsMsg *)e->key : NULL;
		settle_unlock(js, e, -ETIMEDOUT, "shutdown");
		natsMsg_Destroy(parked);
	}
}

/* Every worker helps the window drain until the deadline; the last one to
 * leave gives up what is still unacknowledged. */
static void jetstream_worker_close(void *worker, int64_t deadline_ns)
{
	struct js_worker *w = worker;
	struct jetstream *js = w->js;
	for (;;) {
		resend_due(js);
		pthread_mutex_lock(&js->lock);
		size_t left = js->table.count + atomic_load(&js->settling);
		if (left && pacing_now_ns() < deadline_ns)
			pacing_cond_wait(&js->room, &js->lock, deadline_ns);
		pthread_mutex_unlock(&js->lock);
		if (!left || pacing_now_ns() >= deadline_ns)
			break;
	}
	/* Settled ones are counted even past the deadline: msg_done() is
	 * quick, and the host's counts must be whole when it logs them. */
	while (atomic_load(&js->settling))
		nats_Sleep(1);
	pthread_mutex_lock(&js->lock);
	bool last = --js->open_workers == 0;
	pthread_mutex_unlock(&js->lock);
	if (last)
		give_up_all(js);
	free(w->env);
	free(w);
	/* The library keeps error state per thread; this thread is ours. */
	nats_ReleaseThreadMemory();
}
static const struct cad_module jetstream_module = {
	.abi_major = CAD_ABI_MAJOR,
	.abi_minor = CAD_ABI_MINOR,
	.size = sizeof(struct cad_module),
	.kind = CAD_KIND_STREAM,
	.type = "jetstream",
	.version = PACKAGE_VERSION,
	.summary = "publish envelopes to NATS JetStream, acknowledged and de-duplicated",
	.options = jetstream_options,
	.create = jetstream_create,
	.start = jetstream_start,
	.destroy = jetstream_destroy,
	.describe = jetstream_describe,
	.worker_open = jetstream_worker_open,
	.publish = jetstream_publish,
	.worker_idle = jetstream_worker_idle,
	.worker_close = jetstream_worker_close,
};

CAD_EXPORT const struct cad_module *cad_module_entry(void);
CAD_EXPORT const struct cad_module *cad_module_entry(void)
{
	return &jetstream_module;
}
