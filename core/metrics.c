/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The metrics endpoint's HTTP side. The listening socket is made here, not
 * by libevent, so that a port in use or an address this host does not have
 * is reported with its exact cause; libevent's evhttp then accepts on it
 * and parses HTTP. (evhttp rather than a library that also brings TLS: the
 * endpoint speaks plain HTTP, and TLS libraries cost megabytes of RSS.)
 *
 * Concurrency & locking: one thread of ours, owned by the metrics object,
 * runs the event loop and calls metrics_answer() for each request, one at
 * a time. It reads the view (adapters, identity, configuration state)
 * under `view_lock`, which the main thread takes to hand over another
 * view, so that once metrics_set_view() returns, the adapters of the old
 * one are no longer read and may be freed; and `phase`, an atomic the main
 * thread sets. metrics_stop() wakes the loop through a pipe, since a
 * libevent base is not safe to touch from another thread. Nothing the
 * modules touch is locked by a scrape except an adapter's `conns_lock` and
 * its queue's lock, each for a few loads.
 */
#include "metrics.h"
#include "adapters.h"

#include "build_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>

#include <choria-adapterd/cad_ratelimit.h>
#include "log.h"

/* A client has this long to send a whole request, from its connection
 * or from the answer to its previous request; an idle connection is
 * closed after as long. A slow client cannot hold its file descriptor for
 * longer, however it trickles its bytes. */
#define METRICS_REQUEST_TIMEOUT_S 5
/* No path takes a body; a request that brings one is still answered. */
#define METRICS_MAX_BODY 4096
#define METRICS_MAX_HEADERS 8192
/* Unread input a connection may hold: evhttp answers pipelined requests
 * one at a time and would read on without limit meanwhile. */
#define METRICS_MAX_INPUT (64 * 1024)
/* How long the endpoint stops accepting after accept() failed, as it does
 * when the process is out of file descriptors: libevent would otherwise
 * try again at once, for as long as the connection waits. */
#define METRICS_ACCEPT_PAUSE_S 1

/* One accepted connection, from its bufferevent's creation to evhttp's
 * close callback. Only the metrics thread touches these. */
struct metrics_conn {
	struct metrics *m;
	struct bufferevent *bev;
	struct evhttp_connection *evcon; /* NULL until `setup` ran */
	struct event *setup;             /* runs once evhttp made the connection */
	struct event *deadline;          /* a whole request must be in by then */
	struct metrics_conn *prev, *next;
};

struct metrics {
	struct event_base *base;
	struct evhttp *http;
	struct event *wake; /* the read end of `stop_pipe` */
	int stop_pipe[2];
	pthread_t thread;
	pthread_mutex_t view_lock; /* guards the view: the next six */
	struct adapter *const *adapters;
	size_t n;
	size_t n_draining;
	const char *identity;
	struct config_status config;
	bool has_config;
	_Atomic int phase;
	char listen[80];
	/* Connections: at most max_conns open; the others are closed at once
	 * and counted. The counters are read by metrics_render's caller on
	 * this thread, and by nobody else. */
	_Atomic long max_conns; /* a reload may change it */
	long n_conns;
	struct metrics_conn *conns;
	uint64_t refused, timed_out;
	struct cad_ratelimit refuse_limit;
	bool refusing; /* evhttp is about to complain about the refusal */
};

/* ------------------------------------------------------------ address */

/* A port as written: 1 to 5 digits, from 1 to 65535. */
static bool metrics_port_valid(const char *s)
{
	if (!*s || strlen(s) > 5)
		return false;
	unsigned long v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	return v >= 1 && v <= 65535;
}

/*
 * libevent parses the address (evutil_parse_sockaddr_port). Around it, what
 * it would let through: a missing port (read as 0), a port read with atoi()
 * ("80x" is 80), an unbracketed IPv6 address (taken as one without a
 * port), and an IPv4 address read with sscanf(), which skips blanks and
 * takes "+1" and "01" for 1. So the port must follow the address's closing
 * bracket or its only colon, in digits, and an IPv4 address must read back
 * exactly as written.
 */
