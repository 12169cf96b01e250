/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `jetstream` stream module: publishes each message's envelope to
 * JetStream and gives it back to the host only once JetStream has
 * acknowledged it. A failed or unanswered publish is sent again with
 * capped exponential backoff, under the same Nats-Msg-Id, so the stream's
 * duplicate window keeps a retry from landing twice.
 *
 * A JetStream publish is a NATS publish with a reply subject, answered on
 * it with a PubAck. Each publish here replies to <inbox>.<token>, one
 * subscription on <inbox>.* receives every acknowledgement, and the token
 * finds the publish it settles. cnats' asynchronous JetStream publish does
 * the same, but it keeps a copy of every message until its acknowledgement
 * (2 KB or more each, a whole window of them), gives each its own reply
 * subject and pending-map entry, parses each acknowledgement into a hash
 * map, and frees each one on its own, waking its collector thread per
 * message. Here the daemon's message is what is kept, a resend builds the
 * NATS message again, and acknowledgements are freed a batch at a time.
 *
 * The workers of an instance share one connection and one window of
 * workers x max_inflight publishes: every connection costs a reader, a
 * flusher and a delivery thread, and on a busy machine those wake-ups, not
 * the publishing, were most of the cost. The workers build envelopes and
 * publish in parallel.
 *
 * Concurrency & locking: start() connects and subscribes on the main
 * thread; the workers publish, resend and time out unanswered publishes on
 * their own threads; acknowledgements arrive on the subscription's cnats
 * thread. The window's lock (publish_window.h) guards the in-flight table
 * and `open_workers` too. host->msg_done() is called outside the lock. A
 * message in the table is read only under the lock: an acknowledgement may
 * settle it at any time.
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

#include <choria-adapterd/cad_module.h>
#include "envelope.h"
#include "inflight.h"
#include "nats_conn.h"
#include "nats_msg_batch.h"
#include "pacing.h"
#include "puback.h"
#include "publish_window.h"
#include "subject.h"

/* Room for "_INBOX.", a NUID, '.' and a token's 20 digits. */
#define REPLY_MAX 64
/* The library's default limits on a subscription's pending messages. */
#define ACKS_PENDING_MIN 65536
#define ACKS_PENDING_BYTES (65536 * 1024)

struct jetstream {
	const struct cad_host *host;
	struct cad_context *ctx;
	struct nats_conn_opts conn_opts;
	char *topic;
	struct envelope_label label; /* output_protocol */
	struct publish_window_opts opts;
	long window;                     /* max_inflight x workers, shared by the workers */
	struct cad_ratelimit warn_limit; /* for retry warnings */
	struct cad_ratelimit loss_limit; /* for messages refused for good */

	struct nats_conn conn; /* stable address: cnats callbacks point at it */
	bool connected;
	natsSubscription *acks; /* <inbox>.*, where JetStream answers */
	atomic_bool acks_done;  /* cnats will not call jetstream_on_ack again */
	char inbox[REPLY_MAX];
	size_t inbox_len;
	_Atomic uint64_t next_token;

	struct publish_window win; /* its entries are the table's */
	struct inflight table;
	unsigned open_workers;
	struct nats_msg_batch answered; /* acknowledgements, freed a batch at a time */
};

struct js_worker {
	struct jetstream *js;
	char *env; /* the envelope being built; this worker's thread only */
	size_t env_cap;
	struct nats_msg_batch sent; /* published messages, freed a batch at a time */
};

/* ------------------------------------------------------------ options */

static const struct cad_option jetstream_options[] = {
	NATS_CONN_OPTIONS,
	{.name = "topic",
	 .type = CAD_OPT_STRING,
	 .flags = CAD_OPT_DEFAULT_ADAPTER_NAME,
	 .help = "subject to publish to; %s is replaced by the sender (default: the adapter name)"},
	PUBLISH_WINDOW_OPTIONS,
	ENVELOPE_OPTIONS(ENVELOPE_PROTOCOL_JETSTREAM),
	{.name = NULL},
};

static void jetstream_on_complete(void *closure)
{
	struct jetstream *js = closure;
	atomic_store(&js->acks_done, true);
}

