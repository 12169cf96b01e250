/* SPDX-License-Identifier: Apache-2.0 */
#include "http_request.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes kept as they are in a key: printable ASCII but for space and '%'. */
static size_t http_key_part(char *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c > 0x20 && c < 0x7f && c != '%') {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 0xf];
		}
	}
	return o;
}

char *http_msg_key(const struct cad_msg *m)
{
	char *k = malloc(3 * (m->request_id_len + m->sender_len) + 2);
	if (!k)
		return NULL;
	size_t o = http_key_part(k, m->request_id, m->request_id_len);
	k[o++] = ':';
	o += http_key_part(k + o, m->sender, m->sender_len);
	k[o] = '\0';
	return k;
}

/* A batch's key: "batch-" and the SHA-256 of its members' keys, one a
 * line, in order: the same members make the same key. */
static char *http_batch_key(struct cad_msg **msgs, size_t n)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned dlen = 0;
	bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
	for (size_t i = 0; ok && i < n; i++) {
		char *k = http_msg_key(msgs[i]);
		ok = k && EVP_DigestUpdate(md, k, strlen(k)) == 1 &&
		     EVP_DigestUpdate(md, "\n", 1) == 1;
		free(k);
	}
	ok = ok && EVP_DigestFinal_ex(md, digest, &dlen) == 1;
	EVP_MD_CTX_free(md);
	char *out = ok ? malloc(6 + 2 * dlen + 1) : NULL;
	if (!out)
		return NULL;
	memcpy(out, "batch-", 6);
	for (unsigned i = 0; i < dlen; i++)
		snprintf(out + 6 + 2 * i, 3, "%02x", digest[i]);
	return out;
}

static size_t http_req_on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct http_req *r = arg;
	size_t n = size * nmemb;
	for (size_t i = 0; i < n && !r->line_done; i++) {
		if (data[i] == '\n' || data[i] == '\r' || r->line_len == sizeof(r->line) - 1)
			r->line_done = true;
		else
			r->line[r->line_len++] = data[i];
	}
	return n;
}

/* The operator's headers, then the module's. */
static struct curl_slist *http_req_headers(const struct http_settings *set, const char *key)
{
	struct curl_slist *l = NULL, *t;
	char *idem = NULL;
	if (asprintf(&idem, "Idempotency-Key: %s", key) < 0)
		return NULL;
	const char *own[] = {set->batch_max > 1 ? "Content-Type: application/x-ndjson"
						: "Content-Type: application/json",
			     idem, "Expect:"};
	for (unsigned i = 0; i < set->n_headers + 3; i++) {
		const char *h = i < set->n_headers ? set->headers[i] : own[i - set->n_headers];
		if (!(t = curl_slist_append(l, h))) {
			curl_slist_free_all(l);
			free(idem);
			return NULL;
		}
		l = t;
	}
	free(idem);
	return l;
}

static bool http_req_setup(struct http_req *r, const struct http_settings *set,
			   const char *user_agent)
{
	CURL *e = r->easy;
	bool ok = curl_easy_setopt(e, CURLOPT_URL, r->url) == CURLE_OK;
	ok = ok && curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, set->timeout_s);
	curl_easy_setopt(e, CURLOPT_USERAGENT, user_agent);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
	if (strcmp(set->method, "POST") != 0)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, set->method);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_req_on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->err);
	/* HTTP/2 where a TLS server offers it, HTTP/1.1 otherwise. */
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	if (set->tls_ca)
		ok = ok && curl_easy_setopt(e, CURLOPT_CAINFO, set->tls_ca) == CURLE_OK;
	if (set->tls_cert)
		ok = ok && curl_easy_setopt(e, CURLOPT_SSLCERT, set->tls_cert) == CURLE_OK &&
		     curl_easy_setopt(e, CURLOPT_SSLKEY, set->tls_key) == CURLE_OK;
	return ok;
}

struct http_req *http_req_new(const struct http_settings *set, const char *user_agent,
			      struct cad_msg **msgs, size_t n, char *body, size_t body_len)
{
	struct http_req *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->key = set->batch_max > 1 ? http_batch_key(msgs, n) : http_msg_key(msgs[0]);
	r->url = set->per_sender ? http_url_for(set->url, msgs[0]->sender, msgs[0]->sender_len)
				 : strdup(set->url);
	r->hdrs = r->key ? http_req_headers(set, r->key) : NULL;
	r->easy = curl_easy_init();
	if (!r->key || !r->url || !r->hdrs || !r->easy) {
		http_req_free(r);
		return NULL;
	}
	r->msgs = msgs;
	r->n = n;
	r->body = body;
	r->body_len = body_len;
	if (!http_req_setup(r, set, user_agent)) {
		r->msgs = NULL;
		r->body = NULL;
		http_req_free(r);
		return NULL;
	}
	return r;
}

void http_req_rearm(struct http_req *r)
{
	r->line_len = 0;
	r->line_done = false;
	r->line[0] = '\0';
	r->err[0] = '\0';
}

void http_req_free(struct http_req *r)
{
	if (!r)
		return;
	if (r->easy)
		curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->hdrs);
	free(r->url);
	free(r->key);
	free(r->body);
	free(r->msgs);
	free(r);
}
