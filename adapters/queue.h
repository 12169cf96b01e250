/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bounded work queue between an adapter's ingest and its stream
 * workers. A full queue refuses the newest item; a producer may first wait
 * for room, but only for so long after the queue filled, so a NATS
 * subscription is held back through a hiccup of the stream, never through
 * an outage or a stream slower than the fleet. Consumers block with a
 * timeout.
 */
#ifndef CAD_QUEUE_H
#define CAD_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include <choria-adapterd/cad_module.h>

struct queue;

CAD_MUSTCHECK int queue_new(struct queue **q, size_t capacity);
void queue_free(struct queue *q); /* accepts NULL; frees nothing it holds */

/* 0 when queued, -ENOBUFS when full, -ESHUTDOWN after queue_close(). The
 * caller keeps the item when it is refused. */
CAD_MUSTCHECK int queue_push(struct queue *q, void *item);

/* Like queue_push(), but a full queue is waited on until it has been full
 * for wait_ns (it counts as full from when it fills until it drains to
 * half its capacity): -ENOBUFS then, at once if it has been full that long
 * already; -ESHUTDOWN if it closes meanwhile. */
CAD_MUSTCHECK int queue_push_wait(struct queue *q, void *item, int64_t wait_ns);

/* 0 with *item set; -ETIMEDOUT after timeout_ns with nothing to take;
 * -ESHUTDOWN when the queue is closed and empty. */
CAD_MUSTCHECK int queue_pop(struct queue *q, void **item, int64_t timeout_ns);

/* Like queue_pop(), taking up to `max` items at once: returns how many
 * (at least 1) or a negative errno. */
CAD_MUSTCHECK int queue_pop_batch(struct queue *q, void **items, size_t max, int64_t timeout_ns);

/* A push wakes a sleeping consumer only when more than this many items
 * wait for each registered consumer that is awake (none awake: any item).
 * Consumers that register say they come back for more without being
 * woken; unregistered ones are woken by every push. */
#define QUEUE_BACKLOG_PER_CONSUMER 8
/* How often one registered consumer looks for items without being woken,
 * while items arrive at least that often. */
#define QUEUE_POLL_NS 1000000
void queue_consumer_add(struct queue *q);
void queue_consumer_remove(struct queue *q);

/* Refuse further pushes and wake every consumer; items already queued can
 * still be popped. */
void queue_close(struct queue *q);

size_t queue_length(struct queue *q);
size_t queue_capacity(const struct queue *q);

#endif
