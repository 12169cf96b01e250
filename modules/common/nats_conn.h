/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The NATS connection every bundled module makes: the options a block
 * accepts to describe it (servers, TLS, credentials), and a connection that
 * retries the first connect and reconnects forever with backoff, reporting
 * its state to the host.
 */
#ifndef CAD_NATS_CONN_H
#define CAD_NATS_CONN_H

#include <nats/nats.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <choria-adapterd/cad_module.h>
#include <choria-adapterd/cad_ratelimit.h>

/* Entries for a module's option table, in this order, ahead of its own. */
#define NATS_CONN_OPTIONS                                                                         \
	{.name = "servers",                                                                       \
	 .type = CAD_OPT_STRING_LIST,                                                             \
	 .def_list = nats_conn_default_servers,                                                   \
	 .help = "NATS server URLs"},                                                             \
		{.name = "tls_ca",                                                                \
		 .type = CAD_OPT_STRING,                                                          \
		 .help = "CA file to verify the servers with"},                                   \
		{.name = "tls_cert", .type = CAD_OPT_STRING, .help = "client certificate (PEM)"}, \
		{.name = "tls_key", .type = CAD_OPT_STRING, .help = "client private key (PEM)"},  \
		{.name = "user", .type = CAD_OPT_STRING, .help = "user name"},                    \
		{.name = "password",                                                              \
		 .type = CAD_OPT_STRING,                                                          \
		 .flags = CAD_OPT_SECRET,                                                         \
		 .help = "password"},                                                             \
		{.name = "token",                                                                 \
		 .type = CAD_OPT_STRING,                                                          \
		 .flags = CAD_OPT_SECRET,                                                         \
		 .help = "authentication token"},                                                 \
	{                                                                                         \
		.name = "credentials", .type = CAD_OPT_STRING,                                    \
		.help = "NATS credentials (.creds) file"                                          \
	}

extern const char *const nats_conn_default_servers[];

struct nats_conn_opts {
	char **servers;
	unsigned n_servers;
	char *tls_ca, *tls_cert, *tls_key;
	char *user, *password, *token, *credentials;
};

/* Read and check the options of a block; every problem is reported with
 * host->cfg_error: files that cannot be read, a tls_ca without
 * certificates, a tls_cert that is no certificate, a tls_key that is not
 * its private key. Returns 0, -EINVAL or -ENOMEM. */
int nats_conn_opts_read(struct nats_conn_opts *o, const struct cad_host *host,
			const struct cad_config *cfg);
void nats_conn_opts_clear(struct nats_conn_opts *o);
/* "nats://a:4222,nats://b:4222" into buf, for descriptions. */
void nats_conn_opts_servers(const struct nats_conn_opts *o, char *buf, size_t len);

/* One connection. Keep it at a stable address: callbacks point at it. */
struct nats_conn {
	natsConnection *nc;
	const struct cad_host *host;
	struct cad_context *ctx;
	char name[48];
	char servers[256];                         /* for log lines */
	atomic_bool closing;                       /* nats_conn_close() started: quiet callbacks */
	atomic_bool closed_cb;                     /* cnats made its last callback for nc */
	atomic_bool ever_up;                       /* connected once: a reconnect pass follows a
	                         disconnect, not a failed pass */
	bool draining;                             /* nats_conn_close_all() started its drain */
	void (*on_reconnect)(struct nats_conn *c); /* optional, from a NATS thread */
	void *user;                                /* for on_reconnect */
	struct cad_ratelimit error_limit;          /* a slow consumer may repeat per message */
};

/* Connect. A server that cannot be reached is retried in the background;
 * this fails (logged, with the server's reason) when a server answers and
 * refuses the TLS handshake or the credentials, or for errors no retry can
 * mend (bad TLS files). */
int nats_conn_open(struct nats_conn *c, const struct nats_conn_opts *o, const struct cad_host *host,
		   struct cad_context *ctx, const char *name);
/* Connect once without retrying, and close at once: for a module whose
 * own connections are made later, in the background (NATS Streaming), to
 * fail its start as nats_conn_open() would when a server answers and
 * refuses the TLS handshake or the credentials. A server that cannot be
 * reached passes. Keep c at a stable address until the module is
 * destroyed. Returns 0 or a negative errno, logged. */
int nats_conn_probe(struct nats_conn *c, const struct nats_conn_opts *o,
		    const struct cad_host *host, struct cad_context *ctx, const char *name);
/* Build the natsOptions nats_conn_open() connects with, for a connection
 * another layer makes (NATS Streaming). The callbacks report through c,
 * which must outlive that connection; c->nc stays NULL. The caller
 * destroys *out. Returns 0 or a negative errno (bad TLS files), logged. */
int nats_conn_options(natsOptions **out, struct nats_conn *c, const struct nats_conn_opts *o,
		      const struct cad_host *host, struct cad_context *ctx, const char *name);
/* Drain (flushing what was published) for at most timeout_ms, then close
 * and destroy. Accepts a connection that was never opened. */
void nats_conn_close(struct nats_conn *c, int64_t timeout_ms);
/* The same for the n connections at cs[], side by side: it takes about as
 * long as closing one, however many there are. False when the client did
 * not confirm every close: its callbacks may still reach cs[], which must
 * then be kept. */
bool nats_conn_close_all(struct nats_conn *cs, unsigned n, int64_t timeout_ms);

/* Wait until a cnats callback has set *flag, or until nats_Now() reaches
 * deadline_ms; returns the flag. */
bool nats_wait_flag(atomic_bool *flag, int64_t deadline_ms);

/* Log a NATS failure with the library's own detail, once, at the edge. */
/* Log an error the NATS client reports asynchronously on c's connection,
 * as the connections this file sets up do. */
void nats_conn_log_async_error(struct nats_conn *c, natsStatus err);

void nats_conn_log_status(const struct cad_host *host, struct cad_context *ctx,
			  enum cad_log_level level, natsStatus s, const char *what);
/* natsStatus as a negative errno for the host. */
int nats_status_errno(natsStatus s);

#endif
