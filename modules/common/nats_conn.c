/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NATS connection options and connections for the bundled modules (see
 * nats_conn.h). TLS files are checked with OpenSSL when the configuration
 * is read, so that a wrong file is a configuration error naming its option.
 *
 * Concurrency & locking: the connection callbacks run on cnats threads and
 * only call host->conn_state() and host->log(), both thread-safe, and use
 * the connection's `closing` and `closed_cb` flags (atomic). cnats makes
 * them after natsConnection_Close() returns, so closing waits for the last
 * one (nats_conn_on_closed) before the owner can free the connection.
 */
#include "nats_conn.h"
#include "ca_file.h"
#include "pacing.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

const char *const nats_conn_default_servers[] = {"nats://127.0.0.1:4222", NULL};

/* Reconnect backoff: 250 ms doubling to 5 s, with jitter from cnats. */
#define RECONNECT_FIRST_MS 250
#define RECONNECT_MAX_MS 5000
/* How long closing waits for cnats's last callback of a connection. */
#define CLOSE_CB_WAIT_MS 5000
/* A probe connection holds nothing to flush. */
#define PROBE_CLOSE_MS 1000

static char *nats_conn_dup_opt(const struct cad_host *h, const struct cad_config *cfg,
			       const char *name, int *nomem)
{
	const char *v = h->cfg_str(cfg, name);
	if (!v || !*v)
		return NULL;
	char *d = strdup(v);
	if (!d)
		*nomem = 1;
	return d;
}

static int nats_conn_check_readable(const struct cad_host *h, const struct cad_config *cfg,
				    const char *name, const char *path)
{
	if (!path || access(path, R_OK) == 0)
		return 0;
	h->cfg_error(cfg, name, "cannot read %s: %s", path, strerror(errno));
	return 1;
}

static BIO *nats_conn_open_pem(const char *path)
{
	return BIO_new_file(path, "r");
}

/* tls_ca: readable, at least one certificate, and nothing unreadable among
 * them. */
static int nats_conn_check_ca_file(const struct cad_host *h, const struct cad_config *cfg,
				   const char *path)
{
	char why[512];
	if (!path || ca_file_read(path, NULL, NULL, why, sizeof(why)) > 0)
		return 0;
	h->cfg_error(cfg, "tls_ca", "%s", why);
	return 1;
}

/* tls_cert starts with a certificate, tls_key is a private key, and the
 * two belong together. */
static int nats_conn_check_cert_and_key(const struct cad_host *h, const struct cad_config *cfg,
					const char *cert_path, const char *key_path)
{
	BIO *cb = nats_conn_open_pem(cert_path),
	    *kb = key_path ? nats_conn_open_pem(key_path) : NULL;
	X509 *cert = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
	EVP_PKEY *key = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
	int errors = 0;

	if (cb && !cert) {
		h->cfg_error(cfg, "tls_cert", "%s does not start with a PEM certificate",
			     cert_path);
		errors++;
	}
	if (kb && !key) {
		h->cfg_error(cfg, "tls_key", "%s is not an unencrypted PEM private key", key_path);
		errors++;
	}
	if (cert && key && X509_check_private_key(cert, key) != 1) {
		h->cfg_error(cfg, "tls_key", "%s is not the private key of the certificate in %s",
			     key_path, cert_path);
		errors++;
	}
	X509_free(cert);
	EVP_PKEY_free(key);
	BIO_free(cb);
	BIO_free(kb);
	ERR_clear_error();
	return errors;
}

