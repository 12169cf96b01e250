/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Concurrency & locking: each thread owns its module worker; the module's
 * publish() may block to bound what is in flight. `deadline_ns` is read
 * atomically by the threads; the owner writes it under `lock` and
 * broadcasts `changed`, because stopping ingest closes the queue first and
 * a thread that sees the close waits for the deadline. `lock`/`changed`
 * also gather the start-up results.
 */
#include "stream_workers.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include <choria-adapterd/cad_clock.h>
#include "log.h"
#include "queue.h"

#define IDLE_NS (100 * CAD_NS_PER_MS)
#define BATCH 32 /* items a worker takes off the queue at once */

struct worker {
	struct stream_workers *owner;
	pthread_t thread;
	unsigned index;
	bool started;
};

struct stream_workers {
	struct adapter *adapter;
	_Atomic int64_t deadline_ns; /* 0 until the owner stops them */
	pthread_mutex_t lock;
	pthread_cond_t changed;
	unsigned reported; /* threads that finished worker_open() */
	int open_error;    /* the first worker_open() failure */
	unsigned count;
	struct worker w[];
};

static void report_open(struct stream_workers *s, int rc)
{
	pthread_mutex_lock(&s->lock);
	s->reported++;
	if (rc != 0 && s->open_error == 0)
		s->open_error = rc;
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
}

static void *worker_main(void *arg)
{
	struct worker *self = arg;
	struct stream_workers *s = self->owner;
	struct adapter *a = s->adapter;
	const struct cad_module *m = a->stream.module;
	void *mw = NULL;

	int rc = m->worker_open(&mw, a->stream.instance, self->index);
	report_open(s, rc);
	if (rc != 0)
		return NULL;

	queue_consumer_add(a->queue);
	for (;;) {
		int64_t deadline = atomic_load(&s->deadline_ns);
		if (deadline && cad_clock_mono_ns() >= deadline)
			break; /* what is still queued is counted by the owner */
		void *items[BATCH];
		rc = queue_pop_batch(a->queue, items, BATCH, IDLE_NS);
		if (rc > 0) {
			/* Taken items are ours to publish: past the deadline,
			 * publish() gives them back to the host as lost. */
			for (int i = 0; i < rc; i++)
				m->publish(mw, items[i]);
		} else if (rc == -ETIMEDOUT) {
			if (m->worker_idle)
				m->worker_idle(mw);
		} else {
			break; /* closed and empty */
		}
	}
	queue_consumer_remove(a->queue);
	/* Stopping ingest closes the queue before the owner sets the drain
	 * deadline: wait for it, or what is in flight gets no time at all. */
	pthread_mutex_lock(&s->lock);
	int64_t deadline;
	while ((deadline = atomic_load(&s->deadline_ns)) == 0)
		pthread_cond_wait(&s->changed, &s->lock);
	pthread_mutex_unlock(&s->lock);
	m->worker_close(mw, deadline);
	return NULL;
}

static void join_started(struct stream_workers *s)
{
	for (unsigned i = 0; i < s->count; i++)
		if (s->w[i].started)
			pthread_join(s->w[i].thread, NULL);
}

int stream_workers_start(struct stream_workers **out, struct adapter *a, unsigned count)
{
	struct stream_workers *s = calloc(1, sizeof(*s) + count * sizeof(struct worker));
	if (!s)
		return -ENOMEM;
	s->adapter = a;
	s->count = count;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->changed, NULL);

	int rc = 0;
	unsigned started = 0;
	for (unsigned i = 0; i < count; i++) {
		s->w[i] = (struct worker){.owner = s, .index = i};
		int e = pthread_create(&s->w[i].thread, NULL, worker_main, &s->w[i]);
		if (e != 0) {
			rc = -e;
			log_error("adapter %s: cannot start stream worker %u: %s", a->name, i,
				  strerror(e));
			break;
		}
		s->w[i].started = true;
		started++;
	}
	pthread_mutex_lock(&s->lock);
	while (s->reported < started)
		pthread_cond_wait(&s->changed, &s->lock);
	if (rc == 0)
		rc = s->open_error;
	pthread_mutex_unlock(&s->lock);

	if (rc != 0) {
		/* The threads that opened are waiting on the queue: closing it
		 * with a deadline of now ends them without publishing. */
		atomic_store(&s->deadline_ns, cad_clock_mono_ns());
		queue_close(a->queue);
		join_started(s);
		pthread_cond_destroy(&s->changed);
		pthread_mutex_destroy(&s->lock);
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void stream_workers_set_deadline(struct stream_workers *s, int64_t deadline_ns)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	int64_t unset = 0;
	atomic_compare_exchange_strong(&s->deadline_ns, &unset, deadline_ns ? deadline_ns : 1);
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
}

void stream_workers_stop(struct stream_workers *s, int64_t deadline_ns)
{
	if (!s)
		return;
	stream_workers_set_deadline(s, deadline_ns);
	queue_close(s->adapter->queue);
	join_started(s);
	pthread_cond_destroy(&s->changed);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
