/* SPDX-License-Identifier: Apache-2.0 */
#include "http_conf.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ca_file.h"
#include "envelope.h"

static const char *const http_method_choices[] = {"POST", "PUT", NULL};

const struct cad_option http_options[] = {
	ENVELOPE_OPTIONS(HTTP_PROTOCOL),
	{.name = "url",
	 .type = CAD_OPT_STRING,
	 .flags = CAD_OPT_REQUIRED,
	 .help = "the endpoint, http or https; %s in its path or query is the sender"},
	{.name = "method",
	 .type = CAD_OPT_STRING,
	 .def_str = "POST",
	 .choices = http_method_choices,
	 .help = "POST or PUT"},
	{.name = "headers",
	 .type = CAD_OPT_STRING_LIST,
	 .flags = CAD_OPT_SECRET,
	 .help = "more request headers, \"Name: value\""},
	{.name = "timeout",
	 .type = CAD_OPT_INT,
	 .def_int = 10,
	 .min = 1,
	 .max = 300,
	 .help = "seconds for one whole request"},
	{.name = "max_inflight",
	 .type = CAD_OPT_INT,
	 .def_int = 16,
	 .min = 1,
	 .max = 1024,
	 .help = "requests in flight per worker"},
	{.name = "batch_max",
	 .type = CAD_OPT_INT,
	 .def_int = 1,
	 .min = 1,
	 .max = 1000,
	 .help = "messages per request; above 1, the body is newline-delimited JSON"},
	{.name = "batch_wait_ms",
	 .type = CAD_OPT_INT,
	 .def_int = 50,
	 .min = 0,
	 .max = 60000,
	 .help = "longest wait, in milliseconds, to fill a batch"},
	{.name = "retry_max_interval",
	 .type = CAD_OPT_INT,
	 .def_int = 60,
	 .min = 1,
	 .max = 3600,
	 .help = "longest pause, in seconds, between two attempts (a Retry-After may ask more)"},
	{.name = "tls_ca", .type = CAD_OPT_STRING, .help = "CA certificates of the server (PEM)"},
	{.name = "tls_cert", .type = CAD_OPT_STRING, .help = "client certificate (PEM)"},
	{.name = "tls_key", .type = CAD_OPT_STRING, .help = "client key (PEM)"},
	{.name = NULL},
};

/* Headers the module writes itself, so that an operator's cannot contradict them. */
static const char *const http_own_headers[] = {"Content-Type",
					       "Content-Length",
					       "Idempotency-Key",
					       "Transfer-Encoding",
					       "Host",
					       "User-Agent",
					       NULL};

static char *http_copy(const struct cad_host *host, const struct cad_config *cfg, const char *name,
		       int *nomem)
{
	const char *v = host->cfg_str(cfg, name);
	if (!v)
		return NULL;
	char *c = strdup(v);
	if (!c)
		*nomem = 1;
	return c;
}

/* Whether every %s of url is past its scheme and authority, and before any
 * fragment: the sender may name a path or a query, not a server. */
static bool http_placeholders_placed(const char *url)
{
	const char *sep = strstr(url, "://");
	const char *path = sep ? sep + 3 + strcspn(sep + 3, "/?#") : url;
	const char *frag = strchr(path, '#');
	for (const char *p = strstr(url, "%s"); p; p = strstr(p + 2, "%s"))
		if (p < path || (frag && p > frag))
			return false;
	return true;
}

/* Parse the url, its %s standing for one sender, and note what the logs
 * and the health show of it. */
static int http_url_check(struct http_settings *s, const struct cad_host *host,
			  const struct cad_config *cfg)
{
	if (!http_placeholders_placed(s->url)) {
		host->cfg_error(cfg, "url", "'%s': %%s stands only in the path or the query",
				s->url);
		return 1;
	}
	s->per_sender = strstr(s->url, "%s") != NULL;
	char *probe = http_url_for(s->url, "x", 1);
	CURLU *u = curl_url();
	if (!probe || !u) {
		free(probe);
		curl_url_cleanup(u);
		return -1;
	}
	int errors = 0;
	CURLUcode uc = curl_url_set(u, CURLUPART_URL, probe, 0);
	char *scheme = NULL, *hostname = NULL, *port = NULL, *path = NULL;
	if (uc != CURLUE_OK) {
		host->cfg_error(cfg, "url", "'%s': libcurl cannot parse it: %s", s->url,
				curl_url_strerror(uc));
		errors++;
	} else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		   (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		host->cfg_error(cfg, "url", "'%s': the scheme is http or https", s->url);
		errors++;
	} else if (curl_url_get(u, CURLUPART_HOST, &hostname, 0) == CURLUE_OK &&
		   curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
		   curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK) {
		/* The path as configured, %s and all, rather than the probe's. */
		const char *sep = strstr(s->url, "://");
		const char *p = sep ? sep + 3 : s->url;
		p += strcspn(p, "/?#");
		size_t plen = strcspn(p, "?#");
		if (asprintf(&s->shown, "%s://%s:%s%.*s", scheme, hostname, port, (int)plen,
			     plen ? p : "/") < 0)
			s->shown = NULL;
		if (asprintf(&s->endpoint, "endpoint %s:%s", hostname, port) < 0)
			s->endpoint = NULL;
		if (!s->shown || !s->endpoint)
			errors = -1;
	} else {
		errors = -1;
	}
	curl_free(scheme);
	curl_free(hostname);
	curl_free(port);
	curl_free(path);
	curl_url_cleanup(u);
	free(probe);
	return errors;
}

