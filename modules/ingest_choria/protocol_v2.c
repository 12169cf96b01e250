/* SPDX-License-Identifier: Apache-2.0 */
/*
 * protocol_v2.c - the Choria protocol v2 decoder (PROTOCOL-v2.md): transport
 * > secure request/reply > request/reply, each layer checked as the
 * published v2 schemas require where the fleet follows them (section 9 says
 * where it does not), with the labels protocol.h lists.
 *
 * Memory: as v1, one message's documents live in the scratch the result
 * holds. Its buffer takes the decoded secure layer first (parsed where it
 * is, so its strings move into the parser), then, in one piece: the request
 * or reply bytes (kept: they are what is signed or hashed), the payload and
 * the signature.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "json_dom.h"
#include "protocol.h"
#include "protocol_parts.h"

#define CHORIA_V2_NS 1000000000LL

/* Optional header members, typed as transport.json says. */
static int choria_v2_headers(const struct jdom_value *h, struct choria_err *e)
{
	struct jdom_value fed;
	int r;

	r = choria_member_str(h, "reply", "transport.headers.reply", CHORIA_OPTIONAL, R_TRANSPORT,
			      e, NULL, NULL);
	if (r < 0)
		return r;
	r = choria_member_str(h, "sender", "transport.headers.sender",
			      CHORIA_OPTIONAL | CHORIA_NONEMPTY, R_TRANSPORT, e, NULL, NULL);
	if (r < 0)
		return r;
	r = choria_header_hops(h, "trace", "transport.headers.trace", SIZE_MAX, e);
	if (r)
		return r;

	r = choria_member_of_type(h, "federation", "transport.headers.federation", JDOM_OBJECT,
				  true, R_TRANSPORT, e, &fed);
	if (r)
		return r < 0 ? r : 0;
	r = choria_member_str(&fed, "request", "transport.headers.federation.request",
			      CHORIA_NONEMPTY, R_TRANSPORT, e, NULL, NULL);
	if (r)
		return r;
	r = choria_member_str(&fed, "reply", "transport.headers.federation.reply", CHORIA_OPTIONAL,
			      R_TRANSPORT, e, NULL, NULL);
	if (r < 0)
		return r;
	return choria_federation_targets(&fed, e);
}

/* A layer's protocols, [0] for a request and [1] for a reply, and the
 * wrong ones its detail names: v1's for the same layer and kind, and v2's
 * for the other kind. */
struct choria_v2_layer {
	const char *path[2];
	const char *v2[2];
	const char *v1[2];
	const char *hint[2]; /* for the other kind's protocol */
	const char *outer;   /* the v2 layer a v1 one was found in */
};

static const struct choria_v2_layer choria_v2_secure_layer = {
	.path = {"secure.protocol", "secure.protocol"},
	.v2 = {CHORIA_V2_SECURE_REQUEST, CHORIA_V2_SECURE_REPLY},
	.v1 = {CHORIA_V1_SECURE_REQUEST, CHORIA_V1_SECURE_REPLY},
	.hint = {"a secure reply where requests are expected",
		 "a secure request where replies are expected"},
	.outer = "transport",
};

static const struct choria_v2_layer choria_v2_inner_layer = {
	.path = {"request.protocol", "reply.protocol"},
	.v2 = {CHORIA_V2_REQUEST, CHORIA_V2_REPLY},
	.v1 = {CHORIA_V1_REQUEST, CHORIA_V1_REPLY},
	.hint = {"a reply where requests are expected", "a request where replies are expected"},
	.outer = "secure layer",
};

static int choria_v2_protocol(const struct jdom_value *m, const struct choria_v2_layer *l,
			      bool request, const char *reason, struct choria_err *e)
{
	int k = request ? 0 : 1;
	const char *s;
	size_t n;

	if (choria_member_str(m, "protocol", l->path[k], 0, reason, e, &s, &n) == 0 &&
	    n == strlen(l->v1[k]) && memcmp(s, l->v1[k], n) == 0)
		return choria_fail(e, -EBADMSG, reason,
				   "%s is \"%s\", expected \"%s\" (a protocol v1 layer inside a "
				   "v2 %s)",
				   l->path[k], l->v1[k], l->v2[k], l->outer);
	return choria_member_protocol(m, l->path[k], l->v2[k], l->v2[!k], l->hint[k], reason, e);
}

/* Where the secure layer's base64 members are, before they are decoded. */
struct choria_v2_secure {
	const char *inner; /* request or reply, base64 */
	size_t inner_len;
	const char *sig; /* request: signature, base64 */
	size_t sig_len;
};

static int choria_v2_secure_request(const struct jdom_value *s, struct choria_decoded *d,
				    struct choria_v2_secure *out, struct choria_err *e)
{
	int r;

