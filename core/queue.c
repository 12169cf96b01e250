/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A ring buffer of pointers under one mutex.
 *
 * Concurrency & locking: `lock` guards every field but `capacity`, which is
 * fixed. `nonempty` is signalled on each push (after the lock is released,
 * so the woken consumer does not block on it at once) and broadcast on
 * close. The critical sections are a few loads and stores, so one lock
 * serves many producers (NATS delivery threads) and consumers (stream
 * workers).
 */
#include "queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "clock.h"

struct queue {
	pthread_mutex_t lock;
	pthread_cond_t nonempty;
	size_t capacity;
	size_t head; /* next slot to pop */
	size_t count;
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
	pthread_mutex_destroy(&q->lock);
	free(q);
}

int queue_push(struct queue *q, void *item)
{
	int rc = 0;
	pthread_mutex_lock(&q->lock);
	if (q->closed) {
		rc = -ESHUTDOWN;
	} else if (q->count == q->capacity) {
		rc = -ENOBUFS;
	} else {
		q->slots[(q->head + q->count) % q->capacity] = item;
		q->count++;
	}
	pthread_mutex_unlock(&q->lock);
	if (rc == 0)
		pthread_cond_signal(&q->nonempty);
	return rc;
}

int queue_pop(struct queue *q, void **item, int64_t timeout_ns)
{
	struct timespec until;
	int64_t t = clock_mono_ns() + timeout_ns;
	until.tv_sec = t / CAD_NS_PER_SEC;
	until.tv_nsec = t % CAD_NS_PER_SEC;

	pthread_mutex_lock(&q->lock);
	while (q->count == 0 && !q->closed) {
		if (pthread_cond_timedwait(&q->nonempty, &q->lock, &until) == ETIMEDOUT)
			break;
	}
	int rc;
	if (q->count > 0) {
		*item = q->slots[q->head];
		q->head = (q->head + 1) % q->capacity;
		q->count--;
		rc = 0;
	} else {
		rc = q->closed ? -ESHUTDOWN : -ETIMEDOUT;
	}
	pthread_mutex_unlock(&q->lock);
	return rc;
}

void queue_close(struct queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->closed = true;
	pthread_cond_broadcast(&q->nonempty);
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