bool metrics_listen_parse(struct sockaddr_storage *sa, socklen_t *sa_len, const char *text,
			  const char **why)
{
	static const char *const shape =
		"expected IPV4:PORT or [IPV6]:PORT, such as 127.0.0.1:8222 or [::1]:8222";
	static const char *const not_v4 =
		"the address is not a numeric IPv4 address (write an IPv6 one in brackets)";
	static const char *const not_v6 = "the address in brackets is not a numeric IPv6 address";
	struct sockaddr_storage tmp;
	if (!sa)
		sa = &tmp;
	memset(sa, 0, sizeof(*sa));
	bool v6 = text[0] == '[';
	const char *colon = strrchr(text, ':');
	if (!colon || (v6 && strchr(text, ']') != colon - 1)) {
		*why = shape;
		return false;
	}
	if (!v6 && strchr(text, ':') != colon) {
		*why = "an IPv6 address goes in brackets, such as [::1]:8222";
		return false;
	}
	if (!metrics_port_valid(colon + 1)) {
		*why = "the port must be a number from 1 to 65535";
		return false;
	}
	int len = (int)sizeof(*sa);
	if (evutil_parse_sockaddr_port(text, (struct sockaddr *)sa, &len) != 0 ||
	    sa->ss_family != (v6 ? AF_INET6 : AF_INET)) {
		*why = v6 ? not_v6 : not_v4;
		return false;
	}
	if (!v6) {
		char back[INET_ADDRSTRLEN];
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
		size_t n = (size_t)(colon - text);
		if (!evutil_inet_ntop(AF_INET, &a->sin_addr, back, sizeof(back)) ||
		    strlen(back) != n || memcmp(back, text, n) != 0) {
			*why = not_v4;
			return false;
		}
	}
	if (sa_len)
		*sa_len = (socklen_t)len;
	return true;
}

/* Family, port, address and IPv6 scope: what bind() is given. */
static bool metrics_sockaddr_same(const struct sockaddr_storage *a,
				  const struct sockaddr_storage *b, bool port_only)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port &&
		       (port_only || x->sin_addr.s_addr == y->sin_addr.s_addr);
	}
	const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
	return x->sin6_port == y->sin6_port &&
	       (port_only || (memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0 &&
			      x->sin6_scope_id == y->sin6_scope_id));
}

static bool metrics_listen_compare(const char *a, const char *b, bool port_only)
{
	struct sockaddr_storage sa, sb;
	const char *why;
	if (!*a || !*b)
		return !*a && !*b;
	if (!metrics_listen_parse(&sa, NULL, a, &why) || !metrics_listen_parse(&sb, NULL, b, &why))
		return strcmp(a, b) == 0;
	return metrics_sockaddr_same(&sa, &sb, port_only);
}

bool metrics_listen_same(const char *a, const char *b)
{
	return metrics_listen_compare(a, b, false);
}

/* An IPv4 and an IPv6 address on one port do not share it here: [::] is
 * bound IPv6 only. */
bool metrics_listen_same_port(const char *a, const char *b)
{
	return metrics_listen_compare(a, b, true);
}

static int open_listener(int *out, const struct sockaddr_storage *sa, socklen_t len)
{
	int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	/* A restarted daemon must not wait out its predecessor's TIME_WAIT;
	 * a port another process listens on is still refused. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* [::] means IPv6 only: the daemon binds only where it is told. */
	if (sa->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)sa, len) != 0 || listen(fd, 64) != 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	*out = fd;
	return 0;
}

/* ------------------------------------------------------------ serving */

static void free_body(const void *data, size_t len, void *arg)
{
	(void)len;
	(void)arg;
	free((void *)data);
}

/* Send `body` (malloc'd, taken). A HEAD reply carries the headers a GET
 * would, Content-Length included, and no body. */
