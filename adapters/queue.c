/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A ring buffer of pointers under one mutex.
 *
 * Waking a consumer costs two context switches, more than the work of a
 * small message, so a push wakes a sleeping consumer only when no consumer
 * is awake or the backlog outgrows what the awake ones take in a moment;
 * consumers take items in batches. While items arrive faster than one per
 * QUEUE_POLL_NS, one registered consumer looks again every QUEUE_POLL_NS
 * instead of waiting to be woken, so a busy stream wakes its workers about
 * once a poll rather than once a message, for at most QUEUE_POLL_NS of
 * added latency. A quiet queue is not polled: each item wakes a consumer
 * at once. An awake consumer counts on coming back only while consumers
 * do come back: an item pushed when none has come for items for
 * QUEUE_POLL_NS (all busy in a slow publish) wakes a sleeper. One pushed
 * sooner after a pop is left to the consumer that popped; should that one
 * then stall, the item waits for the next push or a sleeper's timeout.
 *
 * A full queue can hold a producer back for a while (queue_push_wait()),
 * but only for so long after it filled: a stream that hiccups is waited
 * for; a stream that has stopped, or that is slower than its producers
 * for good, keeps the queue full, and once it has been full for the wait
 * every push is refused at once, as it would be without waiting, so the
 * backlog is not pushed back into the producers without bound. The queue
 * counts as full from the moment it fills until it has drained to half.
 *
 * Concurrency & locking: `lock` guards every field but `capacity`, which is
 * fixed. `nonempty` is signalled after the lock is released (so the woken
 * consumer does not block on it at once) and broadcast on close; `nonfull`
 * is broadcast by a pop that leaves a quarter of the queue free while
 * producers wait on it, and on close. The
 * critical sections are a few loads and stores, so one lock serves many
 * producers (NATS delivery threads) and consumers (stream workers).
 */
#include "queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include <choria-adapterd/cad_clock.h>

struct queue {
	pthread_mutex_t lock;
	pthread_cond_t nonempty;
	pthread_cond_t nonfull;
	size_t capacity;
	size_t head; /* next slot to pop */
	size_t count;
	unsigned consumers; /* registered with queue_consumer_add() */
	unsigned sleeping;  /* consumers waiting on `nonempty`, the poller too */
	bool polling;       /* one of them waits only until the next poll */
	int64_t last_push_ns;
	int64_t last_pop_ns;        /* when a consumer last came for items */
	int64_t full_since_ns;      /* when it filled; 0 once drained to half */
	unsigned producers_waiting; /* on `nonfull` */
	bool closed;
	void *slots[];
};

int queue_new(struct queue **out, size_t capacity)
{
	if (capacity == 0)
		return -EINVAL;
	struct queue *q = calloc(1, sizeof(*q) + capacity * sizeof(void *));
	if (!q)
		return -ENOMEM;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->nonempty, &ca);
	pthread_cond_init(&q->nonfull, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&q->lock, NULL);
	q->capacity = capacity;
	*out = q;
	return 0;
}

