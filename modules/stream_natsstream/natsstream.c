/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `natsstream` stream module: publishes each message's envelope to a
 * NATS Streaming (STAN) cluster and gives it back to the host only once the
 * cluster has acknowledged it. Publishes are asynchronous, at most
 * `max_inflight` per worker; a failed or unanswered publish is sent again
 * with capped exponential backoff. NATS Streaming has no duplicate
 * detection: a publish whose acknowledgement was lost is stored again by
 * its retry, so delivery is at least once.
 *
 * Each worker owns one streaming connection. When the library reports it
 * lost (the server stopped answering pings, or answers that it no longer
 * knows the client), the worker thread closes it and connects again with
 * backoff, under a new client id, and sends again what was in flight.
 *
 * Concurrency & locking: only the worker thread connects, publishes and
 * closes; `sc` and the connection bookkeeping are its own. Outcomes arrive
 * on cnats threads: the ack subscription (acknowledgements) and the ack
 * timer (timeouts, and "closed" for what a closed connection still held).
 * The worker's window lock (publish_window.h) guards its entries and
 * `at_library` too; its `room` is also broadcast when the library has
 * answered every publish it holds. Every successful
 * stanConnection_PublishAsync() is answered by exactly one call of the ack
 * handler, so a worker is freed only once `at_library` is back to 0. The
 * connection-lost handler runs on the cnats callback thread, possibly after
 * its worker is gone: it touches only a link, which the instance owns, and
 * never calls into the library. host->msg_done() is called outside the lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <choria-adapterd/cad_module.h>
#include "envelope.h"
#include "nats_conn.h"
#include "pacing.h"
#include "publish_window.h"
#include "subject.h"

#define RECONNECT_FIRST_MS 250
/* How long a connect or close request waits for the streaming server. */
#define REQUEST_WAIT_MS 2000
/* How long a closed connection may take to hand back what it held; it
 * takes milliseconds, this only bounds a library that would not. */
#define LIBRARY_WAIT_NS (10000 * CAD_NS_PER_MS)

struct ns_link;

struct natsstream {
	const struct cad_host *host;
	struct cad_context *ctx;
	struct nats_conn_opts conn;
	char *topic;
	struct envelope_label label; /* output_protocol */
	char *cluster_id;
	char client_prefix[160]; /* "<adapter>_" with only [A-Za-z0-9_-] */
	char run_id[16];         /* makes client ids unique per run */
	struct publish_window_opts opts;
	long ping_interval;
	long ping_max_out;
	struct cad_ratelimit warn_limit; /* for retry warnings */
	struct cad_ratelimit loss_limit; /* for messages refused for good */
	pthread_mutex_t links_lock;
	struct ns_link *links;
	struct nats_conn probe; /* start()'s one connection, to see a refusal */
};

/* What cnats callbacks reach: kept by the instance until destroy(),
 * because a callback may still run after its worker is freed. */
struct ns_link {
	struct ns_link *next;
	struct ns_link *live_next; /* in live_links */
	struct natsstream *ns;
	struct nats_conn nats; /* closure of the NATS-level callbacks */
	_Atomic(void *) lost;  /* the stanConnection reported lost */
	char name[32];         /* "stream N", for logs and state */
};

/* One message in a worker's window; its address is the publish closure.
 * In flight (pw.retry_at_ns 0), it is the library's, handed to
 * stanConnection_PublishAsync(); parked, it waits to be sent (again) when
 * connected. */
struct ns_entry {
	struct publish_window_entry pw; /* pw.msg NULL: free */
	struct ns_worker *w;
	char *channel;
	char *data; /* the envelope */
	size_t len;
	struct ns_entry *next_free;
};

struct ns_worker {
	struct natsstream *ns;
	struct ns_link *link;
	unsigned index;
	stanConnOptions *opts;
	/* The worker thread's own. */
	stanConnection *sc;
	bool sc_closed;            /* a publish found sc closed */
	unsigned connects;         /* connection attempts, for client ids */
	uint32_t connect_failures; /* in a row */
	int64_t connect_at_ns;     /* next attempt while sc is NULL */
	/* Under the window's lock. */
	struct publish_window win;
	struct ns_entry *entries; /* max_inflight of them */
	struct ns_entry *free_list;
	size_t at_library; /* entries whose ack handler call is still due */
	bool closing;      /* worker_close gave the connection up */
};