static void reply(struct evhttp_request *req, int code, char *body, size_t len, const char *type)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *out = evbuffer_new();
	evhttp_add_header(h, "Content-Type", type);
	if (code == HTTP_BADMETHOD)
		evhttp_add_header(h, "Allow", "GET, HEAD");
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		char n[24];
		snprintf(n, sizeof(n), "%zu", len);
		evhttp_add_header(h, "Content-Length", n);
		free(body);
	} else if (!out || evbuffer_add_reference(out, body, len, free_body, NULL) != 0) {
		/* Out of memory: no body to send, so not the status it was for. */
		free(body);
		code = HTTP_INTERNAL;
	}
	evhttp_send_reply(req, code, NULL, out); /* NULL: libevent's standard phrase */
	if (out)
		evbuffer_free(out);
}

static void reply_text(struct evhttp_request *req, int code, const char *text)
{
	char *body = strdup(text);
	reply(req, body ? code : HTTP_INTERNAL, body, body ? strlen(body) : 0,
	      "text/plain; charset=utf-8");
}

static const char *method_name(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	default:
		return "other";
	}
}

/* The endpoint's own counters, after the adapters'. */
static int metrics_render_own(char **body, size_t *len, const struct metrics *m)
{
	char own[1024];
	int n = snprintf(
		own, sizeof(own),
		"# HELP choria_adapterd_metrics_connections Connections open to this endpoint.\n"
		"# TYPE choria_adapterd_metrics_connections gauge\n"
		"choria_adapterd_metrics_connections %ld\n"
		"# HELP choria_adapterd_metrics_connections_refused Connections closed at once: metrics_max_connections were open.\n"
		"# TYPE choria_adapterd_metrics_connections_refused counter\n"
		"choria_adapterd_metrics_connections_refused %llu\n"
		"# HELP choria_adapterd_metrics_requests_timed_out Connections closed before a whole request arrived in time.\n"
		"# TYPE choria_adapterd_metrics_requests_timed_out counter\n"
		"choria_adapterd_metrics_requests_timed_out %llu\n",
		m->n_conns, (unsigned long long)m->refused, (unsigned long long)m->timed_out);
	if (n < 0 || (size_t)n >= sizeof(own))
		return -ENOMEM;
	char *grown = realloc(*body, *len + (size_t)n + 1);
	if (!grown)
		return -ENOMEM;
	memcpy(grown + *len, own, (size_t)n + 1);
	*body = grown;
	*len += (size_t)n;
	return 0;
}

static const struct timeval metrics_request_timeout = {.tv_sec = METRICS_REQUEST_TIMEOUT_S};

/* The connection a request came on starts a new request's time. */
static void metrics_request_answered(struct metrics *m, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	for (struct metrics_conn *c = m->conns; c && evcon; c = c->next)
		if (c->evcon == evcon) {
			evtimer_add(c->deadline, &metrics_request_timeout);
			return;
		}
}

/* Every request is answered at once, whatever its method or body. */
static void metrics_answer(struct evhttp_request *req, void *arg)
{
	struct metrics *m = arg;
	metrics_request_answered(m, req);
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	if (!path)
		path = "";
	bool is_metrics = strcmp(path, "/metrics") == 0, is_health = strcmp(path, "/healthz") == 0;
	bool readable = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
	int code;
	if (!is_metrics && !is_health) {
		code = HTTP_NOTFOUND;
		reply_text(req, code, "not found: try /metrics or /healthz\n");
	} else if (!readable) {
		code = HTTP_BADMETHOD;
		reply_text(req, code, "method not allowed: use GET or HEAD\n");
	} else {
		char *body = NULL;
		size_t len = 0;
		int rc;
		const char *type;
		pthread_mutex_lock(&m->view_lock);
		const struct config_status *config = m->has_config ? &m->config : NULL;
		if (is_metrics) {
			rc = metrics_render(&body, &len, m->adapters, m->n, m->identity, config,
					    PACKAGE_VERSION);
			if (rc == 0)
				rc = metrics_render_own(&body, &len, m);
			code = HTTP_OK;
			type = METRICS_CONTENT_TYPE;
		} else {
			bool healthy = false;
			rc = metrics_health(&body, &len, &healthy, m->adapters,
					    m->n - m->n_draining, config,
					    (enum metrics_phase)atomic_load(&m->phase));
			code = healthy ? HTTP_OK : HTTP_SERVUNAVAIL;
			type = "application/json";
		}
		pthread_mutex_unlock(&m->view_lock);
		if (rc != 0) {
			code = HTTP_INTERNAL;
			reply_text(req, code, "out of memory\n");
		} else {
			reply(req, code, body, len, type);
		}
	}
	if (log_enabled(CAD_LOG_DEBUG))
		log_debug("metrics: %s %s: %d", method_name(cmd), path, code);
}

