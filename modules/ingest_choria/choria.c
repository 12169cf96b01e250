/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `choria` ingest module: subscribes to a Choria subject with `workers`
 * subscriptions in one queue group, spread over `connections` NATS
 * connections (one by default: each connection costs a reader thread and
 * the server a socket to write to, while decoding runs on each
 * subscription's own delivery thread either way), decodes and checks every
 * protocol v1 or v2 message (protocol.c), verifies its hash or signature unless
 * `security = none` (verify.c), and hands the good ones to the adapter's
 * queue; the bad ones are counted and logged by host->reject().
 *
 * Concurrency & locking:
 * - create(), start(), describe(), stop() and destroy() run on the main
 *   thread; the configuration they set up is read-only afterwards.
 * - choria_on_msg() runs on the delivery thread of its worker's
 *   subscription (one per subscription, in cnats). It decodes into stack
 *   memory and calls host->reject(), msg_new(), submit(), log() and
 *   log_enabled(), which are thread-safe. The verifier is shared by every
 *   worker: read-only but for its certificate cache, which has its own
 *   lock (certcache.c). Handled messages go to the instance's `spent`
 *   batch, which has its own lock too (nats_msg_batch.c). No other lock
 *   is taken.
 * - Ending a subscription: cnats calls choria_on_complete() once the
 *   subscription is closed and its message handler has returned for the
 *   last time; stop() waits for that (bounded) before it destroys the
 *   subscription and returns, so no submit() can follow stop(). Should it
 *   never come, each worker's `stopped`/`busy` atomics (sequentially
 *   consistent, so either the callback sees `stopped` or stop() sees
 *   `busy`) keep late callbacks from submitting, and the workers' memory is
 *   deliberately left allocated for them.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <choria-adapterd/cad_module.h>
#include <choria-adapterd/cad_text.h>
#include "nats_conn.h"
#include "nats_msg_batch.h"
#include "protocol.h"
#include "verify.h"
#include "verify_v2.h"

/* The most `workers` a block may ask for: declared in the descriptor, so
 * that the host checks it with the daemon's own limit. */
#define CHORIA_MAX_WORKERS 256
/* Messages cnats buffers per subscription while the handler is busy. */
#define CHORIA_PENDING_MSGS 65536
#define CHORIA_PENDING_BYTES (256 * 1024 * 1024)
#define CHORIA_DRAIN_MS 5000 /* subscriptions, all at once */
#define CHORIA_GRACE_MS 1000 /* for the handler to return after a forced close */
#define CHORIA_CLOSE_MS 1000 /* the connections, all at once */
#define CHORIA_FLUSH_MS 5000 /* the subscriptions reaching the server */
#define CHORIA_DETAIL_LEN 320

struct choria;

struct choria_worker {
	struct nats_conn *conn; /* one of the instance's, shared */
	natsSubscription *sub;
	struct choria *self;
	struct choria_verify_scratch *scratch; /* security = verify, requests */
	atomic_bool complete;                  /* subscription closed, handler returned */
	atomic_bool stopped;                   /* late callbacks must not submit */
	atomic_int busy;                       /* callbacks running */
	atomic_ulong late;                     /* messages dropped because `stopped` */
	bool draining; /* stop() started a drain (else it closed the subscription) */
};

struct choria {
	const struct cad_host *host;
	struct cad_context *ctx;
	struct nats_conn_opts nats;
	char *topic;
	char *queue_group;
	char *ca;                         /* security = verify, requests */
	struct choria_verifier *verifier; /* security = verify, requests */
	enum choria_kind kind;
	bool verify;
	unsigned n_workers;
	struct choria_worker *workers; /* n_workers, from start() until stop() */
	unsigned n_conns;
	struct nats_conn *conns;     /* n_conns, from start() until stop(); stable
				  * addresses: cnats callbacks point at them */
	struct nats_msg_batch spent; /* handled messages, destroyed a batch at a time */
};

static const char *const choria_protocols[] = {"request", "reply", NULL};
static const char *const choria_securities[] = {"verify", "none", NULL};
static const char *const choria_privileged_defaults[] = {CHORIA_PRIVILEGED_DEFAULTS, NULL};

