/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bounded work queue between an adapter's ingest and its stream
 * workers. Producers never block: a full queue refuses the newest item, so
 * a NATS subscription is never stalled into a slow-consumer disconnect.
 * Consumers block with a timeout.
 */
#ifndef CAD_QUEUE_H
#define CAD_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "cad_module.h"

struct queue;

CAD_MUSTCHECK int queue_new(struct queue **q, size_t capacity);
void queue_free(struct queue *q); /* accepts NULL; frees nothing it holds */

/* 0 when queued, -ENOBUFS when full, -ESHUTDOWN after queue_close(). The
 * caller keeps the item when it is refused. */
CAD_MUSTCHECK int queue_push(struct queue *q, void *item);

/* 0 with *item set; -ETIMEDOUT after timeout_ns with nothing to take;
 * -ESHUTDOWN when the queue is closed and empty. */
CAD_MUSTCHECK int queue_pop(struct queue *q, void **item, int64_t timeout_ns);

/* Refuse further pushes and wake every consumer; items already queued can
 * still be popped. */
void queue_close(struct queue *q);

size_t queue_length(struct queue *q);
size_t queue_capacity(const struct queue *q);

#endif
