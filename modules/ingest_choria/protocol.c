/* SPDX-License-Identifier: Apache-2.0 */
/*
 * protocol.c - the Choria protocol v1 decoder: parses the three nested
 * layers with jansson, decodes the transport's base64 with OpenSSL, and
 * enforces what the published v1 schemas require, layer by layer, reporting
 * the first violation with a stable label and a precise detail.
 */
#include "protocol.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#define CHORIA_V1_TRANSPORT "choria:transport:1"
#define CHORIA_V1_SECURE_REQUEST "choria:secure:request:1"
#define CHORIA_V1_SECURE_REPLY "choria:secure:reply:1"
#define CHORIA_V1_REQUEST "choria:request:1"
#define CHORIA_V1_REPLY "choria:reply:1"

#define CHORIA_REQUEST_ID_CHARS 32
#define CHORIA_MIN_TTL 30

/* Reason labels. */
#define R_NOT_JSON "not_json"
#define R_TRANSPORT "bad_transport"
#define R_BASE64 "bad_base64"
#define R_SECURE "bad_secure"
#define R_MESSAGE "bad_message"

/* Flags for choria_member_str(). */
#define CHORIA_OPTIONAL 0x1u /* absent is fine: returns 1 */
#define CHORIA_NONEMPTY 0x2u /* minLength 1 */
#define CHORIA_NO_NUL 0x4u   /* becomes a C string downstream */

/* Where a failure is reported. */
struct choria_err {
	const char **reason;
	char *detail;
	size_t detail_len;
};

/* In the standard base64 alphabet (RFC 4648 table 1)? */
static bool choria_b64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

static size_t choria_escape_byte(unsigned char c, char tmp[5])
{
	if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
		tmp[0] = (char)c;
		tmp[1] = '\0';
		return 1;
	}
	snprintf(tmp, 5, "\\x%02x", c);
	return 4;
}

char *choria_printable(char *buf, size_t len, const char *s, size_t n)
{
	char tmp[5];
	size_t need = 0, o = 0, cap;

	if (!buf || len == 0)
		return buf;
	cap = len - 1;
	for (size_t i = 0; i < n; i++)
		need += choria_escape_byte((unsigned char)s[i], tmp);
	if (need > cap && cap >= 3)
		cap -= 3; /* leave room for "..." */
	for (size_t i = 0; i < n; i++) {
		size_t tn = choria_escape_byte((unsigned char)s[i], tmp);
		if (o + tn > cap)
			break;
		memcpy(buf + o, tmp, tn);
		o += tn;
	}
	if (need > len - 1 && len - 1 - o >= 3) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

const char *choria_kind_name(enum choria_kind kind)
{
	return kind == CHORIA_REPLY ? "reply" : "request";
}

/* Record a failure: the label, and the detail made printable ASCII (jansson
 * error texts may quote raw input). Returns err. */
static int choria_fail(struct choria_err *e, int err, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int choria_fail(struct choria_err *e, int err, const char *reason, const char *fmt, ...)
{
	if (e->reason)
		*e->reason = reason;
	if (e->detail && e->detail_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->detail, e->detail_len, fmt, ap);
		va_end(ap);
		for (char *p = e->detail; *p; p++)
			if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
				*p = '?';
	}
	return err;
}

static const char *choria_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a non-integer number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "an unknown JSON type";
}

/* Characters (code points) in a UTF-8 string jansson has validated. */
static size_t choria_utf8_chars(const char *s, size_t n)
{
	size_t chars = 0;
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			chars++;
	return chars;
}

/* Parse one layer, which must be a JSON object. */
static int choria_parse(json_t **out, const char *data, size_t len, const char *layer,
			struct choria_err *e)
{
	json_error_t jerr;
	json_t *root;

	*out = NULL;
	if (len == 0 || !data)
		return choria_fail(e, -EBADMSG, R_NOT_JSON, "%s is empty", layer);
	root = json_loadb(data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		if (json_error_code(&jerr) == json_error_out_of_memory)
			return choria_fail(e, -ENOMEM, "no_memory", "%s: out of memory", layer);
		return choria_fail(e, -EBADMSG, R_NOT_JSON, "%s is not valid JSON: %s (byte %d)",
				   layer, jerr.text, jerr.position);
	}
	if (!json_is_object(root)) {
		int r = choria_fail(e, -EBADMSG, R_NOT_JSON, "%s is %s, not a JSON object", layer,
				    choria_type_name(root));
		json_decref(root);
		return r;
	}
	*out = root;
	return 0;
}