static const struct cad_option choria_options[] = {
	NATS_CONN_OPTIONS,
	{.name = "topic",
	 .type = CAD_OPT_STRING,
	 .flags = CAD_OPT_REQUIRED,
	 .help = "NATS subject to subscribe to (wildcards allowed)"},
	{.name = "protocol",
	 .type = CAD_OPT_STRING,
	 .def_str = "request",
	 .choices = choria_protocols,
	 .help = "what the subject carries: Choria requests or replies"},
	{.name = "security",
	 .type = CAD_OPT_STRING,
	 .def_str = "verify",
	 .choices = choria_securities,
	 .help = "verify signatures and hashes, or accept messages unverified"},
	{.name = "ca",
	 .type = CAD_OPT_STRING,
	 .help = "CA certificate (PEM) that request signers must chain to"},
	{.name = "privileged_certs",
	 .type = CAD_OPT_STRING_LIST,
	 .def_list = choria_privileged_defaults,
	 .help = "regular expressions naming certificates that may sign for any caller"},
	{.name = "allowed_certs",
	 .type = CAD_OPT_STRING_LIST,
	 .help = "regular expressions a signer certificate must match (empty: any from the CA)"},
	{.name = "issuers",
	 .type = CAD_OPT_STRING_LIST,
	 .help = "protocol v2 organisation issuers, \"<name>=<64 hex digits of an ed25519 "
		 "public key>\"; a token's ou picks one"},
	{.name = "trusted_signers",
	 .type = CAD_OPT_STRING_LIST,
	 .help = "protocol v2 trusted token signers, \"<64 hex digits>\" each (instead of "
		 "issuers)"},
	{.name = "token_cache_size",
	 .type = CAD_OPT_INT,
	 .def_int = CHORIA_TOKEN_CACHE_DEFAULT,
	 .min = 1,
	 .max = CHORIA_TOKEN_CACHE_MAX,
	 .help = "protocol v2 tokens whose verdict is remembered"},
	{.name = "connections",
	 .type = CAD_OPT_INT,
	 .def_int = 1,
	 .min = 1,
	 .max = CHORIA_MAX_WORKERS,
	 .help = "NATS connections the workers' subscriptions share, at most one per worker"},
	{.name = "cert_cache_size",
	 .type = CAD_OPT_INT,
	 .def_int = CHORIA_CERT_CACHE_DEFAULT,
	 .min = 1,
	 .max = CHORIA_CERT_CACHE_MAX,
	 .help = "signer certificates whose verdict is remembered"},
	{.name = NULL},
};

/* A subject to subscribe to: non-empty tokens without white space, '*'
 * and '>' only as whole tokens, '>' only last. */
static bool choria_subject_valid(const char *s, const char **why)
{
	const char *p = s;

	if (!*s) {
		*why = "it is empty";
		return false;
	}
	for (;;) {
		const char *end = strchr(p, '.');
		size_t n = end ? (size_t)(end - p) : strlen(p);

		if (n == 0) {
			*why = "it has an empty token";
			return false;
		}
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)p[i];
			if (c <= ' ' || c == 0x7f) {
				*why = "it contains white space or control characters";
				return false;
			}
			if ((c == '*' || c == '>') && n != 1) {
				*why = "the wildcards '*' and '>' must be whole tokens";
				return false;
			}
		}
		if (n == 1 && *p == '>' && end) {
			*why = "'>' must be the last token";
			return false;
		}
		if (!end)
			return true;
		p = end + 1;
	}
}

static void choria_free(struct choria *self)
{
	nats_msg_batch_fini(&self->spent);
	choria_verifier_free(self->verifier);
	nats_conn_opts_clear(&self->nats);
	free(self->topic);
	free(self->queue_group);
	free(self->ca);
	free(self);
}

/* Report a verifier problem as a configuration error on its option. */
struct choria_cfg_report {
	const struct cad_host *host;
	const struct cad_config *cfg;
};

static void choria_verify_error(void *arg, const char *option, const char *message)
{
	struct choria_cfg_report *r = arg;

	r->host->cfg_error(r->cfg, option, "%s", message);
}

