/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The JSON envelope a stream module publishes for each message:
 *   {"protocol":"...","data":"<body>","sender":"...","time":"RFC 3339 UTC",
 *    "requestid":"..."}
 * Compact, keys in this order, byte for byte what jansson's JSON_COMPACT
 * dump of the same object writes. Thread-safe.
 */
#ifndef CAD_ENVELOPE_H
#define CAD_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include <choria-adapterd/cad_module.h>

#define ENVELOPE_PROTOCOL_JETSTREAM "choria:adapters:jetstream:output:1"
#define ENVELOPE_PROTOCOL_NATSSTREAM "choria:adapters:natsstream:output:1"

/* Encode the envelope into a malloc'd buffer (*out, *len; not
 * NUL-terminated). Returns 0, -EINVAL for text that is not UTF-8 or a time
 * with no RFC 3339 form, or -ENOMEM. */
int envelope_encode(char **out, size_t *len, const char *protocol, const struct cad_msg *msg);

/* The most bytes envelope_write() may need for this message. */
size_t envelope_max_len(const char *protocol, const struct cad_msg *msg);

/* Encode into `buf` of `cap` bytes, which must be at least
 * envelope_max_len(): for callers that reuse a buffer. Returns 0 and sets
 * *len, -ENOSPC for a smaller buffer, or -EINVAL as envelope_encode(). */
int envelope_write(char *buf, size_t cap, size_t *len, const char *protocol,
		   const struct cad_msg *msg);

/* Unix seconds as "2018-03-03T14:49:17Z"; buf needs 21 bytes. Returns 0 or
 * -EINVAL for a time that has no such form. */
int envelope_time(char *buf, size_t len, int64_t unix_seconds);

#endif
