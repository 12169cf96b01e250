/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The metrics endpoint: an HTTP server (libevent's evhttp, one thread of its
 * own) on the `metrics_listen` address, answering GET /metrics with the
 * Prometheus exposition of every adapter and GET /healthz with the health
 * verdict. Started and stopped by the daemon's main thread.
 */
#ifndef CAD_METRICS_H
#define CAD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <choria-adapterd/cad_module.h>
#include "adapters.h"

struct adapter;
struct metrics;

/* Parse `metrics_listen` with libevent: "IPV4:PORT" or "[IPV6]:PORT"
 * (a scope such as [fe80::1%eth0] allowed), numeric, with a port from 1
 * to 65535. On failure returns false and points *why at a
 * sentence saying what is wrong (without the value). `sa` may be NULL to
 * only check. */
bool metrics_listen_parse(struct sockaddr_storage *sa, socklen_t *sa_len, const char *text,
			  const char **why);

/* Whether two `metrics_listen` values name the same socket address (two
 * spellings of one IPv6 address are one), and whether they name the same
 * port. An empty value (no endpoint) is the same only as another empty
 * one; a value that does not parse only as the same text. */
bool metrics_listen_same(const char *a, const char *b);
bool metrics_listen_same_port(const char *a, const char *b);

/* What the endpoint shows: the adapters, one per name, the identity that
 * labels every series (NULL: each adapter's own) and the configuration's
 * state (NULL: none). The array and the identity belong to the caller and
 * must stay valid until the view is replaced or the server stopped; the
 * state is copied. */
struct metrics_view {
	struct adapter *const *adapters;
	size_t n;
	const char *identity;
	const struct config_status *config;
	/* The last n_draining adapters are being removed: their series
	 * stay until their drain ends, but their connections, which they
	 * are closing, do not make /healthz unhealthy. */
	size_t n_draining;
};

/* Bind `listen` and serve `view` to at most `max_connections` connections
 * at once (the others are closed at once and counted), in `phase` from
 * the first request on. Errors are logged, naming metrics_listen. Returns
 * 0, -EINVAL for an address that does not parse, or the negative errno of
 * the socket call that failed (-EADDRINUSE...). */
CAD_MUSTCHECK int metrics_start(struct metrics **out, const char *listen, long max_connections,
				const struct metrics_view *view, enum metrics_phase phase);
/* The same, but an address in use (-EADDRINUSE) is left to the caller to
 * report: a reload may then free the port and try again. */
CAD_MUSTCHECK int metrics_try_start(struct metrics **out, const char *listen, long max_connections,
				    const struct metrics_view *view, enum metrics_phase phase);

/* Show another view from now on. Once it returns, no request reads the
 * previous one any more: its adapters may be freed. Accepts NULL m. */
void metrics_set_view(struct metrics *m, const struct metrics_view *view);

/* Take at most this many connections from now on; those open stay. */
void metrics_set_max_connections(struct metrics *m, long max_connections);

/* Move to another phase; /healthz is 200 only while METRICS_RUNNING. */
void metrics_set_phase(struct metrics *m, enum metrics_phase phase);

/* Stop serving: waits for the request in progress, closes the socket.
 * Accepts NULL. */
void metrics_stop(struct metrics *m);

#endif