/* A string list option as an array of borrowed strings (valid during
 * create()). Returns 0 or -ENOMEM. */
static int choria_cfg_list(const struct cad_host *host, const struct cad_config *cfg,
			   const char *name, const char ***out, unsigned *n)
{
	*n = host->cfg_list_len(cfg, name);
	*out = calloc(*n + 1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (unsigned i = 0; i < *n; i++)
		(*out)[i] = host->cfg_list_str(cfg, name, i);
	return 0;
}

/* security = verify for requests: the CA, the patterns, the v2 keys, the
 * caches. */
static int choria_create_verifier(struct choria *self, const struct cad_host *host,
				  const struct cad_config *cfg)
{
	struct choria_cfg_report report = {.host = host, .cfg = cfg};
	struct choria_verify_opts o = {.ca_file = self->ca};
	const char **privileged = NULL, **allowed = NULL, **issuers = NULL, **signers = NULL;
	unsigned n_ca = 0;
	int rc;

	o.cache_size = (size_t)host->cfg_int(cfg, "cert_cache_size");
	o.token_cache_size = (size_t)host->cfg_int(cfg, "token_cache_size");
	rc = choria_cfg_list(host, cfg, "privileged_certs", &privileged, &o.n_privileged);
	if (rc == 0)
		rc = choria_cfg_list(host, cfg, "allowed_certs", &allowed, &o.n_allowed);
	if (rc == 0)
		rc = choria_cfg_list(host, cfg, "issuers", &issuers, &o.n_issuers);
	if (rc == 0)
		rc = choria_cfg_list(host, cfg, "trusted_signers", &signers, &o.n_trusted_signers);
	if (rc == 0) {
		o.privileged = privileged;
		o.allowed = allowed;
		o.issuers = issuers;
		o.trusted_signers = signers;
		rc = choria_verifier_new(&self->verifier, &o, choria_verify_error, &report, &n_ca);
	}
	if (rc == 0 && choria_verifier_trusts(self->verifier, 1))
		host->log(
			self->ctx, CAD_LOG_INFO,
			"security = verify: protocol v1 request signers must chain to the %u CA certificate%s in %s; %u privileged and %u allowed pattern%s; %zu certificates cached",
			n_ca, n_ca == 1 ? "" : "s", self->ca, o.n_privileged, o.n_allowed,
			o.n_allowed == 1 ? "" : "s", o.cache_size);
	if (rc == 0 && choria_verifier_trusts(self->verifier, 2))
		host->log(
			self->ctx, CAD_LOG_INFO,
			"security = verify: protocol v2 tokens must come from the %u %s; %zu token verdicts cached",
			o.n_issuers ? o.n_issuers : o.n_trusted_signers,
			o.n_issuers
				? (o.n_issuers == 1 ? "issuer" : "issuers")
				: (o.n_trusted_signers == 1 ? "trusted signer" : "trusted signers"),
			o.token_cache_size);
	if (rc == 0 && !choria_verifier_trusts(self->verifier, 1))
		host->log(
			self->ctx, CAD_LOG_INFO,
			"security = verify: no ca, protocol v1 requests are rejected as untrusted_version");
	if (rc == 0 && !choria_verifier_trusts(self->verifier, 2))
		host->log(
			self->ctx, CAD_LOG_INFO,
			"security = verify: neither issuers nor trusted_signers, protocol v2 requests are rejected as untrusted_version");
	free(privileged);
	free(allowed);
	free(issuers);
	free(signers);
	return rc;
}

/* An adapter that does not verify requests still has its trust options
 * checked, so that a typo is found by `-t` wherever it is. */
static int choria_check_trust(const struct cad_host *host, const struct cad_config *cfg)
{
	struct choria_cfg_report report = {.host = host, .cfg = cfg};
	const char **issuers = NULL, **signers = NULL;
	unsigned n_issuers = 0, n_signers = 0;
	int rc = choria_cfg_list(host, cfg, "issuers", &issuers, &n_issuers);

	if (rc == 0)
		rc = choria_cfg_list(host, cfg, "trusted_signers", &signers, &n_signers);
	if (rc == 0)
		rc = choria_v2_trust_check(issuers, n_issuers, signers, n_signers,
					   choria_verify_error, &report);
	free(issuers);
	free(signers);
	return rc;
}

static int choria_create(void **instance, const struct cad_host *host, struct cad_context *ctx,
			 const struct cad_config *cfg)
{
	const char *topic, *protocol, *security, *ca, *adapter, *why;
	struct choria *self;
	int errors = 0, rc;
	long workers;

	*instance = NULL;
	self = calloc(1, sizeof(*self));
	if (!self)
		return -ENOMEM;
	self->host = host;
	self->ctx = ctx;
	nats_msg_batch_init(&self->spent);

	rc = nats_conn_opts_read(&self->nats, host, cfg);
	if (rc == -ENOMEM)
		goto nomem;
	if (rc)
		errors++;

	topic = host->cfg_str(cfg, "topic");
	if (!topic || !*topic) {
		host->cfg_error(cfg, "topic", "a subject to subscribe to is needed");
		errors++;
	} else if (!choria_subject_valid(topic, &why)) {
		host->cfg_error(cfg, "topic", "'%s' is not a valid NATS subject: %s", topic, why);
		errors++;
	} else if (!(self->topic = strdup(topic))) {
		goto nomem;
	}

	protocol = host->cfg_str(cfg, "protocol");
	if (!protocol || strcmp(protocol, "request") == 0) {
		self->kind = CHORIA_REQUEST;
	} else if (strcmp(protocol, "reply") == 0) {
		self->kind = CHORIA_REPLY;
	} else {
		host->cfg_error(cfg, "protocol", "'%s' is neither request nor reply", protocol);
		errors++;
	}

	security = host->cfg_str(cfg, "security");
	if (!security || strcmp(security, "verify") == 0) {
		self->verify = true;
	} else if (strcmp(security, "none") == 0) {
		self->verify = false;
	} else {
		host->cfg_error(cfg, "security", "'%s' is neither verify nor none", security);
		errors++;
	}

	ca = host->cfg_str(cfg, "ca");
	if (ca && *ca && !(self->ca = strdup(ca)))
		goto nomem;
	if (self->verify && self->kind == CHORIA_REQUEST)
		rc = choria_create_verifier(self, host, cfg);
	else
		rc = choria_check_trust(host, cfg);
	if (rc == -ENOMEM)
		goto nomem;
	if (rc)
		errors++;

	/* The host held `workers` to 1..max_workers (the descriptor's). */
	workers = host->cfg_int(cfg, "workers");
	self->n_workers = (unsigned)workers;
	long conns = host->cfg_int(cfg, "connections");
	if (conns > workers) {
		host->cfg_error(cfg, "connections",
				"%ld is more than the %ld workers that would use them", conns,
				workers);
		errors++;
	} else {
		self->n_conns = (unsigned)conns;
	}

	adapter = host->adapter_name(ctx);
	if (asprintf(&self->queue_group, "nats_ingest_%s", adapter ? adapter : "") < 0) {
		self->queue_group = NULL;
		goto nomem;
	}
	if (!choria_subject_valid(self->queue_group, &why) || strchr(self->queue_group, '.')) {
		host->cfg_error(
			cfg, NULL,
			"the adapter name '%s' cannot form the NATS queue group %s: use letters, digits, '-' and '_'",
			adapter ? adapter : "", self->queue_group);
		errors++;
	}

	if (errors) {
		choria_free(self);
		return -EINVAL;
	}
	if (self->verify && self->kind == CHORIA_REPLY)
		host->log(ctx, CAD_LOG_INFO,
			  "security = verify: every reply's hash is checked against its message");
	if (!self->verify)
		host->log(
			ctx, CAD_LOG_WARN,
			"security = none: messages on %s are not verified; anyone who can publish there can inject data",
			self->topic);
	*instance = self;
	return 0;

nomem:
	host->cfg_error(cfg, NULL, "out of memory");
	choria_free(self);
	return -ENOMEM;
}

/* cnats: the subscription is closed and its handler will not run again. */
static void choria_on_complete(void *closure)
{
	struct choria_worker *w = closure;

	atomic_store(&w->complete, true);
}

/* security = verify: the reply's hash, or the request's certificate,
 * caller and signature, as of now. */
static int choria_check(struct choria_worker *w, const struct choria_decoded *d,
			const char **reason, char *detail, size_t len)
{
	struct choria *self = w->self;

	if (self->kind == CHORIA_REPLY)
		return choria_verify_reply(d, reason, detail, len);
	return choria_verify_request(self->verifier, w->scratch, d, (int64_t)time(NULL), reason,
				     detail, len);
}

static void choria_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
	struct choria_worker *w = closure;
	struct choria *self;
	struct choria_decoded d;
	struct cad_msg *msg;
	const char *reason = NULL;
	char detail[CHORIA_DETAIL_LEN];
	int len = natsMsg_GetDataLength(m);
	size_t wire = len > 0 ? (size_t)len : 0;

	(void)nc;
	(void)sub;
	memset(&d, 0, sizeof(d));
	atomic_fetch_add(&w->busy, 1);
	if (atomic_load(&w->stopped)) {
		/* The instance may be gone: touch only the worker. */
		atomic_fetch_add(&w->late, 1);
		natsMsg_Destroy(m);
		atomic_fetch_sub(&w->busy, 1);
		return;
	}
	self = w->self;
	if (choria_decode(&d, self->kind, natsMsg_GetData(m), wire, &reason, detail,
			  sizeof(detail)) < 0) {
		self->host->reject(self->ctx, reason, wire, "%s", detail);
		goto out;
	}
	if (self->verify && choria_check(w, &d, &reason, detail, sizeof(detail)) < 0) {
		self->host->reject(self->ctx, reason, wire, "%s", detail);
		goto out;
	}
	if (self->host->log_enabled(CAD_LOG_DEBUG)) {
		char sender[96], id[80];
		self->host->log(self->ctx, CAD_LOG_DEBUG, "%s: %s %s from %s, %zu bytes",
				w->conn->name, choria_kind_name(self->kind),
				cad_text_printable(id, sizeof(id), d.request_id, d.request_id_len),
				cad_text_printable(sender, sizeof(sender), d.sender, d.sender_len),
				wire);
	}
	msg = self->host->msg_new(d.sender, d.sender_len, d.request_id, d.request_id_len, d.time,
				  d.body, d.body_len);
	if (!msg) {
		self->host->reject(self->ctx, "no_memory", wire,
				   "out of memory for a %zu byte message", wire);
		goto out;
	}
	msg->time_nsec = d.time_nsec;
	self->host->submit(self->ctx, &msg, wire);
out:
	choria_decoded_clear(&d);
	nats_msg_batch_put(&self->spent, m);
	atomic_fetch_sub(&w->busy, 1);
}

