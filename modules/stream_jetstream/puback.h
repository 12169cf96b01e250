/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JetStream's answer to a publish (a PubAck): the stream and sequence that
 * stored it, or the error that refused it.
 */
#ifndef CAD_JS_PUBACK_H
#define CAD_JS_PUBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* JetStream's error code for a message larger than the stream accepts. */
#define PUBACK_ERR_TOO_LARGE 10054

enum puback_kind {
	PUBACK_STORED,     /* stream and seq are set */
	PUBACK_REFUSED,    /* err_code (0 if none given) and text are set */
	PUBACK_UNREADABLE, /* not a PubAck; text says why */
};

struct puback {
	enum puback_kind kind;
	char stream[64];
	uint64_t seq;
	bool duplicate;
	long err_code;
	char text[160];
};

/* Read the `len` bytes of an acknowledgement; every outcome is in *out. */
void puback_parse(struct puback *out, const char *data, size_t len);

#endif