int nats_conn_opts_read(struct nats_conn_opts *o, const struct cad_host *h,
			const struct cad_config *cfg)
{
	memset(o, 0, sizeof(*o));
	int nomem = 0, errors = 0;
	o->n_servers = h->cfg_list_len(cfg, "servers");
	if (o->n_servers == 0) {
		h->cfg_error(cfg, "servers", "at least one server is needed");
		errors++;
	}
	o->servers = calloc(o->n_servers + 1, sizeof(char *));
	if (!o->servers)
		return -ENOMEM;
	for (unsigned i = 0; i < o->n_servers; i++) {
		const char *url = h->cfg_list_str(cfg, "servers", i);
		if (!strstr(url, "://") && strchr(url, ' ')) {
			h->cfg_error(cfg, "servers", "'%s' is not a server URL", url);
			errors++;
		}
		if (!(o->servers[i] = strdup(url)))
			nomem = 1;
	}
	o->tls_ca = nats_conn_dup_opt(h, cfg, "tls_ca", &nomem);
	o->tls_cert = nats_conn_dup_opt(h, cfg, "tls_cert", &nomem);
	o->tls_key = nats_conn_dup_opt(h, cfg, "tls_key", &nomem);
	o->user = nats_conn_dup_opt(h, cfg, "user", &nomem);
	o->password = nats_conn_dup_opt(h, cfg, "password", &nomem);
	o->token = nats_conn_dup_opt(h, cfg, "token", &nomem);
	o->credentials = nats_conn_dup_opt(h, cfg, "credentials", &nomem);
	if (nomem)
		return -ENOMEM;

	errors += nats_conn_check_readable(h, cfg, "tls_cert", o->tls_cert);
	errors += nats_conn_check_readable(h, cfg, "tls_key", o->tls_key);
	errors += nats_conn_check_readable(h, cfg, "credentials", o->credentials);
	errors += nats_conn_check_ca_file(h, cfg, o->tls_ca);
	if (o->tls_cert)
		errors += nats_conn_check_cert_and_key(h, cfg, o->tls_cert, o->tls_key);
	if (!o->tls_cert != !o->tls_key) {
		h->cfg_error(cfg, o->tls_cert ? "tls_key" : "tls_cert",
			     "tls_cert and tls_key go together");
		errors++;
	}
	if (o->password && !o->user) {
		h->cfg_error(cfg, "password", "a password needs a user");
		errors++;
	}
	if ((o->user != NULL) + (o->token != NULL) + (o->credentials != NULL) > 1) {
		h->cfg_error(cfg, o->credentials ? "credentials" : "token",
			     "use only one of user, token and credentials");
		errors++;
	}
	return errors ? -EINVAL : 0;
}

void nats_conn_opts_clear(struct nats_conn_opts *o)
{
	for (unsigned i = 0; o->servers && i < o->n_servers; i++)
		free(o->servers[i]);
	free(o->servers);
	free(o->tls_ca);
	free(o->tls_cert);
	free(o->tls_key);
	free(o->user);
	free(o->password);
	free(o->token);
	free(o->credentials);
	memset(o, 0, sizeof(*o));
}

void nats_conn_opts_servers(const struct nats_conn_opts *o, char *buf, size_t len)
{
	size_t n = 0;
	buf[0] = '\0';
	for (unsigned i = 0; i < o->n_servers && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? "," : "", o->servers[i]);
}

int nats_status_errno(natsStatus s)
{
	switch (s) {
	case NATS_OK:
		return 0;
	case NATS_NO_MEMORY:
		return -ENOMEM;
	case NATS_TIMEOUT:
		return -ETIMEDOUT;
	case NATS_CONNECTION_CLOSED:
	case NATS_CONNECTION_DISCONNECTED:
	case NATS_NOT_YET_CONNECTED:
		return -ENOTCONN;
	case NATS_NO_RESPONDERS:
		return -EHOSTUNREACH;
	case NATS_INVALID_ARG:
	case NATS_INVALID_SUBJECT:
		return -EINVAL;
	case NATS_MAX_PAYLOAD:
		return -EMSGSIZE;
	case NATS_SSL_ERROR:
	case NATS_NOT_PERMITTED:
		return -EACCES;
	default:
		return -EIO;
	}
}

void nats_conn_log_status(const struct cad_host *h, struct cad_context *ctx,
			  enum cad_log_level level, natsStatus s, const char *what)
{
	const char *detail = nats_GetLastError(NULL);
	h->log(ctx, level, "%s: %s%s%s", what, natsStatus_GetText(s), detail && *detail ? ": " : "",
	       detail && *detail ? detail : "");
}