/* libevent's own complaints (a failed accept, say) go to the daemon's log;
 * its debug chatter is off unless asked for. */
/* The server whose thread this is, for metrics_event_log: during a reload
 * that moves the endpoint, two run at once. */
static _Thread_local struct metrics *metrics_logging;

static void metrics_event_log(int severity, const char *msg)
{
	struct metrics *m = metrics_logging;
	if (m && m->refusing) {
		/* evhttp's "cannot get connection" for a connection refused
		 * over the cap, which metrics_refuse() reports itself. */
		m->refusing = false;
		return;
	}
	if (severity >= EVENT_LOG_WARN)
		log_warn("metrics: %s", msg);
}

static void metrics_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(((struct metrics *)arg)->base);
}

/* Forget a connection: evhttp closed it, or the endpoint stops. */
static void metrics_conn_forget(struct metrics_conn *c)
{
	struct metrics *m = c->m;
	if (c->prev)
		c->prev->next = c->next;
	else
		m->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	m->n_conns--;
	event_free(c->setup);
	event_free(c->deadline);
	free(c);
}

/* evhttp is closing the connection, whatever the reason. */
static void metrics_conn_closed(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	metrics_conn_forget(arg);
}

/* A whole request did not come in time: however the client trickles its
 * bytes, the connection goes (an idle one also meets evhttp's timeout). */
static void metrics_conn_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct metrics_conn *c = arg;
	c->m->timed_out++;
	evhttp_connection_free(c->evcon); /* calls metrics_conn_closed */
}

/* Made active when the bufferevent is made, this runs once evhttp has
 * built the connection around it, before any of its input is read: the
 * bufferevent's callback argument is then evhttp's connection. */
static void metrics_conn_setup(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct metrics_conn *c = arg;
	void *evcon = NULL;
	bufferevent_getcb(c->bev, NULL, NULL, NULL, &evcon);
	if (!evcon || evhttp_connection_get_bufferevent(evcon) != c->bev) {
		/* Not evhttp's (it made a bufferevent of its own): nothing to
		 * follow. */
		metrics_conn_forget(c);
		return;
	}
	c->evcon = evcon;
	evhttp_connection_set_closecb(c->evcon, metrics_conn_closed, c);
	evtimer_add(c->deadline, &metrics_request_timeout);
}

/* A connection over the cap: evhttp is handed a bufferevent that cannot
 * take a socket, so it closes the socket at once (and says so, which
 * metrics_event_log keeps out of the log; this says it instead). */
static struct bufferevent *metrics_refuse(struct metrics *m, struct event_base *base)
{
	m->refused++;
	uint64_t suppressed;
	if (cad_ratelimit_allow(&m->refuse_limit, CAD_NS_PER_SEC, &suppressed))
		log_warn(
			"metrics: %ld connections are open (metrics_max_connections); closed a new "
			"one (%llu more since the last report)",
			m->n_conns, (unsigned long long)suppressed);
	struct bufferevent *pair[2];
	if (bufferevent_pair_new(base, BEV_OPT_CLOSE_ON_FREE, pair) != 0)
		return NULL;
	bufferevent_free(pair[1]);
	m->refusing = true;
	return pair[0];
}