/* ------------------------------------------------------------ options */

static const struct cad_option natsstream_options[] = {
	NATS_CONN_OPTIONS,
	{.name = "clusterid",
	 .type = CAD_OPT_STRING,
	 .flags = CAD_OPT_REQUIRED,
	 .help = "the NATS Streaming cluster id"},
	{.name = "topic",
	 .type = CAD_OPT_STRING,
	 .flags = CAD_OPT_DEFAULT_ADAPTER_NAME,
	 .help = "channel to publish to; %s is replaced by the sender (default: the adapter name)"},
	PUBLISH_WINDOW_OPTIONS,
	ENVELOPE_OPTIONS(ENVELOPE_PROTOCOL_NATSSTREAM),
	{.name = "ping_interval",
	 .type = CAD_OPT_INT,
	 .def_int = 5,
	 .min = 1,
	 .max = 3600,
	 .help = "seconds between pings to the streaming server"},
	{.name = "ping_max_out",
	 .type = CAD_OPT_INT,
	 .def_int = 3,
	 .min = 2,
	 .max = 1000,
	 .help = "unanswered pings after which the streaming connection counts as lost"},
	{.name = NULL},
};

/*
 * The module's only process-wide mutable state, which the NATS library
 * forces: the links its asynchronous handlers (a lost streaming
 * connection, a NATS error) may still reach. The library queues them on
 * its callback thread and does not wait for that queue when a connection
 * is destroyed, so a handler can run after destroy() freed its link, when
 * no instance is left to ask; it looks the link up here first. The
 * module's code stays mapped for the process's life: the daemon never
 * unloads a module.
 */
static pthread_mutex_t live_links_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ns_link *live_links;

static void natsstream_live_link_add(struct ns_link *l)
{
	pthread_mutex_lock(&live_links_lock);
	l->live_next = live_links;
	live_links = l;
	pthread_mutex_unlock(&live_links_lock);
}

static void natsstream_live_link_remove(struct ns_link *l)
{
	pthread_mutex_lock(&live_links_lock);
	for (struct ns_link **p = &live_links; *p; p = &(*p)->live_next) {
		if (*p == l) {
			*p = l->live_next;
			break;
		}
	}
	pthread_mutex_unlock(&live_links_lock);
}

/* With live_links_lock held: whether `l` is still a link. */
static bool natsstream_live_link(const struct ns_link *l)
{
	for (const struct ns_link *p = live_links; p; p = p->live_next)
		if (p == l)
			return true;
	return false;
}

static void natsstream_destroy(void *instance)
{
	struct natsstream *ns = instance;
	if (!ns)
		return;
	while (ns->links) {
		struct ns_link *l = ns->links;
		ns->links = l->next;
		natsstream_live_link_remove(l);
		free(l);
	}
	pthread_mutex_destroy(&ns->links_lock);
	nats_conn_opts_clear(&ns->conn);
	free(ns->topic);
	free(ns->cluster_id);
	free(ns);
}

/* Client ids may hold only [A-Za-z0-9_-]. */
static void natsstream_client_safe(char *out, size_t len, const char *in)
{
	size_t n = 0;
	for (; *in && n + 1 < len; in++, n++) {
		char c = *in;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '-';
		out[n] = ok ? c : '_';
	}
	out[n] = '\0';
}

/* Twelve base-36 digits from the kernel's random source (the time and the
 * PID should it fail), so that two runs never share a client id. */
static void natsstream_make_run_id(char *out, size_t len)
{
	static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	uint64_t r = 0;
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		r = ((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec) ^
		    ((uint64_t)getpid() << 40);
	}
	size_t n = 0;
	for (; n < 12 && n + 1 < len; n++) {
		out[n] = digits[r % 36];
		r /= 36;
	}
	out[n] = '\0';
}

