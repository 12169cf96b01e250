/* SPDX-License-Identifier: Apache-2.0 */
/*
 * protocol.c - the Choria protocol decoder: reads the transport, hands a
 * v2 one to protocol_v2.c, and decodes v1 itself: parses the three nested
 * layers with json_dom (simdjson, as strict as jansson was), decodes the
 * transport's base64 with OpenSSL, and enforces what the published v1
 * schemas require, layer by layer, reporting the first violation with a
 * stable label and a precise detail. The checks both versions use are
 * declared in protocol_parts.h.
 *
 * Memory: one message's documents live in a scratch leased from the
 * calling thread (json_dom.h) and held by the result until
 * choria_decoded_clear(), so decoding allocates nothing in the steady
 * state. Strings point into the scratch's parsers: the transport parser is
 * reused for the request/reply layer once the transport's data is decoded.
 */
#include "protocol.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include <choria-adapterd/cad_text.h>

#include "base64.h"
#include "json_dom.h"
#include "protocol_parts.h"

#define CHORIA_REQUEST_ID_CHARS 32
#define CHORIA_MIN_TTL 30

const char *choria_kind_name(enum choria_kind kind)
{
	return kind == CHORIA_REPLY ? "reply" : "request";
}

int choria_fail(struct choria_err *e, int err, const char *reason, const char *fmt, ...)
{
	if (e->reason)
		*e->reason = reason;
	if (e->detail && e->detail_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->detail, e->detail_len, fmt, ap);
		va_end(ap);
		cad_text_scrub(e->detail);
	}
	return err;
}

const char *choria_type_name(const struct jdom_value *v)
{
	switch (jdom_type(v)) {
	case JDOM_OBJECT:
		return "an object";
	case JDOM_ARRAY:
		return "an array";
	case JDOM_STRING:
		return "a string";
	case JDOM_INTEGER:
		return "an integer";
	case JDOM_REAL:
		return "a non-integer number";
	case JDOM_BOOL:
		return "a boolean";
	case JDOM_NULL:
		return "null";
	}
	return "an unknown JSON type";
}

/* Characters (code points) in a UTF-8 string the parser has validated. */
static size_t choria_utf8_chars(const char *s, size_t n)
{
	size_t chars = 0;
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			chars++;
	return chars;
}

/* Parse one layer, which must be a JSON object, with parser `p`. `padded`:
 * JDOM_PADDING readable bytes follow the data. */
int choria_parse(struct jdom_value *out, struct jdom_parser *p, const char *data, size_t len,
		 bool padded, const char *layer, const char *bad, struct choria_err *e)
{
	const char *why;
	int r;

	if (len == 0 || !data)
		return choria_fail(e, -EBADMSG, R_NOT_JSON, "%s is empty", layer);
	r = jdom_parse(p, data, len, padded, out, &why);
	if (r == -ENOMEM)
		return choria_fail(e, -ENOMEM, "no_memory", "%s: out of memory", layer);
	if (r == -ERANGE)
		return choria_fail(e, -EBADMSG, bad,
				   "%s holds an integer beyond 64-bit signed range", layer);
	if (r)
		return choria_fail(e, -EBADMSG, R_NOT_JSON, "%s is not valid JSON: %s", layer, why);
	if (jdom_type(out) != JDOM_OBJECT)
		return choria_fail(e, -EBADMSG, R_NOT_JSON, "%s is %s, not a JSON object", layer,
				   choria_type_name(out));
	return 0;
}

/* obj[key] as a string. Returns 0, 1 when absent and CHORIA_OPTIONAL, or
 * a negative errno. */