/* Each connection's bufferevent, made here so that the connection is
 * counted and gets its deadline (metrics_conn_setup), and so that its
 * input is bounded: once METRICS_MAX_INPUT bytes wait, libevent stops
 * reading the socket until evhttp has consumed some. */
static struct bufferevent *metrics_new_connection(struct event_base *base, void *arg)
{
	struct metrics *m = arg;
	if (m->n_conns >= atomic_load(&m->max_conns))
		return metrics_refuse(m, base);
	struct metrics_conn *c = calloc(1, sizeof(*c));
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (c) {
		c->setup = event_new(base, -1, 0, metrics_conn_setup, c);
		c->deadline = evtimer_new(base, metrics_conn_deadline, c);
	}
	if (!bev || !c || !c->setup || !c->deadline) {
		if (c) {
			if (c->setup)
				event_free(c->setup);
			if (c->deadline)
				event_free(c->deadline);
			free(c);
		}
		return bev; /* served, but neither counted nor timed */
	}
	bufferevent_setwatermark(bev, EV_READ, 0, METRICS_MAX_INPUT);
	c->m = m;
	c->bev = bev;
	c->next = m->conns;
	if (m->conns)
		m->conns->prev = c;
	m->conns = c;
	m->n_conns++;
	event_active(c->setup, EV_TIMEOUT, 0);
	return bev;
}

static void metrics_resume(evutil_socket_t fd, short what, void *listener)
{
	(void)fd;
	(void)what;
	evconnlistener_enable(listener);
}

/* `arg` is evhttp's. The one-off timer is freed with the base if the
 * endpoint stops first. */
static void metrics_accept_failed(struct evconnlistener *listener, void *arg)
{
	(void)arg;
	int e = EVUTIL_SOCKET_ERROR();
	evconnlistener_disable(listener);
	struct timeval pause = {.tv_sec = METRICS_ACCEPT_PAUSE_S};
	if (event_base_once(evconnlistener_get_base(listener), -1, EV_TIMEOUT, metrics_resume,
			    listener, &pause) != 0)
		evconnlistener_enable(listener); /* better busy than deaf */
	log_warn("metrics: cannot accept a connection: %s; not accepting for %d s", strerror(e),
		 METRICS_ACCEPT_PAUSE_S);
}

static void *metrics_thread(void *arg)
{
	struct metrics *m = arg;
	metrics_logging = m;
	event_base_dispatch(m->base);
	metrics_logging = NULL;
	return NULL;
}

/* Everything but the thread; accepts a half-built object. */
static void metrics_free(struct metrics *m)
{
	if (m->http)
		evhttp_free(m->http); /* closes the listening socket too */
	while (m->conns)              /* made, but never set up */
		metrics_conn_forget(m->conns);
	if (m->wake)
		event_free(m->wake);
	if (m->base)
		event_base_free(m->base);
	for (int i = 0; i < 2; i++)
		if (m->stop_pipe[i] >= 0)
			close(m->stop_pipe[i]);
	pthread_mutex_destroy(&m->view_lock);
	free(m);
}

/* Every method is let through to metrics_answer(), which refuses all but
 * GET and HEAD with a 405 that says which are allowed. */
static const ev_uint16_t all_methods = EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
				       EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
				       EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH;

static void metrics_view_store(struct metrics *m, const struct metrics_view *v)
{
	m->adapters = v->adapters;
	m->n = v->n;
	m->n_draining = v->n_draining <= v->n ? v->n_draining : v->n;
	m->identity = v->identity;
	m->has_config = v->config != NULL;
	if (v->config)
		m->config = *v->config;
}

void metrics_set_view(struct metrics *m, const struct metrics_view *view)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->view_lock);
	metrics_view_store(m, view);
	pthread_mutex_unlock(&m->view_lock);
}