static void nats_conn_on_connected(natsConnection *nc, void *closure)
{
	(void)nc;
	struct nats_conn *c = closure;
	atomic_store(&c->ever_up, true);
	c->host->conn_state(c->ctx, c->name, true);
}

static void nats_conn_on_disconnected(natsConnection *nc, void *closure)
{
	(void)nc;
	struct nats_conn *c = closure;
	if (!atomic_load(&c->closing))
		c->host->conn_state(c->ctx, c->name, false);
}

static void nats_conn_on_reconnected(natsConnection *nc, void *closure)
{
	(void)nc;
	struct nats_conn *c = closure;
	c->host->conn_state(c->ctx, c->name, true);
	if (c->on_reconnect)
		c->on_reconnect(c);
}

static void nats_conn_on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
				     void *closure)
{
	(void)nc;
	(void)sub;
	nats_conn_log_async_error(closure, err);
}

void nats_conn_log_async_error(struct nats_conn *c, natsStatus err)
{
	if (err == NATS_SLOW_CONSUMER)
		pacing_warn(
			c->host, c->ctx, &c->error_limit,
			"%s: messages are arriving faster than they are processed; the NATS client dropped some (slow consumer)",
			c->name);
	else
		pacing_warn(c->host, c->ctx, &c->error_limit, "%s: %s", c->name,
			    natsStatus_GetText(err));
}

/*
 * What OpenSSL last said on this thread, emptying its error queue: a TLS
 * alert from the server ("sslv3 alert bad certificate") is often the only
 * reason given for a refused handshake, which the NATS client reports as
 * a connection closed without an answer. NULL when there is nothing.
 */
static const char *nats_conn_tls_reason(char *buf, size_t len)
{
	unsigned long e, last = 0;
	const char *r;

	while ((e = ERR_get_error()))
		last = e;
	if (!last || !(r = ERR_reason_error_string(last)))
		return NULL;
	snprintf(buf, len, "%s", r);
	return buf;
}

/* Whether this process can open a socket now. A connect that failed
 * because it could not (out of file descriptors, out of memory) is the
 * host's doing, and the log must say so rather than blame the server. */
static const char *nats_conn_local_reason(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		close(fd);
		return NULL;
	}
	switch (errno) {
	case EMFILE:
		return "this process has no file descriptor left (EMFILE): raise LimitNOFILE";
	case ENFILE:
		return "the system has no file descriptor left (ENFILE)";
	case ENOMEM:
	case ENOBUFS:
		return "out of memory for a socket (ENOMEM)";
	default:
		return NULL;
	}
}

/* The connection's last error as text, for a log line; cnats calls the
 * reconnect callbacks on the thread that made the attempt, so OpenSSL's
 * queue holds that attempt's TLS errors. */
static const char *nats_conn_last_error(natsConnection *nc, char *buf, size_t len)
{
	const char *local = nats_conn_local_reason();
	if (local)
		return local;
	const char *text = NULL;
	char tls[160];
	natsStatus err = natsConnection_GetLastError(nc, &text);
	const char *alert = nats_conn_tls_reason(tls, sizeof(tls));

	const char *status = err == NATS_OK ? "refused" : natsStatus_GetText(err);

	if (err == NATS_OK && !alert)
		return "no server answered";
	if (text && (!*text || strcmp(text, status) == 0))
		text = NULL; /* nothing the status does not say */
	snprintf(buf, len, "%s%s%s%s%s", status, text ? ": " : "", text ? text : "",
		 alert ? "; TLS: " : "", alert ? alert : "");
	return buf;
}

/*
 * cnats calls this for the `attempts`-th time before the last server of
 * a pass is tried, and asks how long to wait first. After a disconnect,
 * the first call comes before any server was tried; while the first
 * connection is retried, the start's own pass has failed already. The
 * operator hears of the 1st, 2nd, 4th, 8th... failed pass, then every
 * 64th.
 */