/* obj[key] as a string. Returns 0, 1 when absent and CHORIA_OPTIONAL, or
 * a negative errno. */
static int choria_member_str(const json_t *obj, const char *key, const char *path, unsigned flags,
			     const char *reason, struct choria_err *e, const char **s, size_t *n)
{
	const json_t *v = json_object_get(obj, key);
	const char *str;
	size_t len;

	if (!v) {
		if (flags & CHORIA_OPTIONAL)
			return 1;
		return choria_fail(e, -EBADMSG, reason, "%s is missing", path);
	}
	if (!json_is_string(v))
		return choria_fail(e, -EBADMSG, reason, "%s must be a string, got %s", path,
				   choria_type_name(v));
	str = json_string_value(v);
	len = json_string_length(v);
	if ((flags & CHORIA_NONEMPTY) && len == 0)
		return choria_fail(e, -EBADMSG, reason, "%s must not be empty", path);
	if ((flags & CHORIA_NO_NUL) && memchr(str, '\0', len))
		return choria_fail(e, -EBADMSG, reason, "%s must not contain a NUL character",
				   path);
	if (s)
		*s = str;
	if (n)
		*n = len;
	return 0;
}

/* obj[key] as an integer. */
static int choria_member_int(const json_t *obj, const char *key, const char *path,
			     const char *reason, struct choria_err *e, json_int_t *out)
{
	const json_t *v = json_object_get(obj, key);

	if (!v)
		return choria_fail(e, -EBADMSG, reason, "%s is missing", path);
	if (!json_is_integer(v))
		return choria_fail(e, -EBADMSG, reason, "%s must be an integer, got %s", path,
				   choria_type_name(v));
	*out = json_integer_value(v);
	return 0;
}

/* obj[key] as an object or an array (`type`). Returns 0, 1 when absent and
 * optional, or a negative errno. */
static int choria_member_of_type(const json_t *obj, const char *key, const char *path,
				 json_type type, bool optional, const char *reason,
				 struct choria_err *e, const json_t **out)
{
	const json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (!v) {
		if (optional)
			return 1;
		return choria_fail(e, -EBADMSG, reason, "%s is missing", path);
	}
	if (json_typeof(v) != type)
		return choria_fail(e, -EBADMSG, reason, "%s must be %s, got %s", path,
				   type == JSON_OBJECT ? "an object" : "an array",
				   choria_type_name(v));
	*out = v;
	return 0;
}

/* The `protocol` member, which must equal `expected`. `other` is the value
 * the opposite kind carries: seeing it gets a hint in the detail. */
static int choria_member_protocol(const json_t *obj, const char *path, const char *expected,
				  const char *other, const char *hint, const char *reason,
				  struct choria_err *e)
{
	const char *s;
	size_t n;
	char q[72];
	int r = choria_member_str(obj, "protocol", path, 0, reason, e, &s, &n);

	if (r)
		return r;
	if (n == strlen(expected) && memcmp(s, expected, n) == 0)
		return 0;
	if (other && n == strlen(other) && memcmp(s, other, n) == 0)
		return choria_fail(e, -EBADMSG, reason, "%s is \"%s\", expected \"%s\" (%s)", path,
				   other, expected, hint);
	return choria_fail(e, -EBADMSG, reason, "%s is \"%s\", expected \"%s\"", path,
			   choria_printable(q, sizeof(q), s, n), expected);
}

/* A string of exactly `chars` characters. */
static int choria_check_chars(const char *s, size_t n, size_t chars, const char *path,
			      const char *reason, struct choria_err *e)
{
	size_t got = choria_utf8_chars(s, n);

	if (got != chars)
		return choria_fail(e, -EBADMSG, reason, "%s must be %zu characters, got %zu", path,
				   chars, got);
	return 0;
}

/*
 * Standard base64 with padding, strictly: length a multiple of 4, only the
 * alphabet, at most two '=' and only at the end. The characters are checked
 * here; OpenSSL does the decoding. EVP_DecodeBlock() counts padding as
 * zero bytes, so the padding is taken off its result.
 */
static int choria_base64(const char *s, size_t n, unsigned char **out, size_t *out_len,
			 struct choria_err *e)
{
	size_t pad = 0, cap;
	unsigned char *buf;
	int got;