static int metrics_start_at(struct metrics **out, const char *listen, long max_connections,
			    const struct metrics_view *view, enum metrics_phase phase,
			    bool quiet_in_use)
{
	struct sockaddr_storage sa;
	socklen_t sa_len = 0;
	const char *why;
	if (!metrics_listen_parse(&sa, &sa_len, listen, &why)) {
		log_error("metrics_listen: '%s': %s", listen, why);
		return -EINVAL;
	}
	struct metrics *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->view_lock, NULL);
	metrics_view_store(m, view);
	atomic_init(&m->max_conns, max_connections > 0 ? max_connections : 1);
	m->stop_pipe[0] = m->stop_pipe[1] = -1;
	atomic_init(&m->phase, (int)phase);
	snprintf(m->listen, sizeof(m->listen), "%s", listen);

	int fd = -1;
	int rc = open_listener(&fd, &sa, sa_len);
	if (rc != 0) {
		if (!(quiet_in_use && rc == -EADDRINUSE))
			log_error("metrics_listen: cannot listen on %s: %s", listen, strerror(-rc));
		pthread_mutex_destroy(&m->view_lock);
		free(m);
		return rc;
	}
	event_set_log_callback(metrics_event_log);
	if (pipe2(m->stop_pipe, O_CLOEXEC) != 0) {
		rc = -errno;
		close(fd);
		log_error("metrics_listen: cannot start the HTTP server on %s: %s", listen,
			  strerror(-rc));
		metrics_free(m);
		return rc;
	}
	m->base = event_base_new();
	m->http = m->base ? evhttp_new(m->base) : NULL;
	m->wake = m->base ? event_new(m->base, m->stop_pipe[0], EV_READ, metrics_wake, m) : NULL;
	bool ready = m->http && m->wake && event_add(m->wake, NULL) == 0;
	struct evhttp_bound_socket *bound =
		ready ? evhttp_accept_socket_with_handle(m->http, fd) : NULL;
	if (!bound) {
		log_error("metrics_listen: cannot start the HTTP server on %s", listen);
		/* Whether a failed accept_socket closed the socket depends on
		 * where it failed; no other thread opens files this early. */
		if (!ready || fcntl(fd, F_GETFD) != -1)
			close(fd);
		metrics_free(m);
		return -EIO;
	}
	evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(bound), metrics_accept_failed);
	evhttp_set_gencb(m->http, metrics_answer, m);
	evhttp_set_bevcb(m->http, metrics_new_connection, m);
	evhttp_set_allowed_methods(m->http, all_methods);
	evhttp_set_timeout(m->http, METRICS_REQUEST_TIMEOUT_S);
	evhttp_set_max_body_size(m->http, METRICS_MAX_BODY);
	evhttp_set_max_headers_size(m->http, METRICS_MAX_HEADERS);
	rc = pthread_create(&m->thread, NULL, metrics_thread, m);
	if (rc != 0) {
		log_error("metrics_listen: cannot start the HTTP server on %s: %s", listen,
			  strerror(rc));
		metrics_free(m);
		return -rc;
	}
	log_info("metrics: serving /metrics and /healthz on http://%s", listen);
	*out = m;
	return 0;
}

int metrics_start(struct metrics **out, const char *listen, long max_connections,
		  const struct metrics_view *view, enum metrics_phase phase)
{
	return metrics_start_at(out, listen, max_connections, view, phase, false);
}

int metrics_try_start(struct metrics **out, const char *listen, long max_connections,
		      const struct metrics_view *view, enum metrics_phase phase)
{
	return metrics_start_at(out, listen, max_connections, view, phase, true);
}

void metrics_set_max_connections(struct metrics *m, long max_connections)
{
	if (m)
		atomic_store(&m->max_conns, max_connections > 0 ? max_connections : 1);
}

void metrics_set_phase(struct metrics *m, enum metrics_phase phase)
{
	if (m)
		atomic_store(&m->phase, (int)phase);
}

void metrics_stop(struct metrics *m)
{
	if (!m)
		return;
	/* The request in progress is answered first: the loop checks for
	 * the wake-up between callbacks. */
	while (write(m->stop_pipe[1], "x", 1) < 0 && errno == EINTR)
		;
	pthread_join(m->thread, NULL);
	metrics_free(m);
}