static int64_t nats_conn_reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
	struct nats_conn *c = closure;
	char why[256];
	int failed = attempts - (atomic_load(&c->ever_up) ? 1 : 0);

	if (!atomic_load(&c->closing) && failed > 0 &&
	    ((failed & (failed - 1)) == 0 || failed % 64 == 0))
		c->host->log(c->ctx, CAD_LOG_WARN,
			     "%s: cannot connect to %s yet (%d attempt%s): %s", c->name, c->servers,
			     failed, failed == 1 ? "" : "s",
			     nats_conn_last_error(nc, why, sizeof(why)));
	return pacing_backoff_ms(RECONNECT_FIRST_MS, RECONNECT_MAX_MS,
				 attempts > 0 ? (uint32_t)attempts : 1);
}

/*
 * The client closes a connection for good only when told to, or when a
 * server refused the same credentials twice in a row while reconnecting:
 * the second case needs the operator. This is the last callback cnats
 * makes for a connection (they run in order on one thread), so
 * nats_conn_close() waits for `closed_cb` before the owner may free `c`:
 * nothing may touch `c` after it is set.
 */
static void nats_conn_on_closed(natsConnection *nc, void *closure)
{
	struct nats_conn *c = closure;
	char why[256];

	if (!atomic_load(&c->closing)) {
		c->host->conn_state(c->ctx, c->name, false);
		c->host->log(
			c->ctx, CAD_LOG_ERROR,
			"%s: the NATS client gave up the connection to %s: %s; restart the daemon once this is fixed",
			c->name, c->servers, nats_conn_last_error(nc, why, sizeof(why)));
	}
	atomic_store(&c->closed_cb, true);
}

/*
 * The NATS library's lifetime. It is one shared library per process and
 * keeps its own record of being open, while each module links its own copy
 * of this file: a flag here would be one per module, so the library's
 * record is the one owner. The first connection of any module opens it;
 * later calls find it open and return at once.
 *
 * It is never closed, on purpose. Once closed, the library's exit handler
 * frees OpenSSL's list of compression methods, which OpenSSL's own exit
 * handler (registered earlier, at the first certificate check, so run
 * later) frees again: a crash at exit whenever TLS was used. Left open, it
 * still holds references at exit and skips that cleanup; its threads end
 * with the process.
 */
static natsStatus nats_conn_library_open(void)
{
	/* cnats spins on a busy lock (2000 pauses by default) before sleeping,
	 * which only burns a core the lock holder may be waiting for when the
	 * daemon has more threads than cores. Only the call that opens the
	 * library sets it, so this comes before the first object, which
	 * would open it with the default. */
	return nats_Open(0);
}

/* `retry`: keep trying in the background when no server can be reached. */
static natsStatus nats_conn_build_options(natsOptions **out, struct nats_conn *c,
					  const struct nats_conn_opts *o, bool retry)
{
	natsOptions *opts = NULL;
	natsStatus s = nats_conn_library_open();
	if (s == NATS_OK)
		s = natsOptions_Create(&opts);
	if (s == NATS_OK)
		s = natsOptions_SetServers(opts, (const char **)o->servers, (int)o->n_servers);
	if (s == NATS_OK)
		s = natsOptions_SetName(opts, c->name);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(opts, -1);
	if (s == NATS_OK)
		s = natsOptions_SetCustomReconnectDelay(opts, nats_conn_reconnect_delay, c);
	if (s == NATS_OK && retry)
		s = natsOptions_SetRetryOnFailedConnect(opts, true, nats_conn_on_connected, c);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(opts, nats_conn_on_closed, c);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(opts, nats_conn_on_disconnected, c);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(opts, nats_conn_on_reconnected, c);
	if (s == NATS_OK)
		s = natsOptions_SetErrorHandler(opts, nats_conn_on_async_error, c);
	/* Large enough that a burst of publishes survives a short outage. */
	if (s == NATS_OK)
		s = natsOptions_SetReconnectBufSize(opts, 64 * 1024 * 1024);
	if (s == NATS_OK && (o->tls_ca || o->tls_cert))
		s = natsOptions_SetSecure(opts, true);
	if (s == NATS_OK && o->tls_ca)
		s = natsOptions_LoadCATrustedCertificates(opts, o->tls_ca);
	if (s == NATS_OK && o->tls_cert)
		s = natsOptions_LoadCertificatesChain(opts, o->tls_cert, o->tls_key);
	if (s == NATS_OK && o->user)
		s = natsOptions_SetUserInfo(opts, o->user, o->password);
	if (s == NATS_OK && o->token)
		s = natsOptions_SetToken(opts, o->token);
	if (s == NATS_OK && o->credentials)
		s = natsOptions_SetUserCredentialsFromFiles(opts, o->credentials, NULL);
	if (s != NATS_OK) {
		natsOptions_Destroy(opts);
		return s;
	}
	*out = opts;
	return NATS_OK;
}

