/* SPDX-License-Identifier: Apache-2.0 */
/*
 * protocol.h - decoder for Choria protocol v1 messages (transport, secure
 * request/reply, request/reply), as described in PROTOCOL.md.
 *
 * Pure: no NATS, no host, no shared state; safe to call from any number of
 * threads at once (each thread keeps its own parsers for reuse). The result names the protocol version it was decoded
 * from so that a v2 decoder can later fill the same structure.
 */
#ifndef CHORIA_PROTOCOL_H
#define CHORIA_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

/* What the subscription carries, from the `protocol` option. */
enum choria_kind {
	CHORIA_REQUEST, /* transport > secure request > request */
	CHORIA_REPLY,   /* transport > secure reply > reply */
};

struct jdom_scratch; /* json_dom.h */

/*
 * A decoded message. Every string is NUL-terminated, carries its length
 * (values may contain NUL bytes where noted) and points into JSON documents
 * the structure owns: valid until choria_decoded_clear().
 */
/* The times an output envelope can write: RFC 3339 has the years 0001 to
 * 9999 (see envelope_time()). A message from outside them is refused as
 * bad_message here rather than lost on the stream side. */
#define CHORIA_TIME_MIN (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define CHORIA_TIME_MAX 253402300799LL   /* 9999-12-31T23:59:59Z */

struct choria_decoded {
	unsigned version; /* protocol version decoded from: 1 */
	enum choria_kind kind;

	/* What the adapter republishes. */
	const char *sender; /* envelope.senderid, non-empty, no NUL */
	size_t sender_len;
	const char *request_id; /* envelope.requestid, 32 characters, no NUL */
	size_t request_id_len;
	int64_t time;     /* envelope.time, Unix seconds, within
	                           CHORIA_TIME_MIN..CHORIA_TIME_MAX */
	const char *body; /* the request/reply `message`, decoded string
	                           value byte for byte; may contain NUL */
	size_t body_len;
	const char *callerid; /* request: envelope.callerid, no NUL;
	                           reply: NULL */
	size_t callerid_len;

	/* The secure layer, for signature and hash verification. */
	const char *secure_message; /* its `message` string, decoded: the
	                               bytes that are signed or hashed */
	size_t secure_message_len;
	const char *signature; /* secure request: base64 text; else NULL */
	size_t signature_len;
	const char *pubcert; /* secure request: PEM text; else NULL */
	size_t pubcert_len;
	const char *hash; /* secure reply: base64 text; else NULL */
	size_t hash_len;

	/* Private: the parsers the strings above live in, lent by the
	   decoding thread until choria_decoded_clear(). */
	struct jdom_scratch *priv;
};

/*
 * Decode one message as it arrived on the wire (`data`, `len` bytes, need
 * not be NUL-terminated) and check it against the protocol v1 schemas.
 *
 * Returns 0 and fills *out, or a negative errno and leaves *out cleared:
 *   -EBADMSG  the message is malformed: *reason is one of the labels below
 *             and `detail` says what exactly was wrong;
 *   -ENOMEM   out of memory: *reason is "no_memory";
 *   -EINVAL   `kind` is not a choria_kind: *reason is "bad_argument".
 * *out is always initialised, so choria_decoded_clear() is always safe.
 * `reason` and `detail` may be NULL / 0. Details contain printable ASCII
 * only: values quoted from the input are escaped and shortened.
 *
 * Reason labels (string literals, stable, used as metric labels):
 *   not_json       a layer is not valid JSON or not a JSON object
 *   bad_transport  transport schema violation
 *   bad_base64     transport `data` is not standard padded base64
 *   bad_secure     secure request/reply schema violation
 *   bad_message    request/reply schema violation
 */
int choria_decode(struct choria_decoded *out, enum choria_kind kind, const char *data, size_t len,
		  const char **reason, char *detail, size_t detail_len);

/* Release what *d holds and reset it; accepts a cleared structure. */
void choria_decoded_clear(struct choria_decoded *d);

/* "request" or "reply". */
const char *choria_kind_name(enum choria_kind kind);

#endif