	*out = NULL;
	*out_len = 0;
	if (n % 4)
		return choria_fail(e, -EBADMSG, R_BASE64,
				   "transport.data is not valid base64: length %zu is not a multiple of 4",
				   n);
	if (n > INT_MAX)
		return choria_fail(e, -EBADMSG, R_BASE64, "transport.data is too long (%zu bytes)",
				   n);
	if (n == 0)
		return 0;
	if (s[n - 1] == '=')
		pad++;
	if (s[n - 2] == '=')
		pad++;
	for (size_t i = 0; i < n - pad; i++) {
		if (!choria_b64_char(s[i])) {
			char q[8];
			return choria_fail(e, -EBADMSG, R_BASE64,
					   "transport.data is not valid base64: unexpected \"%s\" at offset %zu",
					   choria_printable(q, sizeof(q), s + i, 1), i);
		}
	}
	cap = n / 4 * 3;
	buf = malloc(cap);
	if (!buf)
		return choria_fail(e, -ENOMEM, "no_memory", "transport.data: out of memory");
	got = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)n);
	if (got < 0 || (size_t)got != cap) {
		free(buf);
		return choria_fail(e, -EBADMSG, R_BASE64,
				   "transport.data is not valid base64: OpenSSL could not decode it");
	}
	*out = buf;
	*out_len = cap - pad;
	return 0;
}

/* Optional header members, typed as transport.json says. */
static int choria_v1_headers(const json_t *h, struct choria_err *e)
{
	const json_t *seen, *fed, *targets, *v;
	const char *req;
	size_t n, i;
	int r;

	r = choria_member_str(h, "reply-to", "transport.headers.reply-to",
			      CHORIA_OPTIONAL | CHORIA_NONEMPTY, R_TRANSPORT, e, NULL, NULL);
	if (r < 0)
		return r;
	r = choria_member_str(h, "mc_sender", "transport.headers.mc_sender",
			      CHORIA_OPTIONAL | CHORIA_NONEMPTY, R_TRANSPORT, e, NULL, NULL);
	if (r < 0)
		return r;

	r = choria_member_of_type(h, "seen-by", "transport.headers.seen-by", JSON_ARRAY, true,
				  R_TRANSPORT, e, &seen);
	if (r < 0)
		return r;
	json_array_foreach(seen, i, v) {
		if (!json_is_array(v))
			return choria_fail(e, -EBADMSG, R_TRANSPORT,
					   "transport.headers.seen-by[%zu] must be an array, got %s", i,
					   choria_type_name(v));
		/* from, via, to */
		for (size_t j = 0; j < 3 && j < json_array_size(v); j++) {
			const json_t *hop = json_array_get(v, j);
			if (!json_is_string(hop))
				return choria_fail(
					e, -EBADMSG, R_TRANSPORT,
					"transport.headers.seen-by[%zu][%zu] must be a string, got %s",
					i, j, choria_type_name(hop));
		}
	}

	r = choria_member_of_type(h, "federation", "transport.headers.federation", JSON_OBJECT,
				  true, R_TRANSPORT, e, &fed);
	if (r < 0)
		return r;
	if (!fed)
		return 0;
	r = choria_member_str(fed, "req", "transport.headers.federation.req", 0, R_TRANSPORT, e,
			      &req, &n);
	if (r)
		return r;
	r = choria_check_chars(req, n, CHORIA_REQUEST_ID_CHARS, "transport.headers.federation.req",
			       R_TRANSPORT, e);
	if (r)
		return r;
	r = choria_member_str(fed, "reply-to", "transport.headers.federation.reply-to",
			      CHORIA_OPTIONAL | CHORIA_NONEMPTY, R_TRANSPORT, e, NULL, NULL);
	if (r < 0)
		return r;
	r = choria_member_of_type(fed, "targets", "transport.headers.federation.targets",
				  JSON_ARRAY, true, R_TRANSPORT, e, &targets);
	if (r < 0)
		return r;
	json_array_foreach(targets, i, v) {
		if (!json_is_string(v))
			return choria_fail(
				e, -EBADMSG, R_TRANSPORT,
				"transport.headers.federation.targets[%zu] must be a string, got %s",
				i, choria_type_name(v));
	}
	return 0;
}