/* A connection record before its first callback can run. */
static void nats_conn_init(struct nats_conn *c, const struct nats_conn_opts *o,
			   const struct cad_host *h, struct cad_context *ctx, const char *name)
{
	c->host = h;
	c->ctx = ctx;
	c->nc = NULL;
	atomic_init(&c->closing, false);
	atomic_init(&c->closed_cb, false);
	atomic_init(&c->ever_up, false);
	atomic_init(&c->error_limit.next_ns, 0);
	atomic_init(&c->error_limit.suppressed, 0);
	snprintf(c->name, sizeof(c->name), "%s", name);
	nats_conn_opts_servers(o, c->servers, sizeof(c->servers));
}

int nats_conn_options(natsOptions **out, struct nats_conn *c, const struct nats_conn_opts *o,
		      const struct cad_host *h, struct cad_context *ctx, const char *name)
{
	nats_conn_init(c, o, h, ctx, name);
	natsStatus s = nats_conn_build_options(out, c, o, true);
	if (s != NATS_OK) {
		nats_conn_log_status(h, ctx, CAD_LOG_ERROR, s, c->name);
		return nats_status_errno(s);
	}
	return 0;
}

/* What to check when a server refused the connection. */
static const char *nats_conn_refusal_hint(natsStatus s)
{
	switch (s) {
	case NATS_SSL_ERROR:
	case NATS_SECURE_CONNECTION_WANTED:
	case NATS_SECURE_CONNECTION_REQUIRED:
		return "; check tls_ca, tls_cert and tls_key against the server's TLS settings";
	case NATS_CONNECTION_AUTH_FAILED:
	case NATS_NOT_PERMITTED:
		return "; check user, password, token or credentials";
	default:
		return "";
	}
}

/* Log why a server answered and refused c, with the options to check. */
static void nats_conn_log_refused(const struct nats_conn *c, natsStatus s)
{
	char tls[160];
	const char *detail = nats_GetLastError(NULL),
		   *alert = nats_conn_tls_reason(tls, sizeof(tls));
	c->host->log(c->ctx, CAD_LOG_ERROR, "%s: cannot connect to %s: %s%s%s%s%s%s", c->name,
		     c->servers, natsStatus_GetText(s), detail && *detail ? ": " : "",
		     detail && *detail ? detail : "", alert ? "; TLS: " : "", alert ? alert : "",
		     nats_conn_refusal_hint(alert ? NATS_SSL_ERROR : s));
}

static natsStatus nats_conn_connect_with(struct nats_conn *c, const struct nats_conn_opts *o,
					 bool retry)
{
	natsOptions *opts = NULL;
	natsStatus s = nats_conn_build_options(&opts, c, o, retry);

	if (s == NATS_OK)
		s = natsConnection_Connect(&c->nc, opts);
	natsOptions_Destroy(opts);
	return s;
}

/*
 * The first attempt does not retry, so that its outcome tells a server
 * that cannot be reached (NATS_NO_SERVER: retried in the background from
 * then on) from one that answered and refused: a TLS handshake or
 * credentials it rejects are reported with the server's reason and fail
 * the start, as a configuration error would, since retrying them cannot
 * help and would leave the daemon running without its connection.
 */
