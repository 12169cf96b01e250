/* SPDX-License-Identifier: Apache-2.0 */
/*
 * protocol_parts.h - what the v1 decoder (protocol.c) and the v2 decoder
 * (protocol_v2.c) share: failure reporting, typed member access that names
 * the path of a bad member, base64 fields, the transport with the headers
 * both versions have, and the request filter. Private to the choria
 * ingest.
 */
#ifndef CHORIA_PROTOCOL_PARTS_H
#define CHORIA_PROTOCOL_PARTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json_dom.h"
#include "protocol.h"

#define CHORIA_V1_TRANSPORT "choria:transport:1"
#define CHORIA_V1_SECURE_REQUEST "choria:secure:request:1"
#define CHORIA_V1_SECURE_REPLY "choria:secure:reply:1"
#define CHORIA_V1_REQUEST "choria:request:1"
#define CHORIA_V1_REPLY "choria:reply:1"

#define CHORIA_V2_TRANSPORT "io.choria.protocol.v2.transport"
#define CHORIA_V2_SECURE_REQUEST "io.choria.protocol.v2.secure_request"
#define CHORIA_V2_SECURE_REPLY "io.choria.protocol.v2.secure_reply"
#define CHORIA_V2_REQUEST "io.choria.protocol.v2.request"
#define CHORIA_V2_REPLY "io.choria.protocol.v2.reply"

/* Reason labels (protocol.h lists them). */
#define R_NOT_JSON "not_json"
#define R_TRANSPORT "bad_transport"
#define R_BASE64 "bad_base64"
#define R_SECURE "bad_secure"
#define R_MESSAGE "bad_message"
#define R_NOT_UTF8 "not_utf8"

/* Parsers of the scratch: the transport, then the request/reply layer; the
 * secure layer, whose strings must outlive the request/reply parse; and a
 * token's header and claims, parsed by the verifier while the message's
 * strings are still in use. */
#define CHORIA_PARSER_OUTER 0
#define CHORIA_PARSER_SECURE 1
#define CHORIA_PARSER_TOKEN 2

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

/* Record a failure: the label, and the detail made printable ASCII (it may
 * quote raw input). Returns err. */
int choria_fail(struct choria_err *e, int err, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* "an object", "a string", ... for a detail. */
const char *choria_type_name(const struct jdom_value *v);

/* Parse one layer, which must be a JSON object, with parser `p`. `padded`:
 * JDOM_PADDING readable bytes follow the data. Valid JSON with an integer
 * beyond int64 is refused as `bad`, the layer's own reason, not as
 * not_json: the text is JSON, a value in it is wrong. */
int choria_parse(struct jdom_value *out, struct jdom_parser *p, const char *data, size_t len,
		 bool padded, const char *layer, const char *bad, struct choria_err *e);

/* obj[key] as a string. Returns 0, 1 when absent and CHORIA_OPTIONAL, or
 * a negative errno. */
int choria_member_str(const struct jdom_value *obj, const char *key, const char *path,
		      unsigned flags, const char *reason, struct choria_err *e, const char **s,
		      size_t *n);

/* obj[key] as an integer. */
int choria_member_int(const struct jdom_value *obj, const char *key, const char *path,
		      const char *reason, struct choria_err *e, int64_t *out);

/* obj[key] as an object or an array (`type`). Returns 0, 1 when absent and
 * optional (*out is then an empty placeholder), or a negative errno. */
int choria_member_of_type(const struct jdom_value *obj, const char *key, const char *path,
			  enum jdom_type type, bool optional, const char *reason,
			  struct choria_err *e, struct jdom_value *out);

/* The `protocol` member, which must equal `expected`. `other` is the value
 * the opposite kind carries: seeing it gets `hint` in the detail. */
int choria_member_protocol(const struct jdom_value *obj, const char *path, const char *expected,
			   const char *other, const char *hint, const char *reason,
			   struct choria_err *e);

/* Standard padded base64 at `path` into `buf` (n / 4 * 3 bytes at least);
 * bad_base64 when it is not. */
int choria_base64_field(const char *s, size_t n, unsigned char *buf, size_t *out_len,
			const char *path, struct choria_err *e);

/* Checks a transport's headers, which differ between the versions. */
typedef int (*choria_headers_fn)(const struct jdom_value *headers, struct choria_err *e);

/* The transport (its protocol `expected`, `data`, and headers that
 * `check_headers` reads), its data decoded from base64 and parsed as the
 * secure layer into `sec`, in the scratch's buffer and secure parser. */
int choria_transport_secure(struct jdom_value *sec, struct jdom_scratch *s, bool request,
			    const struct jdom_value *transport, const char *expected,
			    choria_headers_fn check_headers, struct choria_err *e);

/* The optional header h[key] at `path` (seen-by, trace): an array of
 * arrays of strings, of which the first `max_hops` of each are checked;
 * bad_transport otherwise. */
int choria_header_hops(const struct jdom_value *h, const char *key, const char *path,
		       size_t max_hops, struct choria_err *e);

/* The optional federation header's targets: an array of strings. */
int choria_federation_targets(const struct jdom_value *fed, struct choria_err *e);

/* A request filter object at `path_of` ("envelope.filter",
 * "request.filter"): fact, cf_class, identity and compound required, agent
 * optional, typed as the schemas say; bad_message otherwise. */
int choria_filter_check(const struct jdom_value *filter, const char *path_of, struct choria_err *e);

/* Protocol v2 (protocol_v2.c), from its parsed transport. */
int choria_v2_decode(struct choria_decoded *d, struct jdom_scratch *s, enum choria_kind kind,
		     const struct jdom_value *transport, struct choria_err *e);

#endif