/* The transport layer; hands back the decoded `data`. */
static int choria_v1_transport(const json_t *t, unsigned char **raw, size_t *raw_len,
			       struct choria_err *e)
{
	const json_t *headers;
	const char *data;
	size_t n;
	int r;

	r = choria_member_protocol(t, "transport.protocol", CHORIA_V1_TRANSPORT, NULL, NULL,
				   R_TRANSPORT, e);
	if (r)
		return r;
	r = choria_member_str(t, "data", "transport.data", 0, R_TRANSPORT, e, &data, &n);
	if (r)
		return r;
	r = choria_member_of_type(t, "headers", "transport.headers", JSON_OBJECT, false,
				  R_TRANSPORT, e, &headers);
	if (r)
		return r;
	r = choria_v1_headers(headers, e);
	if (r)
		return r;
	return choria_base64(data, n, raw, raw_len, e);
}

static int choria_v1_secure_request(struct choria_decoded *d, struct choria_err *e)
{
	const json_t *s = d->priv_secure;
	int r;

	r = choria_member_protocol(s, "secure.protocol", CHORIA_V1_SECURE_REQUEST,
				   CHORIA_V1_SECURE_REPLY,
				   "a secure reply where requests are expected", R_SECURE, e);
	if (r)
		return r;
	r = choria_member_str(s, "message", "secure.message", CHORIA_NONEMPTY, R_SECURE, e,
			      &d->secure_message, &d->secure_message_len);
	if (r)
		return r;
	r = choria_member_str(s, "signature", "secure.signature", CHORIA_NONEMPTY, R_SECURE, e,
			      &d->signature, &d->signature_len);
	if (r)
		return r;
	return choria_member_str(s, "pubcert", "secure.pubcert", CHORIA_NONEMPTY, R_SECURE, e,
				 &d->pubcert, &d->pubcert_len);
}

static int choria_v1_secure_reply(struct choria_decoded *d, struct choria_err *e)
{
	const json_t *s = d->priv_secure;
	int r;

	r = choria_member_protocol(s, "secure.protocol", CHORIA_V1_SECURE_REPLY,
				   CHORIA_V1_SECURE_REQUEST,
				   "a secure request where replies are expected", R_SECURE, e);
	if (r)
		return r;
	r = choria_member_str(s, "message", "secure.message", CHORIA_NONEMPTY, R_SECURE, e,
			      &d->secure_message, &d->secure_message_len);
	if (r)
		return r;
	return choria_member_str(s, "hash", "secure.hash", CHORIA_NONEMPTY, R_SECURE, e, &d->hash,
				 &d->hash_len);
}

static const char *const choria_fact_operators[] = {">=", "<=", "<", ">", "!=", "==", "=~", NULL};

/* envelope.filter.fact: objects {fact, operator, value}. */
static int choria_v1_filter_facts(const json_t *facts, struct choria_err *e)
{
	const json_t *f;
	size_t i;

	json_array_foreach(facts, i, f) {
		char path[96];
		const char *op;
		size_t n;
		bool known = false;
		int r;

		if (!json_is_object(f))
			return choria_fail(e, -EBADMSG, R_MESSAGE,
					   "envelope.filter.fact[%zu] must be an object, got %s", i,
					   choria_type_name(f));
		snprintf(path, sizeof(path), "envelope.filter.fact[%zu].fact", i);
		r = choria_member_str(f, "fact", path, CHORIA_NONEMPTY, R_MESSAGE, e, NULL, NULL);
		if (r)
			return r;
		snprintf(path, sizeof(path), "envelope.filter.fact[%zu].operator", i);
		r = choria_member_str(f, "operator", path, 0, R_MESSAGE, e, &op, &n);
		if (r)
			return r;
		for (const char *const *o = choria_fact_operators; *o; o++)
			if (strlen(*o) == n && memcmp(*o, op, n) == 0)
				known = true;
		if (!known) {
			char q[40];
			return choria_fail(e, -EBADMSG, R_MESSAGE, "%s \"%s\" is not a known operator",
					   path, choria_printable(q, sizeof(q), op, n));
		}
		snprintf(path, sizeof(path), "envelope.filter.fact[%zu].value", i);
		r = choria_member_str(f, "value", path, CHORIA_NONEMPTY, R_MESSAGE, e, NULL, NULL);
		if (r)
			return r;
	}
	return 0;
}

