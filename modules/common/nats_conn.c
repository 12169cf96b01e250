/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Concurrency & locking: the connection callbacks run on cnats threads and
 * only call host->conn_state() and host->log(), both thread-safe.
 */
#include "nats_conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const nats_conn_default_servers[] = {"nats://127.0.0.1:4222", NULL};

/* Reconnect backoff: 250 ms doubling to 5 s, with jitter from cnats. */
#define RECONNECT_FIRST_MS 250
#define RECONNECT_MAX_MS 5000

static char *dup_opt(const struct cad_host *h, const struct cad_config *cfg, const char *name,
		     int *nomem)
{
	const char *v = h->cfg_str(cfg, name);
	if (!v || !*v)
		return NULL;
	char *d = strdup(v);
	if (!d)
		*nomem = 1;
	return d;
}

static int check_readable(const struct cad_host *h, const struct cad_config *cfg, const char *name,
			  const char *path)
{
	if (!path || access(path, R_OK) == 0)
		return 0;
	h->cfg_error(cfg, name, "cannot read %s: %s", path, strerror(errno));
	return 1;
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
	o->tls_ca = dup_opt(h, cfg, "tls_ca", &nomem);
	o->tls_cert = dup_opt(h, cfg, "tls_cert", &nomem);
	o->tls_key = dup_opt(h, cfg, "tls_key", &nomem);
	o->user = dup_opt(h, cfg, "user", &nomem);
	o->password = dup_opt(h, cfg, "password", &nomem);
	o->token = dup_opt(h, cfg, "token", &nomem);
	o->credentials = dup_opt(h, cfg, "credentials", &nomem);
	if (nomem)
		return -ENOMEM;

	errors += check_readable(h, cfg, "tls_ca", o->tls_ca);
	errors += check_readable(h, cfg, "tls_cert", o->tls_cert);
	errors += check_readable(h, cfg, "tls_key", o->tls_key);
	errors += check_readable(h, cfg, "credentials", o->credentials);
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
	h->log(ctx, level, "%s: %s%s%s", what, natsStatus_GetText(s),
	       detail && *detail ? ": " : "", detail && *detail ? detail : "");
}

static void on_connected(natsConnection *nc, void *closure)
{
	(void)nc;
	struct nats_conn *c = closure;
	c->host->conn_state(c->ctx, c->name, true);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
	(void)nc;
	struct nats_conn *c = closure;
	if (!atomic_load(&c->closing))
		c->host->conn_state(c->ctx, c->name, false);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
	(void)nc;
	struct nats_conn *c = closure;
	c->host->conn_state(c->ctx, c->name, true);
	if (c->on_reconnect)
		c->on_reconnect(c);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
			   void *closure)
{
	(void)nc;
	(void)sub;
	struct nats_conn *c = closure;
	if (err == NATS_SLOW_CONSUMER)
		c->host->log(c->ctx, CAD_LOG_WARN,
			     "%s: messages are arriving faster than they are processed; the NATS client dropped some (slow consumer)",
			     c->name);
	else
		c->host->log(c->ctx, CAD_LOG_WARN, "%s: %s", c->name, natsStatus_GetText(err));
}

static int64_t reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
	(void)nc;
	(void)closure;
	int64_t d = RECONNECT_FIRST_MS;
	for (int i = 1; i < attempts && d < RECONNECT_MAX_MS; i++)
		d *= 2;
	return d < RECONNECT_MAX_MS ? d : RECONNECT_MAX_MS;
}

static natsStatus build_options(natsOptions **out, struct nats_conn *c,
				const struct nats_conn_opts *o)
{
	natsOptions *opts = NULL;
	natsStatus s = natsOptions_Create(&opts);
	if (s == NATS_OK)
		s = natsOptions_SetServers(opts, (const char **)o->servers, (int)o->n_servers);
	if (s == NATS_OK)
		s = natsOptions_SetName(opts, c->name);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(opts, -1);
	if (s == NATS_OK)
		s = natsOptions_SetCustomReconnectDelay(opts, reconnect_delay, c);
	if (s == NATS_OK)
		s = natsOptions_SetRetryOnFailedConnect(opts, true, on_connected, c);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(opts, on_disconnected, c);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(opts, on_reconnected, c);
	if (s == NATS_OK)
		s = natsOptions_SetErrorHandler(opts, on_async_error, c);
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

int nats_conn_options(natsOptions **out, struct nats_conn *c, const struct nats_conn_opts *o,
		      const struct cad_host *h, struct cad_context *ctx, const char *name)
{
	c->host = h;
	c->ctx = ctx;
	c->nc = NULL;
	snprintf(c->name, sizeof(c->name), "%s", name);
	natsStatus s = build_options(out, c, o);
	if (s != NATS_OK) {
		nats_conn_log_status(h, ctx, CAD_LOG_ERROR, s, c->name);
		return nats_status_errno(s);
	}
	return 0;
}

int nats_conn_open(struct nats_conn *c, const struct nats_conn_opts *o, const struct cad_host *h,
		   struct cad_context *ctx, const char *name)
{
	c->host = h;
	c->ctx = ctx;
	c->nc = NULL;
	atomic_store(&c->closing, false);
	snprintf(c->name, sizeof(c->name), "%s", name);

	natsOptions *opts = NULL;
	natsStatus s = build_options(&opts, c, o);
	if (s != NATS_OK) {
		nats_conn_log_status(h, ctx, CAD_LOG_ERROR, s, c->name);
		return nats_status_errno(s);
	}
	s = natsConnection_Connect(&c->nc, opts);
	natsOptions_Destroy(opts);
	if (s == NATS_NOT_YET_CONNECTED) {
		char servers[512];
		nats_conn_opts_servers(o, servers, sizeof(servers));
		h->log(ctx, CAD_LOG_WARN, "%s: cannot reach %s yet; retrying in the background",
		       c->name, servers);
		h->conn_state(ctx, c->name, false);
		return 0;
	}
	if (s != NATS_OK) {
		nats_conn_log_status(h, ctx, CAD_LOG_ERROR, s, c->name);
		c->nc = NULL;
		return nats_status_errno(s);
	}
	h->conn_state(ctx, c->name, true);
	return 0;
}

void nats_conn_close(struct nats_conn *c, int64_t timeout_ms)
{
	if (!c->nc)
		return;
	atomic_store(&c->closing, true);
	if (natsConnection_DrainTimeout(c->nc, timeout_ms) == NATS_OK) {
		for (int64_t waited = 0; !natsConnection_IsClosed(c->nc) && waited < timeout_ms + 100;
		     waited += 10)
			nats_Sleep(10);
	}
	natsConnection_Close(c->nc);
	natsConnection_Destroy(c->nc);
	c->nc = NULL;
}