static int natsstream_create(void **instance, const struct cad_host *host, struct cad_context *ctx,
			     const struct cad_config *cfg)
{
	struct natsstream *ns = calloc(1, sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	ns->host = host;
	ns->ctx = ctx;
	pthread_mutex_init(&ns->links_lock, NULL);
	int rc = nats_conn_opts_read(&ns->conn, host, cfg);
	if (rc == -ENOMEM)
		goto fail;

	const char *cluster = host->cfg_str(cfg, "clusterid");
	if (cluster) {
		/* The cluster id is the last token of the discovery subject. */
		if (!subject_sender_valid(cluster, strlen(cluster))) {
			host->cfg_error(cfg, "clusterid", "'%s' cannot stand in a NATS subject",
					cluster);
			rc = -EINVAL;
		}
		if (!(ns->cluster_id = strdup(cluster))) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	const char *topic = host->cfg_str(cfg, "topic");
	ns->topic = strdup(topic ? topic : host->adapter_name(ctx));
	if (!ns->topic) {
		rc = -ENOMEM;
		goto fail;
	}
	const char *why;
	if (!subject_topic_valid(ns->topic, &why)) {
		host->cfg_error(cfg, "topic", "'%s': %s", ns->topic, why);
		rc = -EINVAL;
	}
	if (envelope_label_read(&ns->label, host, cfg) != 0)
		rc = -EINVAL;
	publish_window_opts_read(&ns->opts, host, cfg);
	ns->ping_interval = host->cfg_int(cfg, "ping_interval");
	ns->ping_max_out = host->cfg_int(cfg, "ping_max_out");
	char adapter[128];
	natsstream_client_safe(adapter, sizeof(adapter), host->adapter_name(ctx));
	snprintf(ns->client_prefix, sizeof(ns->client_prefix), "%s_", adapter);
	natsstream_make_run_id(ns->run_id, sizeof(ns->run_id));
	if (rc != 0)
		goto fail;
	*instance = ns;
	return 0;
fail:
	natsstream_destroy(ns);
	return rc;
}

/* Each worker connects on its own thread, in the background; a server
 * that refuses the TLS handshake or the credentials fails the start here
 * instead, as it does for the other modules, rather than be retried
 * forever. */
static int natsstream_start(void *instance)
{
	struct natsstream *ns = instance;
	return nats_conn_probe(&ns->probe, &ns->conn, ns->host, ns->ctx, "stream");
}

static void natsstream_describe(void *instance, char *buf, size_t len)
{
	struct natsstream *ns = instance;
	char servers[512];
	nats_conn_opts_servers(&ns->conn, servers, sizeof(servers));
	snprintf(buf, len, "servers %s, cluster %s, channel %s, %ld unacknowledged per worker",
		 servers, ns->cluster_id, ns->topic, ns->opts.max_inflight);
}

/* ------------------------------------------------------------ helpers */

/* The library's last error detail, or its status text. */
static const char *natsstream_status_detail(natsStatus s)
{
	const char *d = nats_GetLastError(NULL);
	return d && *d ? d : natsStatus_GetText(s);
}

/* ---------------------------------------------------- the entry table */

/* Free an entry and return the message it held. Lock held. */
static struct cad_msg *natsstream_release_entry(struct ns_worker *w, struct ns_entry *e)
{
	struct cad_msg *m = publish_window_remove_locked(&w->win, &e->pw);
	free(e->channel);
	free(e->data);
	*e = (struct ns_entry){.w = w, .next_free = w->free_list};
	w->free_list = e;
	return m;
}

/* Settle an entry: free it and tell the host. Called with the lock held;
 * returns with it released. */
static void natsstream_settle_unlock(struct ns_worker *w, struct ns_entry *e, int status,
				     const char *reason)
{
	struct cad_msg *m = natsstream_release_entry(w, e);
	publish_window_done_unlock(&w->win, m, status, reason);
}

/* Mark an entry as handed to the library, before the call: its ack may
 * arrive before the call returns. Lock held. Returns whether this attempt
 * is a retry. */
static bool natsstream_claim(struct ns_worker *w, struct ns_entry *e)
{
	w->at_library++;
	return publish_window_unpark_locked(&w->win, &e->pw);
}

static void natsstream_on_ack(const char *guid, const char *error, void *closure)
{
	(void)guid;
	struct ns_entry *e = closure;
	struct ns_worker *w = e->w;
	struct natsstream *ns = w->ns;
	bool quiet = false;
	pthread_mutex_lock(&w->win.lock);
	if (!error) {
		natsstream_settle_unlock(w, e, 0, NULL);
		pthread_mutex_lock(&w->win.lock);
	} else {
		publish_window_park_locked(&w->win, &e->pw);
		/* A closed connection has been reported already, or is being
		 * closed on purpose. */
		quiet = w->closing ||
			strcmp(error, natsStatus_GetText(NATS_CONNECTION_CLOSED)) == 0;
	}
	/* Last: once this reaches 0 the worker may be freed. */
	if (--w->at_library == 0)
		pthread_cond_broadcast(&w->win.room);
	pthread_mutex_unlock(&w->win.lock);
	if (error && !quiet)
		pacing_warn(ns->host, ns->ctx, &ns->warn_limit,
			    "NATS Streaming did not acknowledge a publish (%s); retrying", error);
}

/* Hand a claimed entry to the library. */
static void natsstream_submit(struct ns_worker *w, struct ns_entry *e, bool retry)
{
	struct natsstream *ns = w->ns;
	if (retry)
		ns->host->count_retry(ns->ctx);
	natsStatus s = stanConnection_PublishAsync(w->sc, e->channel, e->data, (int)e->len,
						   natsstream_on_ack, e);
	if (s == NATS_OK)
		return;
	/* Not taken: no ack handler call will come for it. */
	const char *detail = natsstream_status_detail(s);
	pthread_mutex_lock(&w->win.lock);
	w->at_library--;
	if (s == NATS_MAX_PAYLOAD) {
		natsstream_settle_unlock(w, e, -EMSGSIZE, "too_large");
		pacing_log(ns->host, ns->ctx, &ns->loss_limit, CAD_LOG_ERROR,
			   "a message is larger than the server accepts (max_payload)");
		return;
	}
	publish_window_park_locked(&w->win, &e->pw);
	pthread_mutex_unlock(&w->win.lock);
	if (s == NATS_CONNECTION_CLOSED) {
		w->sc_closed = true; /* the lost handler may not have run yet */
		return;
	}
	pacing_warn(ns->host, ns->ctx, &ns->warn_limit,
		    "publishing to NATS Streaming failed (%s); retrying", detail);
}

/* Send a parked entry whose time has come, the lock held; returns with it
 * held. False once the connection is gone: the rest waits for the next. */
static bool natsstream_resend_locked(void *worker, struct publish_window_entry *pe)
{
	struct ns_worker *w = worker;
	if (!w->sc || w->sc_closed)
		return false;
	struct ns_entry *e = PUBLISH_WINDOW_OWNER(pe, struct ns_entry, pw);
	bool retry = natsstream_claim(w, e);
	pthread_mutex_unlock(&w->win.lock);
	natsstream_submit(w, e, retry);
	pthread_mutex_lock(&w->win.lock);
	return true;
}

static void natsstream_settle_entry_unlock(void *worker, struct publish_window_entry *pe,
					   int status, const char *reason)
{
	natsstream_settle_unlock(worker, PUBLISH_WINDOW_OWNER(pe, struct ns_entry, pw), status,
				 reason);
}

/* --------------------------------------------------------- connection */

static void natsstream_on_lost(stanConnection *sc, const char *error, void *closure)
{
	struct ns_link *l = closure;
	pthread_mutex_lock(&live_links_lock);
	if (natsstream_live_link(l)) {
		atomic_store(&l->lost, (void *)sc);
		l->ns->host->log(l->ns->ctx, CAD_LOG_WARN,
				 "%s: lost the NATS Streaming connection (%s); reconnecting",
				 l->name, error ? error : "no reason given");
	}
	pthread_mutex_unlock(&live_links_lock);
}

static void natsstream_on_nats_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
				     void *closure)
{
	(void)nc;
	(void)sub;
	struct ns_link *l = closure;
	pthread_mutex_lock(&live_links_lock);
	if (natsstream_live_link(l))
		nats_conn_log_async_error(&l->nats, err);
	pthread_mutex_unlock(&live_links_lock);
}

static void natsstream_client_id(const struct ns_worker *w, char *buf, size_t len)
{
	const struct natsstream *ns = w->ns;
	snprintf(buf, len, "%s%u-%s-%u", ns->client_prefix, w->index + 1, ns->run_id, w->connects);
}

static void natsstream_connect_now(struct ns_worker *w)
{
	struct natsstream *ns = w->ns;
	char id[256];
	w->connects++;
	natsstream_client_id(w, id, sizeof(id));
	stanConnection *sc = NULL;
	natsStatus s = stanConnection_Connect(&sc, ns->cluster_id, id, w->opts);
	if (s != NATS_OK) {
		int64_t delay = pacing_backoff_ms(RECONNECT_FIRST_MS, ns->opts.retry_max_ms,
						  ++w->connect_failures);
		w->connect_at_ns = cad_clock_mono_ns() + delay * CAD_NS_PER_MS;
		char servers[512];
		nats_conn_opts_servers(&ns->conn, servers, sizeof(servers));
		const char *detail = s == NATS_NO_RESPONDERS
					     ? "no streaming server answers for this cluster"
					     : natsstream_status_detail(s);
		if (w->connect_failures == 1) {
			ns->host->conn_state(ns->ctx, w->link->name, false);
			ns->host->log(
				ns->ctx, CAD_LOG_WARN,
				"%s: cannot connect to NATS Streaming cluster %s at %s (%s); retrying in the background",
				w->link->name, ns->cluster_id, servers, detail);
		} else {
			pacing_warn(
				ns->host, ns->ctx, &ns->warn_limit,
				"%s: still cannot connect to NATS Streaming cluster %s (%s); next attempt in %" PRId64
				" ms",
				w->link->name, ns->cluster_id, detail, delay);
		}
		return;
	}
	w->sc = sc;
	w->sc_closed = false;
	w->connect_failures = 0;
	/* Its NATS connection's later reconnect passes follow a disconnect. */
	atomic_store(&w->link->nats.ever_up, true);
	ns->host->log(ns->ctx, CAD_LOG_INFO, "%s: connected to NATS Streaming cluster %s as %s",
		      w->link->name, ns->cluster_id, id);
	ns->host->conn_state(ns->ctx, w->link->name, true);
	/* What waited for the connection goes now. */
	pthread_mutex_lock(&w->win.lock);
	publish_window_due_now_locked(&w->win);
	pthread_mutex_unlock(&w->win.lock);
}

/* Close the connection. What the library held comes back through the ack
 * handler with an error and waits for the next connection. */
static void natsstream_drop_connection(struct ns_worker *w)
{
	if (!w->sc)
		return;
	stanConnection_Destroy(w->sc);
	w->sc = NULL;
	w->sc_closed = false;
}

/* The worker's housekeeping: notice a lost connection, connect when due,
 * send what is due. Worker thread only. */
static void natsstream_service(struct ns_worker *w, bool may_connect)
{
	void *lost = atomic_exchange(&w->link->lost, NULL);
	if (w->sc && (lost == (void *)w->sc || w->sc_closed)) {
		natsstream_drop_connection(w);
		w->ns->host->conn_state(w->ns->ctx, w->link->name, false);
		w->connect_at_ns = 0; /* the first attempt after a loss is at once */
	}
	if (!w->sc && may_connect && cad_clock_mono_ns() >= w->connect_at_ns)
		natsstream_connect_now(w);
	if (w->sc)
		publish_window_resend_due(&w->win, w);
	else
		publish_window_check_stall(&w->win);
}

static void natsstream_window_service(void *worker, bool in_time)
{
	natsstream_service(worker, in_time);
}

static const struct publish_window_ops natsstream_window_ops = {
	.service = natsstream_window_service,
	.resend_locked = natsstream_resend_locked,
	.settle_unlock = natsstream_settle_entry_unlock,
};

/* ------------------------------------------------------------ workers */

/* On failure *reason names the step that failed. */
static int natsstream_encode(struct natsstream *ns, const struct cad_msg *m, char **channel,
			     char **data, size_t *len, const char **reason)
{
	char subject[1024];
	int n = subject_build(subject, sizeof(subject), ns->topic, m->sender, m->sender_len);
	*reason = "bad_subject";
	if (n < 0)
		return n;
	*reason = "encode_failed";
	int rc = envelope_encode(data, len, &ns->label, m);
	if (rc != 0)
		return rc;
	if ((*len > (size_t)INT32_MAX) || !(*channel = strdup(subject))) {
		free(*data);
		return -ENOMEM;
	}
	return 0;
}

static void natsstream_publish(void *worker, struct cad_msg *m)
{
	struct ns_worker *w = worker;
	struct natsstream *ns = w->ns;
	char *channel = NULL, *data = NULL;
	size_t len = 0;
	const char *reason = NULL;
	int err = natsstream_encode(ns, m, &channel, &data, &len, &reason);
	if (err != 0) {
		/* The host logs the loss, with the sender made printable. */
		ns->host->msg_done(ns->ctx, m, err, reason);
		return;
	}
	natsstream_service(w, true);

	pthread_mutex_lock(&w->win.lock);
	if (!publish_window_wait_room_locked(&w->win, w)) {
		/* Draining, and no room came: this one is not sent. */
		free(channel);
		free(data);
		ns->host->msg_done(ns->ctx, m, -ETIMEDOUT, "shutdown");
		return;
	}
	struct ns_entry *e = w->free_list;
	w->free_list = e->next_free;
	*e = (struct ns_entry){.w = w, .channel = channel, .data = data, .len = len};
	/* Without a connection it goes as soon as there is one. */
	bool send = w->sc && !w->sc_closed;
	publish_window_add_locked(&w->win, &e->pw, m, send);
	if (send)
		w->at_library++;
	pthread_mutex_unlock(&w->win.lock);
	if (send)
		natsstream_submit(w, e, false);
}

static void natsstream_worker_idle(void *worker)
{
	natsstream_service(worker, true);
}

static void natsstream_free_worker(struct ns_worker *w)
{
	stanConnOptions_Destroy(w->opts);
	free(w->entries);
	publish_window_destroy(&w->win);
	free(w);
}

static int natsstream_worker_open(void **out, void *instance, unsigned index)
{
	struct natsstream *ns = instance;
	struct ns_worker *w = calloc(1, sizeof(*w));
	struct ns_link *l = calloc(1, sizeof(*l));
	if (!w || !l) {
		free(w);
		free(l);
		return -ENOMEM;
	}
	l->ns = ns;
	snprintf(l->name, sizeof(l->name), "stream %u", index + 1);
	pthread_mutex_lock(&ns->links_lock);
	l->next = ns->links;
	ns->links = l;
	pthread_mutex_unlock(&ns->links_lock);
	natsstream_live_link_add(l);

	w->ns = ns;
	w->link = l;
	w->index = index;
	publish_window_init(&w->win, ns->host, ns->ctx, &natsstream_window_ops);
	/* The library answers every publish it holds, in time or not. */
	publish_window_size(&w->win, &ns->opts, ns->opts.max_inflight, false);
	int rc = -ENOMEM;
	w->entries = calloc((size_t)ns->opts.max_inflight, sizeof(*w->entries));
	if (!w->entries)
		goto fail;
	publish_window_places(&w->win, &w->entries[0].pw, sizeof(w->entries[0]),
			      (size_t)ns->opts.max_inflight);
	char stall_name[sizeof(l->name) + 32];
	snprintf(stall_name, sizeof(stall_name), "%s acknowledgements", l->name);
	publish_window_report_stalls(&w->win, stall_name);
	for (size_t i = (size_t)ns->opts.max_inflight; i-- > 0;) {
		w->entries[i].w = w;
		w->entries[i].next_free = w->free_list;
		w->free_list = &w->entries[i];
	}

	/* The streaming connection rides on a NATS connection built like
	 * every other one (servers, TLS, credentials); the library then
	 * sets its own name, reconnect buffer and first-connect policy. */
	natsOptions *no = NULL;
	rc = nats_conn_options(&no, &l->nats, &ns->conn, ns->host, ns->ctx, l->name);
	if (rc != 0)
		goto fail;
	/* The worker thread reports the state of its streaming connection:
	 * the NATS callbacks of a connection it has already replaced would
	 * report a stale one. */
	natsStatus s = natsOptions_SetDisconnectedCB(no, NULL, NULL);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(no, NULL, NULL);
	/* Closing is this module's own doing when it replaces a streaming
	 * connection, not the library giving up. */
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(no, NULL, NULL);
	if (s == NATS_OK)
		s = natsOptions_SetErrorHandler(no, natsstream_on_nats_error, l);
	if (s == NATS_OK)
		s = stanConnOptions_Create(&w->opts);
	if (s == NATS_OK)
		s = stanConnOptions_SetNATSOptions(w->opts, no);
	natsOptions_Destroy(no);
	if (s == NATS_OK)
		s = stanConnOptions_SetPubAckWait(w->opts, ns->opts.ack_timeout_ms);
	if (s == NATS_OK)
		s = stanConnOptions_SetConnectionWait(w->opts, REQUEST_WAIT_MS);
	/* Our own window is the limit; the library's must never stall us. */
	if (s == NATS_OK)
		s = stanConnOptions_SetMaxPubAcksInflight(w->opts, (int)ns->opts.max_inflight + 1,
							  1.0f);
	if (s == NATS_OK)
		s = stanConnOptions_SetPings(w->opts, (int)ns->ping_interval,
					     (int)ns->ping_max_out);
	if (s == NATS_OK)
		s = stanConnOptions_SetConnectionLostHandler(w->opts, natsstream_on_lost, l);
	if (s != NATS_OK) {
		nats_conn_log_status(ns->host, ns->ctx, CAD_LOG_ERROR, s, l->name);
		rc = nats_status_errno(s);
		goto fail;
	}
	/* A cluster that cannot be reached now is tried again from
	 * publish() and worker_idle(). */
	natsstream_connect_now(w);
	*out = w;
	return 0;
fail:
	natsstream_free_worker(w); /* the link stays with the instance */
	return rc;
}

static void natsstream_worker_close(void *worker, int64_t deadline_ns)
{
	struct ns_worker *w = worker;
	struct natsstream *ns = w->ns;
	publish_window_drain(&w->win, w, deadline_ns);
	pthread_mutex_lock(&w->win.lock);
	w->closing = true;
	pthread_mutex_unlock(&w->win.lock);
	/* Closing tells the server the client is gone, and makes the
	 * library answer every publish it still holds. */
	natsstream_drop_connection(w);

	int64_t until = cad_clock_mono_ns() + LIBRARY_WAIT_NS;
	pthread_mutex_lock(&w->win.lock);
	while (w->at_library && cad_clock_mono_ns() < until)
		pacing_cond_wait(&w->win.room, &w->win.lock, until);
	/* What the library still holds stays: its ack handler call is due. */
	publish_window_give_up_locked(&w->win, w, true);
	size_t stuck = w->at_library;
	pthread_mutex_unlock(&w->win.lock);
	if (stuck) {
		/* Their ack handler calls would find freed memory: keep it. */
		ns->host->log(
			ns->ctx, CAD_LOG_ERROR,
			"%s: the NATS library still holds %zu publishes after closing; leaving them",
			w->link->name, stuck);
	} else {
		natsstream_free_worker(w);
	}
	/* The library keeps error state per thread; this thread is ours. */
	nats_ReleaseThreadMemory();
}

static const struct cad_module natsstream_module = {
	.abi_major = CAD_ABI_MAJOR,
	.abi_minor = CAD_ABI_MINOR,
	.size = sizeof(struct cad_module),
	.kind = CAD_KIND_STREAM,
	.type = "natsstream",
	.version = PACKAGE_VERSION,
	.summary = "publish envelopes to NATS Streaming (STAN), acknowledged, at least once",
	.options = natsstream_options,
	.create = natsstream_create,
	.start = natsstream_start,
	.destroy = natsstream_destroy,
	.describe = natsstream_describe,
	.worker_open = natsstream_worker_open,
	.publish = natsstream_publish,
	.worker_idle = natsstream_worker_idle,
	.worker_close = natsstream_worker_close,
};

CAD_EXPORT const struct cad_module *cad_module_entry(void);
CAD_EXPORT const struct cad_module *cad_module_entry(void)
{
	return &natsstream_module;
}
