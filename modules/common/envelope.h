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
#define ENVELOPE_PROTOCOL_FILE "choria:adapters:file:output:1"
#define ENVELOPE_PROTOCOL_KAFKA "choria:adapters:kafka:output:1"
/* What go-choria's broker writes: the label consumers of it may check. */
#define ENVELOPE_PROTOCOL_CHORIA_STREAMS "choria:adapters:choria_streams:output:1"

/* The entry for a stream module's option table: the envelope's label,
 * `def` (the module's own) unless the block names another. */
#define ENVELOPE_OPTIONS(def)                                                                      \
	{                                                                                          \
		.name = "output_protocol", .type = CAD_OPT_STRING, .def_str = (def),               \
		.help = "the envelope's protocol label (" ENVELOPE_PROTOCOL_CHORIA_STREAMS " for " \
			"consumers of the Choria broker)"                                          \
	}

/* The longest label, in bytes, and room for it quoted and escaped. */
#define ENVELOPE_LABEL_MAX 80
#define ENVELOPE_HEAD_MAX 512

/* The label of one stream module instance, fixed at create time: the
 * envelope's opening bytes, {"protocol":"<label>","data":, written once. */
struct envelope_label {
	size_t head_len;
	char head[ENVELOPE_HEAD_MAX];
};

/* Prepare `label`. Returns 0, or -EINVAL for a label that is empty, not
 * UTF-8, or too long. */
int envelope_label_init(struct envelope_label *label, const char *protocol);

/* Read ENVELOPE_OPTIONS from a block into `label`; a label it cannot take
 * is reported with host->cfg_error. Returns 0 or -EINVAL. */
int envelope_label_read(struct envelope_label *label, const struct cad_host *host,
			const struct cad_config *cfg);

/* Encode the envelope into a malloc'd buffer (*out, *len; not
 * NUL-terminated). Returns 0, -EINVAL for text that is not UTF-8 or a time
 * with no RFC 3339 form, or -ENOMEM. */
int envelope_encode(char **out, size_t *len, const struct envelope_label *label,
		    const struct cad_msg *msg);

/* The most bytes envelope_write() may need for this message. */
size_t envelope_max_len(const struct envelope_label *label, const struct cad_msg *msg);

/* Encode into `buf` of `cap` bytes, which must be at least
 * envelope_max_len(): for callers that reuse a buffer. Returns 0 and sets
 * *len, -ENOSPC for a smaller buffer, or -EINVAL as envelope_encode(). */
int envelope_write(char *buf, size_t cap, size_t *len, const struct envelope_label *label,
		   const struct cad_msg *msg);

/* Unix seconds as "2018-03-03T14:49:17Z"; buf needs 21 bytes. Returns 0 or
 * -EINVAL for a time that has no such form. */
int envelope_time(char *buf, size_t len, int64_t unix_seconds);

/* The same with a fraction of a second, as Go's RFC3339Nano writes it: up
 * to nine digits, trailing zeros dropped, none for 0
 * ("2026-01-01T00:00:05.1234Z"); buf needs 31 bytes. Returns 0 or -EINVAL
 * (also for nsec above 999999999). */
int envelope_time_ns(char *buf, size_t len, int64_t unix_seconds, uint32_t nsec);

#endif