static void jetstream_destroy(void *instance)
{
	struct jetstream *js = instance;
	if (!js)
		return;
	if (js->acks) {
		natsSubscription_Unsubscribe(js->acks);
		nats_wait_flag(&js->acks_done, nats_Now() + 1000);
	}
	if (js->connected)
		nats_conn_close(&js->conn, 1000);
	if (js->acks) {
		if (!nats_wait_flag(&js->acks_done, nats_Now() + 1000)) {
			js->host->log(
				js->ctx, CAD_LOG_ERROR,
				"the NATS client did not confirm the end of the acknowledgement subscription; keeping its memory for late deliveries");
			return;
		}
		natsSubscription_Destroy(js->acks);
	}
	nats_msg_batch_fini(&js->answered);
	inflight_destroy(&js->table);
	publish_window_destroy(&js->win);
	nats_conn_opts_clear(&js->conn_opts);
	free(js->topic);
	free(js);
}

/* The window's walks call back into the module (defined below). */
static const struct publish_window_ops jetstream_window_ops;

static int jetstream_create(void **instance, const struct cad_host *host, struct cad_context *ctx,
			    const struct cad_config *cfg)
{
	struct jetstream *js = calloc(1, sizeof(*js));
	if (!js)
		return -ENOMEM;
	js->host = host;
	js->ctx = ctx;
	atomic_store(&js->next_token, 1);
	publish_window_init(&js->win, host, ctx, &jetstream_window_ops);
	nats_msg_batch_init(&js->answered);
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
	if (envelope_label_read(&js->label, host, cfg) != 0)
		rc = -EINVAL;
	publish_window_opts_read(&js->opts, host, cfg);
	js->window = js->opts.max_inflight * host->cfg_int(cfg, "workers");
	publish_window_size(&js->win, &js->opts, js->window, true);
	if (rc != 0)
		goto fail;
	rc = inflight_init(&js->table, (size_t)js->window);
	if (rc != 0)
		goto fail;
	publish_window_places(&js->win, &js->table.slots[0].pw, sizeof(js->table.slots[0]),
			      js->table.mask + 1);
	publish_window_report_stalls(&js->win, "stream acknowledgements");
	*instance = js;
	return 0;
fail:
	jetstream_destroy(js);
	return rc;
}

static void jetstream_on_ack(natsConnection *nc, natsSubscription *sub, natsMsg *ack,
			     void *closure);

static int jetstream_start(void *instance)
{
	struct jetstream *js = instance;
	int rc = nats_conn_open(&js->conn, &js->conn_opts, js->host, js->ctx, "stream");
	if (rc != 0) /* logged by nats_conn_open */
		return rc;
	js->connected = true;

	natsInbox *inbox = NULL;
	natsStatus s = natsInbox_Create(&inbox);
	if (s == NATS_OK) {
		js->inbox_len = (size_t)snprintf(js->inbox, sizeof(js->inbox), "%s", inbox);
		natsInbox_Destroy(inbox);
		char all[REPLY_MAX + 2];
		snprintf(all, sizeof(all), "%s.*", js->inbox);
		s = natsConnection_Subscribe(&js->acks, js->conn.nc, all, jetstream_on_ack, js);
	}
	if (s == NATS_OK &&
	    natsSubscription_SetOnCompleteCB(js->acks, jetstream_on_complete, js) != NATS_OK) {
		/* Nothing was published yet: no answer can be on its way. */
		natsSubscription_Unsubscribe(js->acks);
		natsSubscription_Destroy(js->acks);
		js->acks = NULL;
		s = NATS_ERR;
	}
	/* The library drops what exceeds these: never a window's answers. */
	if (s == NATS_OK && js->window * 2 > ACKS_PENDING_MIN)
		s = natsSubscription_SetPendingLimits(js->acks, (int)(js->window * 2),
						      ACKS_PENDING_BYTES);
	if (s != NATS_OK) {
		nats_conn_log_status(js->host, js->ctx, CAD_LOG_ERROR, s,
				     "subscribing to JetStream's acknowledgements");
		return nats_status_errno(s);
	}
	return 0;
}

static void jetstream_describe(void *instance, char *buf, size_t len)
{
	struct jetstream *js = instance;
	char servers[512];
	nats_conn_opts_servers(&js->conn_opts, servers, sizeof(servers));
	snprintf(buf, len, "servers %s, subject %s, at most %ld unacknowledged", servers, js->topic,
		 js->window);
}