	r = choria_v2_protocol(s, &choria_v2_secure_layer, true, R_SECURE, e);
	if (r)
		return r;
	r = choria_member_str(s, "request", "secure.request", CHORIA_NONEMPTY, R_SECURE, e,
			      &out->inner, &out->inner_len);
	if (r)
		return r;
	r = choria_member_str(s, "signature", "secure.signature", CHORIA_NONEMPTY, R_SECURE, e,
			      &out->sig, &out->sig_len);
	if (r)
		return r;
	d->signature = out->sig;
	d->signature_len = out->sig_len;
	r = choria_member_str(s, "caller", "secure.caller", CHORIA_NONEMPTY | CHORIA_NO_NUL,
			      R_SECURE, e, &d->caller_token, &d->caller_token_len);
	if (r)
		return r;
	r = choria_member_str(s, "signer", "secure.signer", CHORIA_OPTIONAL | CHORIA_NO_NUL,
			      R_SECURE, e, &d->signer_token, &d->signer_token_len);
	if (r < 0)
		return r;
	if (r == 1 || d->signer_token_len == 0) { /* "" is no delegation */
		d->signer_token = NULL;
		d->signer_token_len = 0;
	}
	return 0;
}

static int choria_v2_secure_reply(const struct jdom_value *s, struct choria_decoded *d,
				  struct choria_v2_secure *out, struct choria_err *e)
{
	int r;

	r = choria_v2_protocol(s, &choria_v2_secure_layer, false, R_SECURE, e);
	if (r)
		return r;
	r = choria_member_str(s, "reply", "secure.reply", CHORIA_NONEMPTY, R_SECURE, e, &out->inner,
			      &out->inner_len);
	if (r)
		return r;
	r = choria_member_str(s, "hash", "secure.hash", CHORIA_NONEMPTY, R_SECURE, e, &d->hash,
			      &d->hash_len);
	if (r)
		return r;
	/* Neither checked by Choria's receivers nor here; typed only. */
	r = choria_member_str(s, "signature", "secure.signature", CHORIA_OPTIONAL | CHORIA_NONEMPTY,
			      R_SECURE, e, NULL, NULL);
	if (r < 0)
		return r;
	r = choria_member_str(s, "sender", "secure.sender", CHORIA_OPTIONAL, R_SECURE, e, NULL,
			      NULL);
	return r < 0 ? r : 0;
}

/* `time`: Unix nanoseconds, at least 1. */
static int choria_v2_time(const struct jdom_value *m, const char *path, struct choria_decoded *d,
			  struct choria_err *e)
{
	int64_t ns;
	int r = choria_member_int(m, "time", path, R_MESSAGE, e, &ns);

	if (r)
		return r;
	if (ns < 1)
		return choria_fail(e, -EBADMSG, R_MESSAGE, "%s must be at least 1, got %lld", path,
				   (long long)ns);
	d->time = ns / CHORIA_V2_NS;
	d->time_nsec = (uint32_t)(ns % CHORIA_V2_NS);
	return 0;
}

/* What a request and a reply begin with: the protocol, the message (still
 * base64), the request's id and the sender. */
static int choria_v2_head(const struct jdom_value *m, bool request, struct choria_decoded *d,
			  const char **message, size_t *message_len, struct choria_err *e)
{
	int r;

	r = choria_v2_protocol(m, &choria_v2_inner_layer, request, R_MESSAGE, e);
	if (r)
		return r;
	r = choria_member_str(m, "message", request ? "request.message" : "reply.message",
			      CHORIA_NONEMPTY, R_MESSAGE, e, message, message_len);
	if (r)
		return r;
	r = choria_member_str(m, request ? "id" : "request",
			      request ? "request.id" : "reply.request",
			      CHORIA_NONEMPTY | CHORIA_NO_NUL, R_MESSAGE, e, &d->request_id,
			      &d->request_id_len);
	if (r)
		return r;
	return choria_member_str(m, "sender", request ? "request.sender" : "reply.sender",
				 CHORIA_NONEMPTY | CHORIA_NO_NUL, R_MESSAGE, e, &d->sender,
				 &d->sender_len);
}

static int choria_v2_request(const struct jdom_value *m, struct choria_decoded *d,
			     const char **message, size_t *message_len, struct choria_err *e)
{
	struct jdom_value filter;
	int64_t ttl;
	int r;

	r = choria_v2_head(m, true, d, message, message_len, e);
	if (r)
		return r;
	r = choria_member_str(m, "caller", "request.caller", CHORIA_NONEMPTY | CHORIA_NO_NUL,
			      R_MESSAGE, e, &d->callerid, &d->callerid_len);
	if (r)
		return r;
	r = choria_member_str(m, "collective", "request.collective", CHORIA_NONEMPTY, R_MESSAGE, e,
			      NULL, NULL);
	if (r)
		return r;
	r = choria_member_str(m, "agent", "request.agent", CHORIA_NONEMPTY, R_MESSAGE, e, NULL,
			      NULL);
	if (r)
		return r;
	r = choria_member_int(m, "ttl", "request.ttl", R_MESSAGE, e, &ttl);
	if (r)
		return r;
	if (ttl < 1)
		return choria_fail(e, -EBADMSG, R_MESSAGE,
				   "request.ttl must be at least 1, got %lld", (long long)ttl);
	r = choria_v2_time(m, "request.time", d, e);
	if (r)
		return r;
	r = choria_member_of_type(m, "filter", "request.filter", JDOM_OBJECT, true, R_MESSAGE, e,
				  &filter);
	if (r)
		return r < 0 ? r : 0;
	return choria_filter_check(&filter, "request.filter", e);
}