/*
 * End one subscription whose drain was started (or that was closed) and
 * destroy it. Returns false when cnats may still call the handler with w.
 */
static bool choria_end_subscription(struct choria *self, struct choria_worker *w,
				    int64_t deadline_ms)
{
	const struct cad_host *h = self->host;
	int64_t left = deadline_ms - nats_Now();
	natsStatus s;
	bool safe = true;

	if (w->draining)
		natsSubscription_WaitForDrainCompletion(w->sub, left > 0 ? left : 1);
	bool complete = nats_wait_flag(&w->complete, deadline_ms + CHORIA_GRACE_MS);
	if (!complete) {
		natsSubscription_Unsubscribe(w->sub);
		complete = nats_wait_flag(&w->complete, nats_Now() + CHORIA_GRACE_MS);
	}
	if (!complete) {
		int64_t until = nats_Now() + CHORIA_GRACE_MS;
		atomic_store(&w->stopped, true);
		while (atomic_load(&w->busy) > 0 && nats_Now() < until)
			nats_Sleep(5);
		h->log(self->ctx, CAD_LOG_ERROR,
		       "%s: the NATS client did not confirm the end of the subscription; keeping its memory for late deliveries",
		       w->conn->name);
		safe = false;
	} else if (w->draining) {
		s = natsSubscription_DrainCompletionStatus(w->sub);
		if (s != NATS_OK)
			h->log(self->ctx, CAD_LOG_WARN,
			       "%s: the subscription did not drain cleanly (%s); messages the client still held were dropped",
			       w->conn->name, natsStatus_GetText(s));
	}
	natsSubscription_Destroy(w->sub);
	w->sub = NULL;
	return safe;
}

