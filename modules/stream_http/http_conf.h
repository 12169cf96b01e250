/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `http` stream block read into settings: the endpoint's url (with
 * `%s`, the sender, allowed in its path or query only), the method, the
 * operator's headers, the limits and the TLS files. Every error is
 * reported against its option with host->cfg_error().
 */
#ifndef CAD_HTTP_CONF_H
#define CAD_HTTP_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include <choria-adapterd/cad_module.h>

#define HTTP_PROTOCOL "choria:adapters:http:output:1"

/* The block's options, for the module's descriptor. */
extern const struct cad_option http_options[];

struct http_settings {
	char *url;       /* as configured, %s included */
	bool per_sender; /* the url holds %s */
	char *shown;     /* scheme://host[:port]/path, for logs: no query, no user */
	char *endpoint;  /* the connection's name for health: "endpoint host:port" */
	char method[8];  /* POST or PUT */
	char **headers;  /* "Name: value", the operator's */
	unsigned n_headers;
	long timeout_s, max_inflight, batch_max, batch_wait_ms, retry_max_s;
	char *tls_ca, *tls_cert, *tls_key;
};

/* Read the block into s, reporting every error. Returns 0, -EINVAL after
 * errors were reported, or -ENOMEM. s is to be cleared either way. */
int http_settings_read(struct http_settings *s, const struct cad_host *host,
		       const struct cad_config *cfg);
void http_settings_clear(struct http_settings *s);

/* url with each %s replaced by the sender, percent-encoded; malloc'd. */
char *http_url_for(const char *url, const char *sender, size_t sender_len);

#endif