static int choria_v2_reply(const struct jdom_value *m, struct choria_decoded *d,
			   const char **message, size_t *message_len, struct choria_err *e)
{
	int r;

	r = choria_v2_head(m, false, d, message, message_len, e);
	if (r)
		return r;
	r = choria_member_str(m, "agent", "reply.agent", CHORIA_NONEMPTY, R_MESSAGE, e, NULL, NULL);
	if (r)
		return r;
	return choria_v2_time(m, "reply.time", d, e);
}

int choria_v2_decode(struct choria_decoded *d, struct jdom_scratch *s, enum choria_kind kind,
		     const struct jdom_value *transport, struct choria_err *e)
{
	struct jdom_parser *outer = jdom_scratch_parser(s, CHORIA_PARSER_OUTER);
	bool request = kind == CHORIA_REQUEST;
	struct choria_v2_secure sec = {0};
	struct jdom_value sv, msg;
	const char *message = NULL;
	unsigned char *raw, *inner, *body, *sig;
	size_t inner_len, body_len, sig_len, message_len = 0;
	int r;

	d->version = 2;
	d->kind = kind;
	/* The dispatch saw v2's protocol already; checked again for the
	 * detail's sake should that ever change. */
	r = choria_transport_secure(&sv, s, request, transport, CHORIA_V2_TRANSPORT,
				    choria_v2_headers, e);
	if (r)
		return r;
	r = request ? choria_v2_secure_request(&sv, d, &sec, e)
		    : choria_v2_secure_reply(&sv, d, &sec, e);
	if (r)
		return r;

	/* The secure layer's strings are in its parser now: the buffer is
	 * laid out afresh as inner bytes | padding | payload | padding |
	 * signature. The payload is shorter than the inner bytes that hold
	 * it in base64. */
	size_t inner_cap = sec.inner_len / 4 * 3;
	size_t sig_cap = sec.sig_len / 4 * 3;
	if (inner_cap > (SIZE_MAX - sig_cap) / 2 - 2 * JDOM_PADDING)
		return choria_fail(e, -ENOMEM, "no_memory", "secure layer: out of memory");
	raw = jdom_scratch_buffer(s, 2 * inner_cap + 2 * JDOM_PADDING + sig_cap);
	if (!raw)
		return choria_fail(e, -ENOMEM, "no_memory", "secure layer: out of memory");
	inner = raw;
	body = inner + inner_cap + JDOM_PADDING;
	sig = body + inner_cap + JDOM_PADDING;
	r = choria_base64_field(sec.inner, sec.inner_len, inner, &inner_len,
				request ? "secure.request" : "secure.reply", e);
	if (r)
		return r;
	memset(inner + inner_len, 0, JDOM_PADDING);
	d->secure_message = (const char *)inner;
	d->secure_message_len = inner_len;
	if (request) {
		r = choria_base64_field(sec.sig, sec.sig_len, sig, &sig_len, "secure.signature", e);
		if (r)
			return r;
		d->signature_raw = sig;
		d->signature_raw_len = sig_len;
	}

	/* The transport is done with: its parser takes the last layer. */
	r = choria_parse(&msg, outer, (const char *)inner, inner_len, true,
			 request ? "request (secure.request)" : "reply (secure.reply)", R_MESSAGE,
			 e);
	if (r)
		return r;
	r = request ? choria_v2_request(&msg, d, &message, &message_len, e)
		    : choria_v2_reply(&msg, d, &message, &message_len, e);
	if (r)
		return r;
	if (message_len / 4 * 3 > inner_cap)
		return choria_fail(e, -EBADMSG, R_MESSAGE, "%s is longer than its layer",
				   request ? "request.message" : "reply.message");
	r = choria_base64_field(message, message_len, body, &body_len,
				request ? "request.message" : "reply.message", e);
	if (r)
		return r;
	if (!jdom_utf8_valid((const char *)body, body_len))
		return choria_fail(e, -EBADMSG, R_NOT_UTF8, "%s does not decode to UTF-8 text",
				   request ? "request.message" : "reply.message");
	body[body_len] = '\0';
	d->body = (const char *)body;
	d->body_len = body_len;
	return 0;
}