/* Drain every subscription (at once), close every connection, release the
 * workers. Idempotent. */
static void choria_shutdown(struct choria *self)
{
	struct choria_worker *ws = self->workers;
	int64_t deadline;
	bool safe = true;
	unsigned long late = 0;

	if (!ws)
		return;
	/* Messages already buffered are still decoded and submitted. */
	deadline = nats_Now() + CHORIA_DRAIN_MS;
	for (unsigned i = 0; i < self->n_workers; i++) {
		natsStatus s;
		char what[128];

		if (!ws[i].sub)
			continue;
		if (natsConnection_Status(ws[i].conn->nc) != NATS_CONN_STATUS_CONNECTED) {
			/* No UNSUB can reach the server, so a drain would only
			 * wait out its timeout; nothing new arrives either:
			 * deliver what is buffered, then close. */
			int pending = 0;
			while (natsSubscription_GetPending(ws[i].sub, &pending, NULL) == NATS_OK &&
			       pending > 0 && nats_Now() < deadline)
				nats_Sleep(5);
			natsSubscription_Unsubscribe(ws[i].sub);
			continue;
		}
		s = natsSubscription_DrainTimeout(ws[i].sub, CHORIA_DRAIN_MS);
		ws[i].draining = s == NATS_OK;
		if (s == NATS_OK)
			continue;
		snprintf(what, sizeof(what), "%s: cannot drain the subscription, closing it",
			 ws[i].conn->name);
		nats_conn_log_status(self->host, self->ctx, CAD_LOG_WARN, s, what);
		natsSubscription_Unsubscribe(ws[i].sub);
	}
	for (unsigned i = 0; i < self->n_workers; i++) {
		if (ws[i].sub && !choria_end_subscription(self, &ws[i], deadline))
			safe = false;
	}
	/* A close the client did not confirm may still call back into its
	 * record: keep the memory then, as for a subscription. */
	if (!nats_conn_close_all(self->conns, self->n_conns, CHORIA_CLOSE_MS))
		safe = false;
	nats_msg_batch_flush(&self->spent);
	for (unsigned i = 0; i < self->n_workers; i++)
		late += atomic_load(&ws[i].late);
	if (late)
		self->host->log(self->ctx, CAD_LOG_WARN,
				"%lu messages delivered after the subscriptions ended were dropped",
				late);
	if (safe) {
		for (unsigned i = 0; i < self->n_workers; i++)
			choria_verify_scratch_free(ws[i].scratch);
		free(ws);
		free(self->conns);
	}
	self->workers = NULL;
	self->conns = NULL;
}

