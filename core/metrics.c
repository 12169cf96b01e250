/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The metrics endpoint's HTTP side. The listening socket is made here, not
 * by libmicrohttpd, so that a port in use or an address this host does not
 * have is reported with its exact cause; libmicrohttpd then accepts on it
 * and parses HTTP.
 *
 * Concurrency & locking: libmicrohttpd runs one internal thread that polls
 * the socket and calls metrics_answer() for each request, one at a time.
 * It reads the adapters, which the main thread keeps alive until
 * metrics_stop() has joined that thread, and `phase`, an atomic the main
 * thread sets. Nothing the modules touch is locked by a scrape except an
 * adapter's `conns_lock` and its queue's lock, each for a few loads.
 */
#include "metrics.h"

#include "build_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapter.h"
#include "log.h"

#define METRICS_MAX_CLIENTS 32
#define METRICS_IDLE_TIMEOUT_S 10

struct metrics {
	struct MHD_Daemon *httpd;
	struct adapter *const *adapters;
	size_t n;
	_Atomic int phase;
	char listen[80];
};

/* ------------------------------------------------------------ address */

static bool parse_port(const char *s, in_port_t *port)
{
	if (!*s || strlen(s) > 5)
		return false;
	unsigned long v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v < 1 || v > 65535)
		return false;
	*port = htons((uint16_t)v);
	return true;
}

bool metrics_listen_parse(struct sockaddr_storage *sa, socklen_t *sa_len, const char *text,
			  const char **why)
{
	static const char *const shape =
		"expected IPV4:PORT or [IPV6]:PORT, such as 127.0.0.1:8222 or [::1]:8222";
	struct sockaddr_storage tmp;
	if (!sa)
		sa = &tmp;
	memset(sa, 0, sizeof(*sa));
	char host[INET6_ADDRSTRLEN + 2];
	const char *port;
	bool v6 = text[0] == '[';
	if (v6) {
		const char *close = strchr(text, ']');
		if (!close || close[1] != ':' || (size_t)(close - text - 1) >= sizeof(host)) {
			*why = shape;
			return false;
		}
		memcpy(host, text + 1, (size_t)(close - text - 1));
		host[close - text - 1] = '\0';
		port = close + 2;
	} else {
		const char *colon = strchr(text, ':');
		if (!colon || (size_t)(colon - text) >= sizeof(host)) {
			*why = shape;
			return false;
		}
		if (strchr(colon + 1, ':')) {
			*why = "an IPv6 address goes in brackets, such as [::1]:8222";
			return false;
		}
		memcpy(host, text, (size_t)(colon - text));
		host[colon - text] = '\0';
		port = colon + 1;
	}
	in_port_t p;
	if (!parse_port(port, &p)) {
		*why = "the port must be a number from 1 to 65535";
		return false;
	}
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)sa;
		a->sin6_family = AF_INET6;
		a->sin6_port = p;
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
			*why = "the address in brackets is not a numeric IPv6 address";
			return false;
		}
		if (sa_len)
			*sa_len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)sa;
		a->sin_family = AF_INET;
		a->sin_port = p;
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
			*why = "the address is not a numeric IPv4 address (write an IPv6 one in brackets)";
			return false;
		}
		if (sa_len)
			*sa_len = sizeof(*a);
	}
	return true;
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

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, char *body, size_t len,
			     const char *type)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	enum MHD_Result ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned code, const char *text)
{
	char *body = strdup(text);
	if (!body)
		return MHD_NO;
	return reply(c, code, body, strlen(body), "text/plain; charset=utf-8");
}

/* Every request is answered on its first call, before any upload is read:
 * no path takes a body. */
static enum MHD_Result metrics_answer(void *cls, struct MHD_Connection *c, const char *url,
				      const char *method, const char *version,
				      const char *upload, size_t *upload_size, void **state)
{
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)state;
	struct metrics *m = cls;
	bool is_metrics = strcmp(url, "/metrics") == 0, is_health = strcmp(url, "/healthz") == 0;
	bool readable = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
			strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	unsigned code;
	enum MHD_Result ret;
	if (!is_metrics && !is_health) {
		code = MHD_HTTP_NOT_FOUND;
		ret = reply_text(c, code, "not found: try /metrics or /healthz\n");
	} else if (!readable) {
		code = MHD_HTTP_METHOD_NOT_ALLOWED;
		ret = reply_text(c, code, "method not allowed: use GET or HEAD\n");
	} else {
		char *body = NULL;
		size_t len = 0;
		int rc;
		const char *type;
		if (is_metrics) {
			rc = metrics_render(&body, &len, m->adapters, m->n, PACKAGE_VERSION);
			code = MHD_HTTP_OK;
			type = METRICS_CONTENT_TYPE;
		} else {
			bool healthy = false;
			rc = metrics_health(&body, &len, &healthy, m->adapters, m->n,
					    (enum metrics_phase)atomic_load(&m->phase));
			code = healthy ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
			type = "application/json";
		}
		if (rc != 0) {
			code = MHD_HTTP_INTERNAL_SERVER_ERROR;
			ret = reply_text(c, code, "out of memory\n");
		} else {
			ret = reply(c, code, body, len, type);
		}
	}
	if (log_enabled(CAD_LOG_DEBUG))
		log_debug("metrics: %s %s: %u", method, url, code);
	return ret;
}

static void metrics_mhd_log(void *cls, const char *fmt, va_list ap) CAD_PRINTF(2, 0);
static void metrics_mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char line[512];
	vsnprintf(line, sizeof(line), fmt, ap);
	size_t n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	log_warn("metrics: %s", line);
}

int metrics_start(struct metrics **out, const char *listen, struct adapter *const *adapters,
		  size_t n)
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
	m->adapters = adapters;
	m->n = n;
	atomic_init(&m->phase, METRICS_STARTING);
	snprintf(m->listen, sizeof(m->listen), "%s", listen);

	int fd = -1;
	int rc = open_listener(&fd, &sa, sa_len);
	if (rc != 0) {
		log_error("metrics_listen: cannot listen on %s: %s", listen, strerror(-rc));
		free(m);
		return rc;
	}
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
	if (sa.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	m->httpd = MHD_start_daemon(flags, 0, NULL, NULL, metrics_answer, m,
				    MHD_OPTION_EXTERNAL_LOGGER, metrics_mhd_log, NULL,
				    MHD_OPTION_LISTEN_SOCKET, fd,
				    MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_MAX_CLIENTS,
				    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_IDLE_TIMEOUT_S,
				    MHD_OPTION_END);
	if (!m->httpd) {
		log_error("metrics_listen: cannot start the HTTP server on %s", listen);
		/* Whether the library closed the socket on failure depends on
		 * where it failed; no other thread opens files this early. */
		if (fcntl(fd, F_GETFD) != -1)
			close(fd);
		free(m);
		return -EIO;
	}
	log_info("metrics: serving /metrics and /healthz on http://%s", listen);
	*out = m;
	return 0;
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
	/* Also closes the listening socket. */
	MHD_stop_daemon(m->httpd);
	free(m);
}
