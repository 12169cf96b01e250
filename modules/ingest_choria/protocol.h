/* SPDX-License-Identifier: Apache-2.0 */
/*
 * protocol.h - decoder for Choria protocol v1 and v2 messages (transport,
 * secure request/reply, request/reply), as described in PROTOCOL.md and
 * PROTOCOL-v2.md. The transport's `protocol` says which version a message
 * is; both may arrive on one subscription.
 *
 * Pure: no NATS, no host, no shared state; safe to call from any number of
 * threads at once (each thread keeps its own parsers for reuse). The result
 * names the protocol version it was decoded from.
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
	unsigned version; /* protocol version decoded from: 1 or 2 */
	enum choria_kind kind;

	/* What the adapter republishes. */
	const char *sender; /* v1 envelope.senderid, v2 sender; non-empty, no NUL */
	size_t sender_len;
	const char *request_id; /* v1 envelope.requestid (32 characters), v2
	                           request id or reply request; no NUL */
	size_t request_id_len;
	int64_t time;       /* Unix seconds, within CHORIA_TIME_MIN..MAX */
	uint32_t time_nsec; /* v2: nanoseconds past `time`; v1: 0 */
	const char *body;   /* the payload: v1 the request/reply `message`
	                           string byte for byte, may contain NUL; v2 its
	                           base64-decoded bytes, UTF-8 text */
	size_t body_len;
	const char *callerid; /* request: v1 envelope.callerid, v2 caller;
	                           no NUL; reply: NULL */
	size_t callerid_len;

	/* The secure layer, for signature and hash verification. */
	const char *secure_message; /* the bytes that are signed or hashed: v1
	                               the `message` string decoded, v2 the
	                               base64-decoded request or reply */
	size_t secure_message_len;
	const char *signature; /* secure request: base64 text; else NULL */
	size_t signature_len;
	const unsigned char *signature_raw; /* v2 request: the signature decoded */
	size_t signature_raw_len;
	const char *pubcert; /* v1 secure request: PEM text; else NULL */
	size_t pubcert_len;
	const char *hash; /* secure reply: base64 text; else NULL */
	size_t hash_len;
	const char *caller_token; /* v2 secure request: the caller's JWT */
	size_t caller_token_len;
	const char *signer_token; /* v2 secure request: the delegator's JWT, or
	                             NULL when there is none (absent or "") */
	size_t signer_token_len;

	/* Private: the parsers the strings above live in, lent by the
	   decoding thread until choria_decoded_clear(). */
	struct jdom_scratch *priv;
};

/*
 * Decode one message as it arrived on the wire (`data`, `len` bytes, need
 * not be NUL-terminated) and check it against its version's schemas.
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
 * Reason labels (string literals, stable, used as metric labels), the
 * same for both versions:
 *   not_json       a layer is not valid JSON or not a JSON object
 *   bad_transport  transport schema violation, or a transport `protocol`
 *                  that is neither v1's nor v2's
 *   bad_base64     a base64 field is not standard padded base64: v1
 *                  transport `data`; v2 transport `data`, secure `request`,
 *                  `reply` and `signature`, request/reply `message`
 *   bad_secure     secure request/reply schema violation, including a
 *                  secure layer of the other version or the other kind
 *   bad_message    request/reply schema violation (v2: `ttl` < 1, `time`
 *                  < 1, a layer of the other version or kind)
 *   not_utf8       v2: the decoded payload is not UTF-8 text
 * The reasons of `security = verify` are in verify.h (v1) and
 * verify_v2.h (v2).
 */
int choria_decode(struct choria_decoded *out, enum choria_kind kind, const char *data, size_t len,
		  const char **reason, char *detail, size_t detail_len);

/* Release what *d holds and reset it; accepts a cleared structure. */
void choria_decoded_clear(struct choria_decoded *d);

/* "request" or "reply". */
const char *choria_kind_name(enum choria_kind kind);

#endif