/* envelope.filter.<key>: an array of strings. */
static int choria_v1_filter_strings(const json_t *filter, const char *key, bool optional,
				    struct choria_err *e)
{
	const json_t *arr, *v;
	char path[64];
	size_t i;
	int r;

	snprintf(path, sizeof(path), "envelope.filter.%s", key);
	r = choria_member_of_type(filter, key, path, JSON_ARRAY, optional, R_MESSAGE, e, &arr);
	if (r < 0)
		return r;
	json_array_foreach(arr, i, v) {
		if (!json_is_string(v))
			return choria_fail(e, -EBADMSG, R_MESSAGE, "%s[%zu] must be a string, got %s",
					   path, i, choria_type_name(v));
	}
	return 0;
}

/* envelope.filter, as request.json describes it. */
static int choria_v1_filter(const json_t *env, struct choria_err *e)
{
	const json_t *filter, *facts, *compound, *c, *v;
	size_t i, j;
	int r;

	r = choria_member_of_type(env, "filter", "envelope.filter", JSON_OBJECT, false, R_MESSAGE,
				  e, &filter);
	if (r)
		return r;
	r = choria_member_of_type(filter, "fact", "envelope.filter.fact", JSON_ARRAY, false,
				  R_MESSAGE, e, &facts);
	if (r)
		return r;
	r = choria_v1_filter_facts(facts, e);
	if (r)
		return r;
	r = choria_v1_filter_strings(filter, "cf_class", false, e);
	if (r)
		return r;
	r = choria_v1_filter_strings(filter, "identity", false, e);
	if (r)
		return r;
	r = choria_v1_filter_strings(filter, "agent", true, e);
	if (r)
		return r;
	r = choria_member_of_type(filter, "compound", "envelope.filter.compound", JSON_ARRAY, false,
				  R_MESSAGE, e, &compound);
	if (r)
		return r;
	json_array_foreach(compound, i, c) {
		if (!json_is_array(c))
			return choria_fail(e, -EBADMSG, R_MESSAGE,
					   "envelope.filter.compound[%zu] must be an array, got %s", i,
					   choria_type_name(c));
		json_array_foreach(c, j, v) {
			if (!json_is_object(v))
				return choria_fail(
					e, -EBADMSG, R_MESSAGE,
					"envelope.filter.compound[%zu][%zu] must be an object, got %s",
					i, j, choria_type_name(v));
		}
	}
	return 0;
}

/* envelope.requestid and envelope.senderid, common to both kinds. */
static int choria_v1_ids(const json_t *env, struct choria_decoded *d, struct choria_err *e)
{
	int r;

	r = choria_member_str(env, "requestid", "envelope.requestid", CHORIA_NO_NUL, R_MESSAGE, e,
			      &d->request_id, &d->request_id_len);
	if (r)
		return r;
	r = choria_check_chars(d->request_id, d->request_id_len, CHORIA_REQUEST_ID_CHARS,
			       "envelope.requestid", R_MESSAGE, e);
	if (r)
		return r;
	return choria_member_str(env, "senderid", "envelope.senderid",
				 CHORIA_NONEMPTY | CHORIA_NO_NUL, R_MESSAGE, e, &d->sender,
				 &d->sender_len);
}

static int choria_v1_time(const json_t *env, struct choria_decoded *d, struct choria_err *e)
{
	json_int_t t;
	int r = choria_member_int(env, "time", "envelope.time", R_MESSAGE, e, &t);

	if (r)
		return r;
	d->time = (int64_t)t;
	return 0;
}