static int choria_subscribe(struct choria *self, struct choria_worker *w)
{
	char what[256];
	natsStatus s;

	s = natsConnection_QueueSubscribe(&w->sub, w->conn->nc, self->topic, self->queue_group,
					  choria_on_msg, w);
	if (s == NATS_OK)
		s = natsSubscription_SetOnCompleteCB(w->sub, choria_on_complete, w);
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(w->sub, CHORIA_PENDING_MSGS,
						      CHORIA_PENDING_BYTES);
	if (s == NATS_OK)
		return 0;
	snprintf(what, sizeof(what), "%s: cannot subscribe to %s", w->conn->name, self->topic);
	nats_conn_log_status(self->host, self->ctx, CAD_LOG_ERROR, s, what);
	return nats_status_errno(s);
}

/* The server knows the subscriptions once start() returns: a reload that
 * hands an adapter over inside its queue group stops the old instance's
 * right after, and a message in between would find nobody to take it. A
 * connection still retrying in the background subscribes when it comes. */
static void choria_flush_subscriptions(struct choria *self)
{
	for (unsigned i = 0; i < self->n_conns; i++) {
		if (natsConnection_Status(self->conns[i].nc) != NATS_CONN_STATUS_CONNECTED)
			continue;
		natsStatus s = natsConnection_FlushTimeout(self->conns[i].nc, CHORIA_FLUSH_MS);
		if (s != NATS_OK) {
			char what[128];
			snprintf(what, sizeof(what), "%s: the subscriptions are not confirmed",
				 self->conns[i].name);
			nats_conn_log_status(self->host, self->ctx, CAD_LOG_WARN, s, what);
		}
	}
}