/* ------------------------------------------------------------ publishing */

/* Settle an entry: remove it and tell the host. Called with the lock
 * held; returns with it released. */
static void jetstream_settle_unlock(struct jetstream *js, struct inflight_entry *e, int status,
				    const char *reason)
{
	struct cad_msg *m = publish_window_remove_locked(&js->win, &e->pw);
	inflight_del(&js->table, e);
	publish_window_done_unlock(&js->win, m, status, reason);
}

/* The token at the end of an acknowledgement's subject, <inbox>.<token>;
 * 0 for a subject that is not one of ours. */
static uint64_t jetstream_reply_token(const struct jetstream *js, const char *subject)
{
	if (!subject || strncmp(subject, js->inbox, js->inbox_len) != 0 ||
	    subject[js->inbox_len] != '.')
		return 0;
	uint64_t token = 0;
	const char *p = subject + js->inbox_len + 1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (token > (UINT64_MAX - 9) / 10)
			return 0;
		token = token * 10 + (uint64_t)(*p - '0');
	}
	return *p ? 0 : token;
}

/* Why an unanswered or refused publish is tried again, for the warning. */
static void jetstream_warn_retry(struct jetstream *js, const char *why, const char *subject)
{
	if (subject)
		pacing_warn(
			js->host, js->ctx, &js->warn_limit,
			"no JetStream stream answers on %s: create a stream that captures it; retrying",
			subject);
	else
		pacing_warn(js->host, js->ctx, &js->warn_limit,
			    "publishing to JetStream failed (%s); retrying", why);
}

/* An answer, read before the lock is taken. */
struct js_answer {
	bool no_responders;
	struct puback pa;
};

/* The answer to a publish whose entry `e` is in the table, the lock held;
 * returns with it released. */
static void jetstream_on_answer_unlock(struct jetstream *js, struct inflight_entry *e,
				       const struct js_answer *a)
{
	const struct puback *pa = &a->pa;
	if (!a->no_responders && pa->kind == PUBACK_STORED) {
		/* Formatted before settling: settling frees the message. */
		char line[400] = "";
		if (js->host->log_enabled(CAD_LOG_DEBUG))
			snprintf(line, sizeof(line),
				 "%.64s from %.128s stored in %s at %" PRIu64 "%s%s",
				 e->pw.msg->request_id, e->pw.msg->sender, pa->stream, pa->seq,
				 pa->duplicate ? ", a duplicate" : "",
				 e->pw.msg->attempts > 1 ? ", after a retry" : "");
		jetstream_settle_unlock(js, e, 0, NULL);
		if (*line)
			js->host->log(js->ctx, CAD_LOG_DEBUG, "%s", line);
		return;
	}
	if (!a->no_responders && pa->kind == PUBACK_REFUSED &&
	    pa->err_code == PUBACK_ERR_TOO_LARGE) {
		char id[160];
		snprintf(id, sizeof(id), "%s", e->pw.msg->request_id);
		jetstream_settle_unlock(js, e, -EMSGSIZE, "too_large");
		pacing_log(js->host, js->ctx, &js->loss_limit, CAD_LOG_ERROR,
			   "the stream refused message %s for good: %s", id, pa->text);
		return;
	}
	/* An earlier attempt's failure for an entry already waiting to go
	 * again changes nothing. */
	bool parked = e->pw.retry_at_ns == 0;
	char subject[256] = "?";
	if (parked && a->no_responders)
		subject_build(subject, sizeof(subject), js->topic, e->pw.msg->sender,
			      e->pw.msg->sender_len);
	if (parked)
		publish_window_park_locked(&js->win, &e->pw);
	pthread_mutex_unlock(&js->win.lock);
	if (parked)
		jetstream_warn_retry(js, pa->text, a->no_responders ? subject : NULL);
}