/* The operator's headers: "Name: value" each, no line break, none the
 * module writes. A value is never printed: it may be a secret. */
static int http_headers_read(struct http_settings *s, const struct cad_host *host,
			     const struct cad_config *cfg, int *nomem)
{
	int errors = 0;
	unsigned n = host->cfg_list_len(cfg, "headers");
	s->headers = calloc(n + 1, sizeof(*s->headers));
	if (!s->headers) {
		*nomem = 1;
		return 0;
	}
	for (unsigned i = 0; i < n; i++) {
		const char *h = host->cfg_list_str(cfg, "headers", i);
		const char *colon = strchr(h, ':');
		size_t name_len = colon ? (size_t)(colon - h) : 0;
		if (!colon || name_len == 0 || strcspn(h, " \t") < name_len) {
			host->cfg_error(cfg, "headers", "entry %u is not \"Name: value\"", i + 1);
			errors++;
			continue;
		}
		if (strpbrk(h, "\r\n")) {
			host->cfg_error(cfg, "headers", "entry %u holds a line break", i + 1);
			errors++;
			continue;
		}
		for (const char *const *own = http_own_headers; *own; own++)
			if (strlen(*own) == name_len && strncasecmp(h, *own, name_len) == 0) {
				host->cfg_error(cfg, "headers",
						"entry %u sets %s, which the module writes itself",
						i + 1, *own);
				errors++;
			}
		if (!(s->headers[s->n_headers++] = strdup(h)))
			*nomem = 1;
	}
	return errors;
}

static int http_tls_read(struct http_settings *s, const struct cad_host *host,
			 const struct cad_config *cfg, int *nomem)
{
	int errors = 0;
	s->tls_ca = http_copy(host, cfg, "tls_ca", nomem);
	s->tls_cert = http_copy(host, cfg, "tls_cert", nomem);
	s->tls_key = http_copy(host, cfg, "tls_key", nomem);
	char why[512];
	if (s->tls_ca && ca_file_read(s->tls_ca, NULL, NULL, why, sizeof(why)) < 0) {
		host->cfg_error(cfg, "tls_ca", "%s", why);
		errors++;
	}
	const char *names[] = {"tls_cert", "tls_key"};
	const char *paths[] = {s->tls_cert, s->tls_key};
	for (int i = 0; i < 2; i++)
		if (paths[i] && access(paths[i], R_OK) != 0) {
			host->cfg_error(cfg, names[i], "cannot read %s: %s", paths[i],
					strerror(errno));
			errors++;
		}
	if (!s->tls_cert != !s->tls_key) {
		host->cfg_error(cfg, s->tls_cert ? "tls_key" : "tls_cert",
				"tls_cert and tls_key go together");
		errors++;
	}
	return errors;
}

int http_settings_read(struct http_settings *s, const struct cad_host *host,
		       const struct cad_config *cfg)
{
	memset(s, 0, sizeof(*s));
	int nomem = 0;
	s->url = http_copy(host, cfg, "url", &nomem);
	if (!s->url)
		return -ENOMEM; /* required: the host saw it set */
	snprintf(s->method, sizeof(s->method), "%s", host->cfg_str(cfg, "method"));
	s->timeout_s = host->cfg_int(cfg, "timeout");
	s->max_inflight = host->cfg_int(cfg, "max_inflight");
	s->batch_max = host->cfg_int(cfg, "batch_max");
	s->batch_wait_ms = host->cfg_int(cfg, "batch_wait_ms");
	s->retry_max_s = host->cfg_int(cfg, "retry_max_interval");
	int errors = 0, rc = http_url_check(s, host, cfg);
	if (rc < 0)
		return -ENOMEM;
	errors += rc;
	errors += http_headers_read(s, host, cfg, &nomem);
	errors += http_tls_read(s, host, cfg, &nomem);
	if (nomem)
		return -ENOMEM;
	return errors ? -EINVAL : 0;
}

void http_settings_clear(struct http_settings *s)
{
	free(s->url);
	free(s->shown);
	free(s->endpoint);
	for (unsigned i = 0; s->headers && i < s->n_headers; i++)
		free(s->headers[i]);
	free(s->headers);
	free(s->tls_ca);
	free(s->tls_cert);
	free(s->tls_key);
	memset(s, 0, sizeof(*s));
}

/* RFC 3986's unreserved characters stay; every other byte is %XX. */
static size_t http_escape(char *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~') {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 0xf];
		}
	}
	return o;
}

char *http_url_for(const char *url, const char *sender, size_t sender_len)
{
	size_t n = 0;
	for (const char *p = strstr(url, "%s"); p; p = strstr(p + 2, "%s"))
		n++;
	char *out = malloc(strlen(url) + n * 3 * sender_len + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (const char *p = url; *p;) {
		if (p[0] == '%' && p[1] == 's') {
			o += http_escape(out + o, sender, sender_len);
			p += 2;
		} else {
			out[o++] = *p++;
		}
	}
	out[o] = '\0';
	return out;
}