int nats_conn_open(struct nats_conn *c, const struct nats_conn_opts *o, const struct cad_host *h,
		   struct cad_context *ctx, const char *name)
{
	nats_conn_init(c, o, h, ctx, name);

	ERR_clear_error(); /* what is left afterwards is this handshake's */
	natsStatus s = nats_conn_connect_with(c, o, false);
	if (s == NATS_NO_SERVER) {
		/* Reported before the retries begin: their connected callback
		 * may report the connection up before nats_conn_connect_with() returns. */
		h->conn_state(ctx, c->name, false);
		c->nc = NULL;
		s = nats_conn_connect_with(c, o, true);
		if (s == NATS_NOT_YET_CONNECTED) {
			h->log(ctx, CAD_LOG_WARN,
			       "%s: cannot reach %s yet; retrying in the background", c->name,
			       c->servers);
			return 0;
		}
	}
	if (s != NATS_OK) {
		nats_conn_log_refused(c, s);
		c->nc = NULL;
		return nats_status_errno(s);
	}
	atomic_store(&c->ever_up, true);
	h->conn_state(ctx, c->name, true);
	return 0;
}

int nats_conn_probe(struct nats_conn *c, const struct nats_conn_opts *o, const struct cad_host *h,
		    struct cad_context *ctx, const char *name)
{
	nats_conn_init(c, o, h, ctx, name);
	ERR_clear_error();
	natsStatus s = nats_conn_connect_with(c, o, false);
	if (s == NATS_OK) {
		nats_conn_close(c, PROBE_CLOSE_MS);
		return 0;
	}
	c->nc = NULL;
	if (s == NATS_NO_SERVER)
		return 0; /* not there yet: the caller's own connections retry */
	nats_conn_log_refused(c, s);
	return nats_status_errno(s);
}

void nats_conn_close(struct nats_conn *c, int64_t timeout_ms)
{
	nats_conn_close_all(c, 1, timeout_ms);
}

bool nats_conn_close_all(struct nats_conn *cs, unsigned n, int64_t timeout_ms)
{
	bool confirmed = true;
	/* Every drain is started before any is waited for: the client drains
	 * in the background, and a server that does not answer would
	 * otherwise cost timeout_ms per connection. */
	for (unsigned i = 0; i < n; i++) {
		if (!cs[i].nc)
			continue;
		atomic_store(&cs[i].closing, true);
		cs[i].draining = natsConnection_DrainTimeout(cs[i].nc, timeout_ms) == NATS_OK;
	}
	int64_t until = nats_Now() + timeout_ms + 100;
	for (unsigned i = 0; i < n; i++)
		while (cs[i].nc && cs[i].draining && !natsConnection_IsClosed(cs[i].nc) &&
		       nats_Now() < until)
			nats_Sleep(10);
	for (unsigned i = 0; i < n; i++)
		if (cs[i].nc)
			natsConnection_Close(cs[i].nc);
	/* cnats runs a connection's callbacks on its own thread, after
	 * Close() returns: wait for the last one, which points at cs[i]. */
	until = nats_Now() + CLOSE_CB_WAIT_MS;
	for (unsigned i = 0; i < n; i++) {
		if (!cs[i].nc)
			continue;
		if (!nats_wait_flag(&cs[i].closed_cb, until)) {
			confirmed = false;
			cs[i].host
				->log(cs[i].ctx, CAD_LOG_WARN,
				      "%s: the NATS client did not confirm the close within %d ms",
				      cs[i].name, CLOSE_CB_WAIT_MS);
		}
		natsConnection_Destroy(cs[i].nc);
		cs[i].nc = NULL;
	}
	return confirmed;
}

bool nats_wait_flag(atomic_bool *flag, int64_t deadline_ms)
{
	while (!atomic_load(flag) && nats_Now() < deadline_ms)
		nats_Sleep(5);
	return atomic_load(flag);
}