static int choria_start(void *instance)
{
	struct choria *self = instance;
	int rc = 0;

	self->workers = calloc(self->n_workers, sizeof(*self->workers));
	self->conns = calloc(self->n_conns, sizeof(*self->conns));
	if (!self->workers || !self->conns) {
		free(self->workers);
		free(self->conns);
		self->workers = NULL;
		self->conns = NULL;
		self->host->log(self->ctx, CAD_LOG_ERROR, "out of memory");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < self->n_conns; i++) {
		char name[32];

		snprintf(name, sizeof(name), "ingest %u", i + 1);
		rc = nats_conn_open(&self->conns[i], &self->nats, self->host, self->ctx, name);
		if (rc) /* logged by nats_conn_open */
			goto fail;
	}
	for (unsigned i = 0; i < self->n_workers; i++) {
		struct choria_worker *w = &self->workers[i];

		w->self = self;
		w->conn = &self->conns[i % self->n_conns];
		atomic_init(&w->complete, false);
		atomic_init(&w->stopped, false);
		atomic_init(&w->busy, 0);
		atomic_init(&w->late, 0);
		if (self->verifier && choria_verify_scratch_new(&w->scratch) != 0) {
			self->host->log(self->ctx, CAD_LOG_ERROR, "out of memory");
			rc = -ENOMEM;
			goto fail;
		}
		rc = choria_subscribe(self, w);
		if (rc)
			goto fail;
	}
	choria_flush_subscriptions(self);
	return 0;

fail:
	choria_shutdown(self);
	return rc;
}

static void choria_stop(void *instance)
{
	choria_shutdown(instance);
}

static void choria_destroy(void *instance)
{
	struct choria *self = instance;

	if (!self)
		return;
	choria_shutdown(self);
	choria_free(self);
}

static void choria_describe(void *instance, char *buf, size_t len)
{
	struct choria *self = instance;
	char servers[512];

	char trust[600] = "";
	nats_conn_opts_servers(&self->nats, servers, sizeof(servers));
	if (self->verifier) {
		bool issuers = false;
		struct choria_v2_verifier *v2 = choria_verifier_v2(self->verifier);
		if (v2)
			choria_v2_verifier_keys(v2, &issuers);
		snprintf(trust, sizeof(trust), " against %s%s%s", self->ca ? self->ca : "",
			 self->ca && v2 ? " and " : "",
			 !v2       ? ""
			 : issuers ? "v2 issuers"
				   : "v2 trusted signers");
	}
	snprintf(
		buf, len,
		"servers %s, subject %s, protocol %s, security %s%s, queue group %s, %u subscription%s over %u connection%s",
		servers, self->topic, choria_kind_name(self->kind),
		self->verify ? "verify" : "none", trust, self->queue_group, self->n_workers,
		self->n_workers == 1 ? "" : "s", self->n_conns, self->n_conns == 1 ? "" : "s");
}

static const struct cad_module choria_module = {
	.abi_major = CAD_ABI_MAJOR,
	.abi_minor = CAD_ABI_MINOR,
	.size = sizeof(struct cad_module),
	.kind = CAD_KIND_INGEST,
	.type = "choria",
	.version = PACKAGE_VERSION,
	.summary = "receive Choria protocol v1 and v2 requests or replies from NATS",
	.options = choria_options,
	.create = choria_create,
	.start = choria_start,
	.destroy = choria_destroy,
	.describe = choria_describe,
	.stop = choria_stop,
	.max_workers = CHORIA_MAX_WORKERS,
};

CAD_EXPORT const struct cad_module *cad_module_entry(void);
CAD_EXPORT const struct cad_module *cad_module_entry(void)
{
	return &choria_module;
}