static void jetstream_on_ack(natsConnection *nc, natsSubscription *sub, natsMsg *ack, void *closure)
{
	(void)nc;
	(void)sub;
	struct jetstream *js = closure;
	uint64_t token = jetstream_reply_token(js, natsMsg_GetSubject(ack));
	struct js_answer a = {.no_responders = natsMsg_IsNoResponders(ack)};
	if (token && !a.no_responders)
		puback_parse(&a.pa, natsMsg_GetData(ack), (size_t)natsMsg_GetDataLength(ack));
	pthread_mutex_lock(&js->win.lock);
	struct inflight_entry *e = token ? inflight_get(&js->table, token) : NULL;
	if (e)
		jetstream_on_answer_unlock(js, e, &a); /* releases the lock */
	else /* settled already (an earlier attempt's answer), or given up */
		pthread_mutex_unlock(&js->win.lock);
	nats_msg_batch_put(&js->answered, ack);
}

/* Write the decimal digits of v at p; returns the end. */
static char *jetstream_put_decimal(char *p, uint64_t v)
{
	char digits[20];
	int n = 0;
	do
		digits[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	while (n)
		*p++ = digits[--n];
	return p;
}

/* The worker's envelope buffer, grown to `need` bytes. */
static int jetstream_env_room(struct js_worker *w, size_t need)
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

/* "<request id>:<sender>" in buf, cut to fit as snprintf would. */
static void jetstream_msg_id(char *buf, size_t len, const struct cad_msg *m)
{
	size_t a = m->request_id_len < len - 1 ? m->request_id_len : len - 1;
	memcpy(buf, m->request_id, a);
	if (a < len - 1)
		buf[a++] = ':';
	size_t b = m->sender_len < len - 1 - a ? m->sender_len : len - 1 - a;
	memcpy(buf + a, m->sender, b);
	buf[a + b] = '\0';
}

/* The NATS message that publishes m, answered on <inbox>.<token>. On
 * failure *err is set, and *reason names the step that failed. */
static natsStatus jetstream_build_nats_msg(natsMsg **out, struct js_worker *w,
					   const struct cad_msg *m, uint64_t token, int *err,
					   const char **reason)
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
	*err = jetstream_env_room(w, envelope_max_len(&js->label, m));
	if (*err == 0)
		*err = envelope_write(w->env, w->env_cap, &len, &js->label, m);
	if (*err != 0)
		return NATS_ERR;
	char reply[REPLY_MAX + 24];
	memcpy(reply, js->inbox, js->inbox_len);
	reply[js->inbox_len] = '.';
	*jetstream_put_decimal(reply + js->inbox_len + 1, token) = '\0';
	natsMsg *nm = NULL;
	/* cnats copies the data into the message. */
	natsStatus s = natsMsg_Create(&nm, subject, reply, w->env, (int)len);
	/* Request id and sender together: every node answers the same
	 * request, so the request id alone is not unique. */
	char id[1024];
	jetstream_msg_id(id, sizeof(id), m);
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

/* Publish an entry's NATS message; the entry (token) is in the table
 * first, since the acknowledgement may arrive before the call returns. */
static void jetstream_send_entry(struct js_worker *w, uint64_t token, natsMsg *nm)
{
	struct jetstream *js = w->js;
	natsStatus s = natsConnection_PublishMsg(js->conn.nc, nm);
	nats_msg_batch_put(&w->sent, nm);
	if (s == NATS_OK)
		return;
	pthread_mutex_lock(&js->win.lock);
	struct inflight_entry *e = inflight_get(&js->table, token);
	if (!e || e->pw.retry_at_ns) { /* settled or parked meanwhile */
		pthread_mutex_unlock(&js->win.lock);
		return;
	}
	if (s == NATS_MAX_PAYLOAD) {
		jetstream_settle_unlock(js, e, -EMSGSIZE, "too_large");
		pacing_log(js->host, js->ctx, &js->loss_limit, CAD_LOG_ERROR,
			   "a message is larger than the server accepts (max_payload)");
		return;
	}
	publish_window_park_locked(&js->win, &e->pw);
	pthread_mutex_unlock(&js->win.lock);
	jetstream_warn_retry(js, natsStatus_GetText(s), NULL);
}

/* Publish again a parked entry whose time has come, the lock held;
 * returns with it held again. Always goes on with the pass. */
static bool jetstream_resend_locked(void *worker, struct publish_window_entry *pe)
{
	struct js_worker *w = worker;
	struct jetstream *js = w->js;
	struct inflight_entry *e = PUBLISH_WINDOW_OWNER(pe, struct inflight_entry, pw);
	publish_window_unpark_locked(&js->win, pe);
	uint64_t token = e->token;
	/* Built under the lock: an earlier attempt's acknowledgement may
	 * settle the entry as soon as it is released. */
	natsMsg *nm = NULL;
	int err;
	const char *reason;
	if (jetstream_build_nats_msg(&nm, w, pe->msg, token, &err, &reason) != NATS_OK) {
		jetstream_settle_unlock(js, e, err ? err : -EIO, reason);
	} else {
		pthread_mutex_unlock(&js->win.lock);
		js->host->count_retry(js->ctx);
		jetstream_send_entry(w, token, nm);
	}
	pthread_mutex_lock(&js->win.lock);
	return true;
}

/* Time out and resend what is due; cheap to call for every message. */
static void jetstream_resend_due(struct js_worker *w)
{
	struct jetstream *js = w->js;
	size_t expired = publish_window_resend_due(&js->win, w);
	if (expired)
		pacing_warn(js->host, js->ctx, &js->warn_limit,
			    "JetStream did not answer %zu publishes within %" PRId64
			    " ms; retrying",
			    expired, js->opts.ack_timeout_ms);
}

static void jetstream_service(void *worker, bool in_time)
{
	(void)in_time;
	jetstream_resend_due(worker);
}

static void jetstream_settle_entry_unlock(void *worker, struct publish_window_entry *pe, int status,
					  const char *reason)
{
	struct js_worker *w = worker;
	jetstream_settle_unlock(w->js, PUBLISH_WINDOW_OWNER(pe, struct inflight_entry, pw), status,
				reason);
}

static const struct publish_window_ops jetstream_window_ops = {
	.service = jetstream_service,
	.resend_locked = jetstream_resend_locked,
	.settle_unlock = jetstream_settle_entry_unlock,
};

static void jetstream_publish(void *worker, struct cad_msg *m)
{
	struct js_worker *w = worker;
	struct jetstream *js = w->js;
	natsMsg *nm = NULL;
	int err = 0;
	const char *reason = NULL;
	uint64_t token = atomic_fetch_add(&js->next_token, 1);
	if (jetstream_build_nats_msg(&nm, w, m, token, &err, &reason) != NATS_OK) {
		/* The host logs the loss, with the sender made printable. */
		js->host->msg_done(js->ctx, m, err ? err : -EIO, reason);
		return;
	}

	pthread_mutex_lock(&js->win.lock);
	if (!publish_window_wait_room_locked(&js->win, w)) {
		/* Draining, and no room came: this one is not sent. */
		natsMsg_Destroy(nm);
		js->host->msg_done(js->ctx, m, -ETIMEDOUT, "shutdown");
		return;
	}
	struct inflight_entry *e = inflight_put(&js->table, token, m);
	publish_window_add_locked(&js->win, &e->pw, m, true);
	pthread_mutex_unlock(&js->win.lock);
	jetstream_send_entry(w, token, nm);
	/* A steady flow never leaves a worker idle: time out and resend
	 * here too. */
	jetstream_resend_due(w);
}

static void jetstream_worker_idle(void *worker)
{
	jetstream_resend_due(worker);
}

static int jetstream_worker_open(void **out, void *instance, unsigned index)
{
	(void)index;
	struct jetstream *js = instance;
	struct js_worker *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->js = js;
	nats_msg_batch_init(&w->sent);
	pthread_mutex_lock(&js->win.lock);
	js->open_workers++;
	pthread_mutex_unlock(&js->win.lock);
	*out = w;
	return 0;
}

/* Every worker helps the window drain until the deadline; the last one to
 * leave gives up what is still unacknowledged. */
static void jetstream_worker_close(void *worker, int64_t deadline_ns)
{
	struct js_worker *w = worker;
	struct jetstream *js = w->js;
	publish_window_drain(&js->win, w, deadline_ns);
	publish_window_wait_settled(&js->win);
	pthread_mutex_lock(&js->win.lock);
	bool last = --js->open_workers == 0;
	if (last)
		publish_window_give_up_locked(&js->win, w, false);
	pthread_mutex_unlock(&js->win.lock);
	if (last) /* an acknowledgement may have been settling meanwhile */
		publish_window_wait_settled(&js->win);
	nats_msg_batch_fini(&w->sent);
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
