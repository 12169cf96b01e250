/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The publishes a JetStream worker holds: each NATS message handed to the
 * library (or waiting for a retry) mapped to the daemon message it carries,
 * so an acknowledgement can be matched to the message it settles. Open
 * addressing on the natsMsg pointer; not thread-safe (the worker locks).
 */
#ifndef CAD_JS_INFLIGHT_H
#define CAD_JS_INFLIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cad_msg;

struct inflight_entry {
	const void *key;        /* the natsMsg; NULL marks a free slot */
	struct cad_msg *msg;
	int64_t retry_at_ns;    /* 0: with the library; else when to resend */
};

struct inflight {
	struct inflight_entry *slots;
	size_t mask;  /* capacity - 1, capacity a power of two */
	size_t count;
};

/* Room for at least `max` entries. Returns 0 or -ENOMEM. */
int inflight_init(struct inflight *t, size_t max);
void inflight_destroy(struct inflight *t);

/* The caller keeps count below the `max` given to init. */
struct inflight_entry *inflight_put(struct inflight *t, const void *key, struct cad_msg *msg);
struct inflight_entry *inflight_get(struct inflight *t, const void *key);
void inflight_del(struct inflight *t, struct inflight_entry *e);

#endif