int choria_member_str(const struct jdom_value *obj, const char *key, const char *path,
		      unsigned flags, const char *reason, struct choria_err *e, const char **s,
		      size_t *n)
{
	struct jdom_value v;
	const char *str;
	size_t len;

	if (!jdom_member(obj, key, &v)) {
		if (flags & CHORIA_OPTIONAL)
			return 1;
		return choria_fail(e, -EBADMSG, reason, "%s is missing", path);
	}
	if (jdom_type(&v) != JDOM_STRING)
		return choria_fail(e, -EBADMSG, reason, "%s must be a string, got %s", path,
				   choria_type_name(&v));
	jdom_string(&v, &str, &len);
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
int choria_member_int(const struct jdom_value *obj, const char *key, const char *path,
		      const char *reason, struct choria_err *e, int64_t *out)
{
	struct jdom_value v;

	if (!jdom_member(obj, key, &v))
		return choria_fail(e, -EBADMSG, reason, "%s is missing", path);
	if (jdom_type(&v) != JDOM_INTEGER)
		return choria_fail(e, -EBADMSG, reason, "%s must be an integer, got %s", path,
				   choria_type_name(&v));
	*out = jdom_integer(&v);
	return 0;
}

/* obj[key] as an object or an array (`type`). Returns 0, 1 when absent and
 * optional (*out is then an empty placeholder), or a negative errno. */
int choria_member_of_type(const struct jdom_value *obj, const char *key, const char *path,
			  enum jdom_type type, bool optional, const char *reason,
			  struct choria_err *e, struct jdom_value *out)
{
	memset(out, 0, sizeof(*out));
	if (!jdom_member(obj, key, out)) {
		if (optional)
			return 1;
		return choria_fail(e, -EBADMSG, reason, "%s is missing", path);
	}
	if (jdom_type(out) != type)
		return choria_fail(e, -EBADMSG, reason, "%s must be %s, got %s", path,
				   type == JDOM_OBJECT ? "an object" : "an array",
				   choria_type_name(out));
	return 0;
}

/* The `protocol` member, which must equal `expected`. `other` is the value
 * the opposite kind carries: seeing it gets a hint in the detail. */
int choria_member_protocol(const struct jdom_value *obj, const char *path, const char *expected,
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
			   cad_text_printable(q, sizeof(q), s, n), expected);
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

int choria_base64_field(const char *s, size_t n, unsigned char *buf, size_t *out_len,
			const char *path, struct choria_err *e)
{
	size_t bad = 0;
	char q[8];

	switch (choria_base64_decode(s, n, buf, out_len, &bad)) {
	case CHORIA_BASE64_OK:
		return 0;
	case CHORIA_BASE64_LENGTH:
		if (n % 4)
			return choria_fail(
				e, -EBADMSG, R_BASE64,
				"%s is not valid base64: length %zu is not a multiple of 4", path,
				n);
		return choria_fail(e, -EBADMSG, R_BASE64, "%s is too long (%zu bytes)", path, n);
	case CHORIA_BASE64_BYTE:
		return choria_fail(e, -EBADMSG, R_BASE64,
				   "%s is not valid base64: unexpected \"%s\" at offset %zu", path,
				   cad_text_printable(q, sizeof(q), s + bad, 1), bad);
	case CHORIA_BASE64_OPENSSL:
		break;
	}
	return choria_fail(e, -EBADMSG, R_BASE64,
			   "%s is not valid base64: OpenSSL could not decode it", path);
}

/* Every element of the array at `path` a string. */
static int choria_array_strings(const struct jdom_value *arr, const char *path, const char *reason,
				struct choria_err *e)
{
	struct jdom_value v;
	struct jdom_iter it;
	size_t i;
	bool more;

	for (i = 0, more = jdom_array_first(arr, &it, &v); more;
	     i++, more = jdom_array_next(&it, &v)) {
		if (jdom_type(&v) != JDOM_STRING)
			return choria_fail(e, -EBADMSG, reason, "%s[%zu] must be a string, got %s",
					   path, i, choria_type_name(&v));
	}
	return 0;
}

int choria_header_hops(const struct jdom_value *h, const char *key, const char *path,
		       size_t max_hops, struct choria_err *e)
{
	struct jdom_value hops, v, hop;
	struct jdom_iter it, in;
	size_t i, j;
	bool more;
	int r;

	r = choria_member_of_type(h, key, path, JDOM_ARRAY, true, R_TRANSPORT, e, &hops);
	if (r)
		return r < 0 ? r : 0;
	for (i = 0, more = jdom_array_first(&hops, &it, &v); more;
	     i++, more = jdom_array_next(&it, &v)) {
		if (jdom_type(&v) != JDOM_ARRAY)
			return choria_fail(e, -EBADMSG, R_TRANSPORT,
					   "%s[%zu] must be an array, got %s", path, i,
					   choria_type_name(&v));
		j = 0;
		for (bool hm = jdom_array_first(&v, &in, &hop); hm && j < max_hops;
		     j++, hm = jdom_array_next(&in, &hop)) {
			if (jdom_type(&hop) != JDOM_STRING)
				return choria_fail(e, -EBADMSG, R_TRANSPORT,
						   "%s[%zu][%zu] must be a string, got %s", path, i,
						   j, choria_type_name(&hop));
		}
	}
	return 0;
}

int choria_federation_targets(const struct jdom_value *fed, struct choria_err *e)
{
	struct jdom_value targets;
	int r;

	r = choria_member_of_type(fed, "targets", "transport.headers.federation.targets",
				  JDOM_ARRAY, true, R_TRANSPORT, e, &targets);
	if (r)
		return r < 0 ? r : 0;
	return choria_array_strings(&targets, "transport.headers.federation.targets", R_TRANSPORT,
				    e);
}

/* The transport layer; hands back where its `data` is, still base64. */
static int choria_transport(const struct jdom_value *t, const char *expected,
			    choria_headers_fn check_headers, const char **data, size_t *data_len,
			    struct choria_err *e)
{
	struct jdom_value headers;
	int r;

	r = choria_member_protocol(t, "transport.protocol", expected, NULL, NULL, R_TRANSPORT, e);
	if (r)
		return r;
	r = choria_member_str(t, "data", "transport.data", 0, R_TRANSPORT, e, data, data_len);
	if (r)
		return r;
	r = choria_member_of_type(t, "headers", "transport.headers", JDOM_OBJECT, false,
				  R_TRANSPORT, e, &headers);
	if (r)
		return r;
	return check_headers(&headers, e);
}

int choria_transport_secure(struct jdom_value *sec, struct jdom_scratch *s, bool request,
			    const struct jdom_value *transport, const char *expected,
			    choria_headers_fn check_headers, struct choria_err *e)
{
	const char *b64;
	unsigned char *raw;
	size_t b64_len, raw_len;
	int r;

	r = choria_transport(transport, expected, check_headers, &b64, &b64_len, e);
	if (r)
		return r;
	raw = jdom_scratch_buffer(s, b64_len / 4 * 3);
	if (!raw)
		return choria_fail(e, -ENOMEM, "no_memory", "transport.data: out of memory");
	r = choria_base64_field(b64, b64_len, raw, &raw_len, "transport.data", e);
	if (r)
		return r;
	/* The buffer has JDOM_PADDING bytes to spare: parsed where it is. */
	return choria_parse(sec, jdom_scratch_parser(s, CHORIA_PARSER_SECURE), (const char *)raw,
			    raw_len, true,
			    request ? "secure request (transport.data)"
				    : "secure reply (transport.data)",
			    R_SECURE, e);
}

/* Optional header members, typed as transport.json says. */
static int choria_v1_headers(const struct jdom_value *h, struct choria_err *e)
{
	struct jdom_value fed;
	const char *req;
	size_t n;
	int r;

	r = choria_member_str(h, "reply-to", "transport.headers.reply-to",
			      CHORIA_OPTIONAL | CHORIA_NONEMPTY, R_TRANSPORT, e, NULL, NULL);
	if (r < 0)
		return r;
	r = choria_member_str(h, "mc_sender", "transport.headers.mc_sender",
			      CHORIA_OPTIONAL | CHORIA_NONEMPTY, R_TRANSPORT, e, NULL, NULL);
	if (r < 0)
		return r;

	/* from, via, to */
	r = choria_header_hops(h, "seen-by", "transport.headers.seen-by", 3, e);
	if (r)
		return r;

	r = choria_member_of_type(h, "federation", "transport.headers.federation", JDOM_OBJECT,
				  true, R_TRANSPORT, e, &fed);
	if (r)
		return r < 0 ? r : 0;
	r = choria_member_str(&fed, "req", "transport.headers.federation.req", 0, R_TRANSPORT, e,
			      &req, &n);
	if (r)
		return r;
	r = choria_check_chars(req, n, CHORIA_REQUEST_ID_CHARS, "transport.headers.federation.req",
			       R_TRANSPORT, e);
	if (r)
		return r;
	r = choria_member_str(&fed, "reply-to", "transport.headers.federation.reply-to",
			      CHORIA_OPTIONAL | CHORIA_NONEMPTY, R_TRANSPORT, e, NULL, NULL);
	if (r < 0)
		return r;
	return choria_federation_targets(&fed, e);
}

static int choria_v1_secure_request(const struct jdom_value *s, struct choria_decoded *d,
				    struct choria_err *e)
{
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

static int choria_v1_secure_reply(const struct jdom_value *s, struct choria_decoded *d,
				  struct choria_err *e)
{
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

/* <path>.fact: objects {fact, operator, value}. */
static int choria_filter_facts(const struct jdom_value *facts, const char *path_of,
			       struct choria_err *e)
{
	struct jdom_value f;
	struct jdom_iter it;
	size_t i;
	bool more;

	for (i = 0, more = jdom_array_first(facts, &it, &f); more;
	     i++, more = jdom_array_next(&it, &f)) {
		char path[96];
		const char *op;
		size_t n;
		bool known = false;
		int r;

		if (jdom_type(&f) != JDOM_OBJECT)
			return choria_fail(e, -EBADMSG, R_MESSAGE,
					   "%s.fact[%zu] must be an object, got %s", path_of, i,
					   choria_type_name(&f));
		snprintf(path, sizeof(path), "%s.fact[%zu].fact", path_of, i);
		r = choria_member_str(&f, "fact", path, CHORIA_NONEMPTY, R_MESSAGE, e, NULL, NULL);
		if (r)
			return r;
		snprintf(path, sizeof(path), "%s.fact[%zu].operator", path_of, i);
		r = choria_member_str(&f, "operator", path, 0, R_MESSAGE, e, &op, &n);
		if (r)
			return r;
		for (const char *const *o = choria_fact_operators; *o; o++)
			if (strlen(*o) == n && memcmp(*o, op, n) == 0)
				known = true;
		if (!known) {
			char q[40];
			return choria_fail(e, -EBADMSG, R_MESSAGE,
					   "%s \"%s\" is not a known operator", path,
					   cad_text_printable(q, sizeof(q), op, n));
		}
		snprintf(path, sizeof(path), "%s.fact[%zu].value", path_of, i);
		r = choria_member_str(&f, "value", path, CHORIA_NONEMPTY, R_MESSAGE, e, NULL, NULL);
		if (r)
			return r;
	}
	return 0;
}

/* <path>.<key>: an array of strings. */
static int choria_filter_strings(const struct jdom_value *filter, const char *path_of,
				 const char *key, bool optional, struct choria_err *e)
{
	struct jdom_value arr;
	char path[64];
	int r;

	snprintf(path, sizeof(path), "%s.%s", path_of, key);
	r = choria_member_of_type(filter, key, path, JDOM_ARRAY, optional, R_MESSAGE, e, &arr);
	if (r)
		return r < 0 ? r : 0;
	return choria_array_strings(&arr, path, R_MESSAGE, e);
}

int choria_filter_check(const struct jdom_value *filter, const char *path_of, struct choria_err *e)
{
	struct jdom_value facts, compound, c, v;
	struct jdom_iter it, inner;
	char path[64];
	size_t i, j;
	bool more, more_inner;
	int r;

	snprintf(path, sizeof(path), "%s.fact", path_of);
	r = choria_member_of_type(filter, "fact", path, JDOM_ARRAY, false, R_MESSAGE, e, &facts);
	if (r)
		return r;
	r = choria_filter_facts(&facts, path_of, e);
	if (r)
		return r;
	r = choria_filter_strings(filter, path_of, "cf_class", false, e);
	if (r)
		return r;
	r = choria_filter_strings(filter, path_of, "identity", false, e);
	if (r)
		return r;
	r = choria_filter_strings(filter, path_of, "agent", true, e);
	if (r)
		return r;
	snprintf(path, sizeof(path), "%s.compound", path_of);
	r = choria_member_of_type(filter, "compound", path, JDOM_ARRAY, false, R_MESSAGE, e,
				  &compound);
	if (r)
		return r;
	for (i = 0, more = jdom_array_first(&compound, &it, &c); more;
	     i++, more = jdom_array_next(&it, &c)) {
		if (jdom_type(&c) != JDOM_ARRAY)
			return choria_fail(e, -EBADMSG, R_MESSAGE,
					   "%s.compound[%zu] must be an array, got %s", path_of, i,
					   choria_type_name(&c));
		for (j = 0, more_inner = jdom_array_first(&c, &inner, &v); more_inner;
		     j++, more_inner = jdom_array_next(&inner, &v)) {
			if (jdom_type(&v) != JDOM_OBJECT)
				return choria_fail(
					e, -EBADMSG, R_MESSAGE,
					"%s.compound[%zu][%zu] must be an object, got %s", path_of,
					i, j, choria_type_name(&v));
		}
	}
	return 0;
}

/* envelope.requestid and envelope.senderid, common to both kinds. */
static int choria_v1_ids(const struct jdom_value *env, struct choria_decoded *d,
			 struct choria_err *e)
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

static int choria_v1_time(const struct jdom_value *env, struct choria_decoded *d,
			  struct choria_err *e)
{
	int r = choria_member_int(env, "time", "envelope.time", R_MESSAGE, e, &d->time);
	if (r == 0 && (d->time < CHORIA_TIME_MIN || d->time > CHORIA_TIME_MAX))
		return choria_fail(e, -EBADMSG, R_MESSAGE,
				   "envelope.time %lld is outside the years 1 to 9999",
				   (long long)d->time);
	return r;
}

static int choria_v1_request(const struct jdom_value *m, struct choria_decoded *d,
			     struct choria_err *e)
{
	struct jdom_value env, filter;
	int64_t ttl;
	int r;

	r = choria_member_protocol(m, "request.protocol", CHORIA_V1_REQUEST, CHORIA_V1_REPLY,
				   "a reply where requests are expected", R_MESSAGE, e);
	if (r)
		return r;
	r = choria_member_str(m, "message", "request.message", CHORIA_NONEMPTY, R_MESSAGE, e,
			      &d->body, &d->body_len);
	if (r)
		return r;
	r = choria_member_of_type(m, "envelope", "request.envelope", JDOM_OBJECT, false, R_MESSAGE,
				  e, &env);
	if (r)
		return r;
	r = choria_v1_ids(&env, d, e);
	if (r)
		return r;
	r = choria_member_str(&env, "callerid", "envelope.callerid",
			      CHORIA_NONEMPTY | CHORIA_NO_NUL, R_MESSAGE, e, &d->callerid,
			      &d->callerid_len);
	if (r)
		return r;
	r = choria_member_str(&env, "collective", "envelope.collective", CHORIA_NONEMPTY, R_MESSAGE,
			      e, NULL, NULL);
	if (r)
		return r;
	r = choria_member_str(&env, "agent", "envelope.agent", CHORIA_NONEMPTY, R_MESSAGE, e, NULL,
			      NULL);
	if (r)
		return r;
	r = choria_member_int(&env, "ttl", "envelope.ttl", R_MESSAGE, e, &ttl);
	if (r)
		return r;
	if (ttl < CHORIA_MIN_TTL)
		return choria_fail(e, -EBADMSG, R_MESSAGE,
				   "envelope.ttl must be at least %d, got %lld", CHORIA_MIN_TTL,
				   (long long)ttl);
	r = choria_v1_time(&env, d, e);
	if (r)
		return r;
	r = choria_member_of_type(&env, "filter", "envelope.filter", JDOM_OBJECT, false, R_MESSAGE,
				  e, &filter);
	if (r)
		return r;
	return choria_filter_check(&filter, "envelope.filter", e);
}

static int choria_v1_reply(const struct jdom_value *m, struct choria_decoded *d,
			   struct choria_err *e)
{
	struct jdom_value env;
	int r;

	r = choria_member_protocol(m, "reply.protocol", CHORIA_V1_REPLY, CHORIA_V1_REQUEST,
				   "a request where replies are expected", R_MESSAGE, e);
	if (r)
		return r;
	r = choria_member_str(m, "message", "reply.message", CHORIA_NONEMPTY, R_MESSAGE, e,
			      &d->body, &d->body_len);
	if (r)
		return r;
	r = choria_member_of_type(m, "envelope", "reply.envelope", JDOM_OBJECT, false, R_MESSAGE, e,
				  &env);
	if (r)
		return r;
	r = choria_v1_ids(&env, d, e);
	if (r)
		return r;
	r = choria_member_str(&env, "agent", "envelope.agent", CHORIA_NONEMPTY, R_MESSAGE, e, NULL,
			      NULL);
	if (r)
		return r;
	return choria_v1_time(&env, d, e);
}

/* Protocol v1: transport > secure request/reply > request/reply. */
static int choria_v1_decode(struct choria_decoded *d, struct jdom_scratch *s, enum choria_kind kind,
			    const struct jdom_value *transport, struct choria_err *e)
{
	struct jdom_parser *outer = jdom_scratch_parser(s, CHORIA_PARSER_OUTER);
	bool request = kind == CHORIA_REQUEST;
	struct jdom_value sec, msg;
	int r;

	d->version = 1;
	d->kind = kind;
	r = choria_transport_secure(&sec, s, request, transport, CHORIA_V1_TRANSPORT,
				    choria_v1_headers, e);
	if (r)
		return r;
	r = request ? choria_v1_secure_request(&sec, d, e) : choria_v1_secure_reply(&sec, d, e);
	if (r)
		return r;
	/* The transport is done with: its parser takes the last layer. */
	r = choria_parse(&msg, outer, d->secure_message, d->secure_message_len, false,
			 request ? "request (secure.message)" : "reply (secure.message)", R_MESSAGE,
			 e);
	if (r)
		return r;
	return request ? choria_v1_request(&msg, d, e) : choria_v1_reply(&msg, d, e);
}

/* The transport's `protocol` says which version the layers are. */
static int choria_decode_any(struct choria_decoded *d, struct jdom_scratch *s,
			     enum choria_kind kind, const char *data, size_t len,
			     struct choria_err *e)
{
	struct jdom_value transport, proto;
	const char *p;
	size_t n;
	int r;

	r = choria_parse(&transport, jdom_scratch_parser(s, CHORIA_PARSER_OUTER), data, len, false,
			 "transport", R_TRANSPORT, e);
	if (r)
		return r;
	if (jdom_member(&transport, "protocol", &proto) && jdom_type(&proto) == JDOM_STRING) {
		jdom_string(&proto, &p, &n);
		if (n == strlen(CHORIA_V2_TRANSPORT) && memcmp(p, CHORIA_V2_TRANSPORT, n) == 0)
			return choria_v2_decode(d, s, kind, &transport, e);
	}
	/* v1, or what v1's checks name as a wrong protocol. */
	return choria_v1_decode(d, s, kind, &transport, e);
}

int choria_decode(struct choria_decoded *out, enum choria_kind kind, const char *data, size_t len,
		  const char **reason, char *detail, size_t detail_len)
{
	struct choria_err e = {.reason = reason, .detail = detail, .detail_len = detail_len};
	struct jdom_scratch *s;
	int r;

	memset(out, 0, sizeof(*out));
	if (reason)
		*reason = NULL;
	if (detail && detail_len)
		detail[0] = '\0';
	if (kind != CHORIA_REQUEST && kind != CHORIA_REPLY)
		return choria_fail(&e, -EINVAL, "bad_argument", "unknown message kind %d",
				   (int)kind);
	s = jdom_scratch_take();
	if (!s)
		return choria_fail(&e, -ENOMEM, "no_memory", "out of memory for the JSON parsers");
	r = choria_decode_any(out, s, kind, data, len, &e);
	if (r) {
		memset(out, 0, sizeof(*out));
		jdom_scratch_give(s);
		return r;
	}
	out->priv = s;
	return 0;
}

void choria_decoded_clear(struct choria_decoded *d)
{
	if (!d)
		return;
	jdom_scratch_give(d->priv);
	memset(d, 0, sizeof(*d));
}
