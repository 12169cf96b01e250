/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One request of the http module: the messages it carries (one, or a
 * batch), its body, its Idempotency-Key, and the libcurl handle that
 * sends it, again with the same members and key when it is retried.
 */
#ifndef CAD_HTTP_REQUEST_H
#define CAD_HTTP_REQUEST_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <choria-adapterd/cad_module.h>

#include "http_conf.h"

#define HTTP_LINE_MAX 256

struct http_req {
	struct cad_msg **msgs;
	size_t n;
	char *body;
	size_t body_len;
	char *key; /* the Idempotency-Key */
	char *url;
	struct curl_slist *hdrs;
	CURL *easy;
	bool active;         /* handed to the multi handle */
	int64_t retry_at_ns; /* not active: 0 to start now, else when */
	uint32_t attempts;
	/* The last answer's first body line, and libcurl's complaint. */
	char line[HTTP_LINE_MAX];
	size_t line_len;
	bool line_done;
	char err[CURL_ERROR_SIZE];
};

/* A request carrying msgs[0..n) (taken over) with `body` (taken over),
 * its key, url and headers made and its easy handle set up; NULL when out
 * of memory (msgs and body then stay the caller's). */
struct http_req *http_req_new(const struct http_settings *set, const char *user_agent,
			      struct cad_msg **msgs, size_t n, char *body, size_t body_len);
/* Free the request and its handle (out of any multi handle), not its
 * messages. */
void http_req_free(struct http_req *r);
/* Forget the last answer before the request goes again. */
void http_req_rearm(struct http_req *r);

/* The Idempotency-Key of one message, "<requestid>:<sender>", each
 * byte that may not stand in a header value as %XX; malloc'd. */
char *http_msg_key(const struct cad_msg *m);

#endif
