/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The publishes a JetStream instance holds: each daemon message sent (or
 * waiting to be sent again) under the token its acknowledgement's reply
 * subject ends with, so that an acknowledgement can be matched to the
 * message it settles. Open addressing on the token; not thread-safe (the
 * instance locks).
 */
#ifndef CAD_JS_INFLIGHT_H
#define CAD_JS_INFLIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "publish_window.h"

struct inflight_entry {
	uint64_t token;                 /* 0 marks a free slot */
	struct publish_window_entry pw; /* the message, and when it goes again */
};

struct inflight {
	struct inflight_entry *slots;
	size_t mask;    /* capacity - 1, capacity a power of two */
	unsigned shift; /* 64 - log2(capacity): a hash's top bits pick the slot */
	size_t count;
};

/* Room for at least `max` entries. Returns 0 or -ENOMEM. */
int inflight_init(struct inflight *t, size_t max);
void inflight_destroy(struct inflight *t);

/* The caller keeps count below the `max` given to init; token is not 0. */
struct inflight_entry *inflight_put(struct inflight *t, uint64_t token, struct cad_msg *msg);
struct inflight_entry *inflight_get(struct inflight *t, uint64_t token);
void inflight_del(struct inflight *t, struct inflight_entry *e);

#endif