void queue_free(struct queue *q)
{
	if (!q)
		return;
	pthread_cond_destroy(&q->nonempty);
	pthread_cond_destroy(&q->nonfull);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

void queue_consumer_add(struct queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->consumers++;
	pthread_mutex_unlock(&q->lock);
}

void queue_consumer_remove(struct queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->consumers--;
	pthread_mutex_unlock(&q->lock);
}

/* Whether a push that left `count` items should wake a sleeper. Lock held. */
static bool wake_needed(const struct queue *q)
{
	if (q->sleeping == 0)
		return false;
	/* Consumers that will come for items without being woken. */
	size_t awake = q->consumers > q->sleeping ? q->consumers - q->sleeping : 0;
	if (awake && q->last_push_ns - q->last_pop_ns > QUEUE_POLL_NS)
		awake = 0; /* awake, but not coming: busy in a slow publish */
	size_t takers = awake + (q->polling ? 1 : 0);
	return q->count > takers * QUEUE_BACKLOG_PER_CONSUMER;
}

/* Free slots that wake producers waiting on a full queue: a quarter of
 * it, one at least. */
static size_t room_mark(const struct queue *q)
{
	return q->capacity >= 8 ? q->capacity / 4 : 1;
}

int queue_push_wait(struct queue *q, void *item, int64_t wait_ns)
{
	int rc = 0;
	bool wake = false;
	pthread_mutex_lock(&q->lock);
	/* Wait while the queue has been full for less than wait_ns. */
	while (!q->closed && q->count == q->capacity) {
		int64_t give_up_ns = q->full_since_ns + wait_ns;
		if (cad_clock_mono_ns() >= give_up_ns)
			break;
		struct timespec t = cad_clock_timespec(give_up_ns);
		q->producers_waiting++;
		pthread_cond_timedwait(&q->nonfull, &q->lock, &t);
		q->producers_waiting--;
	}
	if (q->closed) {
		rc = -ESHUTDOWN;
	} else if (q->count == q->capacity) {
		rc = -ENOBUFS;
	} else {
		q->slots[(q->head + q->count) % q->capacity] = item;
		q->count++;
		q->last_push_ns = cad_clock_mono_ns();
		if (q->count == q->capacity && q->full_since_ns == 0)
			q->full_since_ns = q->last_push_ns;
		wake = wake_needed(q);
	}
	pthread_mutex_unlock(&q->lock);
	if (wake)
		pthread_cond_signal(&q->nonempty);
	return rc;
}

int queue_push(struct queue *q, void *item)
{
	return queue_push_wait(q, item, 0);
}

int queue_pop_batch(struct queue *q, void **items, size_t max, int64_t timeout_ns)
{
	int64_t until_ns = cad_clock_mono_ns() + timeout_ns;

	pthread_mutex_lock(&q->lock);
	while (q->count == 0 && !q->closed) {
		int64_t now = cad_clock_mono_ns();
		if (now >= until_ns)
			break;
		/* Poll while items come faster than a poll; one poller at most. */
		bool poll =
			q->consumers > 0 && !q->polling && now - q->last_push_ns < QUEUE_POLL_NS;
		int64_t wake_ns =
			poll && now + QUEUE_POLL_NS < until_ns ? now + QUEUE_POLL_NS : until_ns;
		struct timespec t = cad_clock_timespec(wake_ns);
		q->sleeping++;
		q->polling |= poll;
		pthread_cond_timedwait(&q->nonempty, &q->lock, &t);
		q->sleeping--;
		if (poll)
			q->polling = false;
	}
	int rc;
	q->last_pop_ns = cad_clock_mono_ns();
	if (q->count > 0) {
		size_t n = q->count < max ? q->count : max;
		for (size_t i = 0; i < n; i++) {
			items[i] = q->slots[q->head];
			q->head = (q->head + 1) % q->capacity;
		}
		q->count -= n;
		if (q->count <= q->capacity / 2)
			q->full_since_ns = 0;
		/* Waking every waiting producer for each few items taken
		 * would cost them a context switch each per pop: they are
		 * woken once a quarter is free, or by their wait's end. */
		if (q->producers_waiting && q->capacity - q->count >= room_mark(q))
			pthread_cond_broadcast(&q->nonfull);
		rc = (int)n;
	} else {
		rc = q->closed ? -ESHUTDOWN : -ETIMEDOUT;
	}
	pthread_mutex_unlock(&q->lock);
	return rc;
}

int queue_pop(struct queue *q, void **item, int64_t timeout_ns)
{
	int rc = queue_pop_batch(q, item, 1, timeout_ns);
	return rc > 0 ? 0 : rc;
}

void queue_close(struct queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->closed = true;
	pthread_cond_broadcast(&q->nonempty);
	pthread_cond_broadcast(&q->nonfull);
	pthread_mutex_unlock(&q->lock);
}

size_t queue_length(struct queue *q)
{
	pthread_mutex_lock(&q->lock);
	size_t n = q->count;
	pthread_mutex_unlock(&q->lock);
	return n;
}

size_t queue_capacity(const struct queue *q)
{
	return q->capacity;
}