static int choria_v1_request(struct choria_decoded *d, struct choria_err *e)
{
	const json_t *m = d->priv_message, *env;
	json_int_t ttl;
	int r;

	r = choria_member_protocol(m, "request.protocol", CHORIA_V1_REQUEST, CHORIA_V1_REPLY,
				   "a reply where requests are expected", R_MESSAGE, e);
	if (r)
		return r;
	r = choria_member_str(m, "message", "request.message", CHORIA_NONEMPTY, R_MESSAGE, e,
			      &d->body, &d->body_len);
	if (r)
		return r;
	r = choria_member_of_type(m, "envelope", "request.envelope", JSON_OBJECT, false,
				  R_MESSAGE, e, &env);
	if (r)
		return r;
	r = choria_v1_ids(env, d, e);
	if (r)
		return r;
	r = choria_member_str(env, "callerid", "envelope.callerid",
			      CHORIA_NONEMPTY | CHORIA_NO_NUL, R_MESSAGE, e, &d->callerid,
			      &d->callerid_len);
	if (r)
		return r;
	r = choria_member_str(env, "collective", "envelope.collective", CHORIA_NONEMPTY,
			      R_MESSAGE, e, NULL, NULL);
	if (r)
		return r;
	r = choria_member_str(env, "agent", "envelope.agent", CHORIA_NONEMPTY, R_MESSAGE, e, NULL,
			      NULL);
	if (r)
		return r;
	r = choria_member_int(env, "ttl", "envelope.ttl", R_MESSAGE, e, &ttl);
	if (r)
		return r;
	if (ttl < CHORIA_MIN_TTL)
		return choria_fail(e, -EBADMSG, R_MESSAGE, "envelope.ttl must be at least %d, got %lld",
				   CHORIA_MIN_TTL, (long long)ttl);
	r = choria_v1_time(env, d, e);
	if (r)
		return r;
	return choria_v1_filter(env, e);
}

static int choria_v1_reply(struct choria_decoded *d, struct choria_err *e)
{
	const json_t *m = d->priv_message, *env;
	int r;

	r = choria_member_protocol(m, "reply.protocol", CHORIA_V1_REPLY, CHORIA_V1_REQUEST,
				   "a request where replies are expected", R_MESSAGE, e);
	if (r)
		return r;
	r = choria_member_str(m, "message", "reply.message", CHORIA_NONEMPTY, R_MESSAGE, e,
			      &d->body, &d->body_len);
	if (r)
		return r;
	r = choria_member_of_type(m, "envelope", "reply.envelope", JSON_OBJECT, false, R_MESSAGE,
				  e, &env);
	if (r)
		return r;
	r = choria_v1_ids(env, d, e);
	if (r)
		return r;
	r = choria_member_str(env, "agent", "envelope.agent", CHORIA_NONEMPTY, R_MESSAGE, e, NULL,
			      NULL);
	if (r)
		return r;
	return choria_v1_time(env, d, e);
}

/* Protocol v1: transport > secure request/reply > request/reply. */
static int choria_v1_decode(struct choria_decoded *d, enum choria_kind kind, const char *data,
			    size_t len, struct choria_err *e)
{
	bool request = kind == CHORIA_REQUEST;
	json_t *transport = NULL;
	unsigned char *raw = NULL;
	size_t raw_len = 0;
	int r;

	d->version = 1;
	d->kind = kind;
	r = choria_parse(&transport, data, len, "transport", e);
	if (r)
		goto out;
	r = choria_v1_transport(transport, &raw, &raw_len, e);
	if (r)
		goto out;
	r = choria_parse(&d->priv_secure, (const char *)raw, raw_len,
			 request ? "secure request (transport.data)" : "secure reply (transport.data)",
			 e);
	if (r)
		goto out;
	r = request ? choria_v1_secure_request(d, e) : choria_v1_secure_reply(d, e);
	if (r)
		goto out;
	r = choria_parse(&d->priv_message, d->secure_message, d->secure_message_len,
			 request ? "request (secure.message)" : "reply (secure.message)", e);
	if (r)
		goto out;
	r = request ? choria_v1_request(d, e) : choria_v1_reply(d, e);
out:
	json_decref(transport);
	free(raw);
	return r;
}

int choria_decode(struct choria_decoded *out, enum choria_kind kind, const char *data, size_t len,
		  const char **reason, char *detail, size_t detail_len)
{
	struct choria_err e = {.reason = reason, .detail = detail, .detail_len = detail_len};
	int r;

	memset(out, 0, sizeof(*out));
	if (reason)
		*reason = NULL;
	if (detail && detail_len)
		detail[0] = '\0';
	if (kind != CHORIA_REQUEST && kind != CHORIA_REPLY)
		return choria_fail(&e, -EINVAL, "bad_argument", "unknown message kind %d",
				   (int)kind);
	r = choria_v1_decode(out, kind, data, len, &e);
	if (r)
		choria_decoded_clear(out);
	return r;
}

void choria_decoded_clear(struct choria_decoded *d)
{
	if (!d)
		return;
	json_decref(d->priv_secure);
	json_decref(d->priv_message);
	memset(d, 0, sizeof(*d));
}
