/* SPDX-License-Identifier: Apache-2.0 */
/* The bounded queue: capacity, order, close, and many threads at once. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include <choria-adapterd/cad_clock.h>
#include "queue.h"

Test(queue, refuses_zero_capacity)
{
	struct queue *q;
	cr_assert_eq(queue_new(&q, 0), -EINVAL);
}

Test(queue, keeps_fifo_order_and_refuses_when_full)
{
	struct queue *q;
	cr_assert_eq(queue_new(&q, 3), 0);
	int items[4];
	for (int i = 0; i < 3; i++)
		cr_assert_eq(queue_push(q, &items[i]), 0);
	cr_assert_eq(queue_push(q, &items[3]), -ENOBUFS, "a full queue refuses the newest item");
	cr_assert_eq(queue_length(q), 3);
	void *out;
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(queue_pop(q, &out, 0), 0);
		cr_assert_eq(out, &items[i]);
	}
	cr_assert_eq(queue_pop(q, &out, 0), -ETIMEDOUT);
	queue_free(q);
}

Test(queue, pop_waits_for_the_timeout)
{
	struct queue *q;
	cr_assert_eq(queue_new(&q, 1), 0);
	void *out;
	int64_t t0 = cad_clock_mono_ns();
	cr_assert_eq(queue_pop(q, &out, 50 * CAD_NS_PER_MS), -ETIMEDOUT);
	int64_t waited = cad_clock_mono_ns() - t0;
	cr_assert_geq(waited, 45 * CAD_NS_PER_MS);
	cr_assert_lt(waited, 1000 * CAD_NS_PER_MS, "and not much longer: %.1f ms",
		     (double)waited / 1e6);
	queue_free(q);
}

Test(queue, close_refuses_pushes_but_delivers_what_is_queued)
{
	struct queue *q;
	cr_assert_eq(queue_new(&q, 4), 0);
	int a, b;
	cr_assert_eq(queue_push(q, &a), 0);
	queue_close(q);
	cr_assert_eq(queue_push(q, &b), -ESHUTDOWN);
	void *out;
	cr_assert_eq(queue_pop(q, &out, CAD_NS_PER_SEC), 0);
	cr_assert_eq(out, &a);
	cr_assert_eq(queue_pop(q, &out, CAD_NS_PER_SEC), -ESHUTDOWN);
	queue_free(q);
}

/* Several producers and consumers: every accepted item is taken exactly
 * once, refused ones are counted, and closing wakes every consumer. */
#define PRODUCERS 4
#define CONSUMERS 4
#define PER_PRODUCER 50000

struct shared {
	struct queue *q;
	int64_t wait_ns; /* what producers pass to queue_push_wait() */
	_Atomic uint64_t accepted, refused, taken, sum_in, sum_out;
};

static void *producer(void *arg)
{
	struct shared *s = arg;
	for (uintptr_t i = 1; i <= PER_PRODUCER; i++) {
		if (queue_push_wait(s->q, (void *)i, s->wait_ns) == 0) {
			atomic_fetch_add(&s->accepted, 1);
			atomic_fetch_add(&s->sum_in, i);
		} else {
			atomic_fetch_add(&s->refused, 1);
		}
	}
	return NULL;
}

static void *consumer(void *arg)
{
	struct shared *s = arg;
	void *item;
	int rc;
	while ((rc = queue_pop(s->q, &item, 10 * CAD_NS_PER_MS)) != -ESHUTDOWN) {
		if (rc == 0) {
			atomic_fetch_add(&s->taken, 1);
			atomic_fetch_add(&s->sum_out, (uintptr_t)item);
		}
	}
	return NULL;
}

/* PRODUCERS and CONSUMERS threads on a queue of `capacity`, until every
 * producer is done and the consumers have taken what is left. */
static void run_producers_and_consumers(struct shared *s, size_t capacity)
{
	cr_assert_eq(queue_new(&s->q, capacity), 0);
	pthread_t p[PRODUCERS], c[CONSUMERS];
	for (int i = 0; i < CONSUMERS; i++)
		pthread_create(&c[i], NULL, consumer, s);
	for (int i = 0; i < PRODUCERS; i++)
		pthread_create(&p[i], NULL, producer, s);
	for (int i = 0; i < PRODUCERS; i++)
		pthread_join(p[i], NULL);
	queue_close(s->q);
	for (int i = 0; i < CONSUMERS; i++)
		pthread_join(c[i], NULL);
}

Test(queue, concurrent_producers_and_consumers_lose_nothing, .timeout = 60)
{
	struct shared s = {0};
	run_producers_and_consumers(&s, 64);
	cr_assert_eq(s.accepted + s.refused, (uint64_t)PRODUCERS * PER_PRODUCER);
	cr_assert_eq(s.taken, s.accepted, "taken %lu, accepted %lu", (unsigned long)s.taken,
		     (unsigned long)s.accepted);
	cr_assert_eq(s.sum_out, s.sum_in, "every accepted item comes out exactly once");
	cr_assert_gt(s.accepted, 0);
	queue_free(s.q);
}

static void *blocked_consumer(void *arg)
{
	void *item;
	return (void *)(intptr_t)queue_pop(arg, &item, 60 * CAD_NS_PER_SEC);
}

/* Run `waiter` on q, close q while it waits: it must return -ESHUTDOWN
 * at once. Frees q. */
static void assert_close_wakes(struct queue *q, void *(*waiter)(void *))
{
	pthread_t t;
	pthread_create(&t, NULL, waiter, q);
	struct timespec pause = {0, 50 * 1000000L};
	nanosleep(&pause, NULL);
	int64_t t0 = cad_clock_mono_ns();
	queue_close(q);
	void *rc;
	pthread_join(t, &rc);
	cr_assert_eq((intptr_t)rc, -ESHUTDOWN);
	cr_assert_lt(cad_clock_mono_ns() - t0, CAD_NS_PER_SEC);
	queue_free(q);
}

Test(queue, close_wakes_a_waiting_consumer_at_once, .timeout = 10)
{
	struct queue *q;
	cr_assert_eq(queue_new(&q, 8), 0);
	assert_close_wakes(q, blocked_consumer);
}

/* A consumer that takes one item every `every_ms`, `n` times. */
struct slow_consumer {
	struct queue *q;
	int n, every_ms;
	uintptr_t taken[64];
};

static void *slow_consumer(void *arg)
{
	struct slow_consumer *c = arg;
	for (int i = 0; i < c->n; i++) {
		struct timespec pause = {0, c->every_ms * 1000000L};
		nanosleep(&pause, NULL);
		void *item = NULL;
		if (queue_pop(c->q, &item, CAD_NS_PER_SEC) == 0)
			c->taken[i] = (uintptr_t)item;
	}
	return NULL;
}

Test(queue, a_full_queue_holds_a_producer_while_consumers_take_items, .timeout = 10)
{
	struct slow_consumer c = {.n = 6, .every_ms = 30};
	cr_assert_eq(queue_new(&c.q, 2), 0);
	cr_assert_eq(queue_push(c.q, (void *)1), 0);
	cr_assert_eq(queue_push(c.q, (void *)2), 0);
	pthread_t t;
	pthread_create(&t, NULL, slow_consumer, &c);
	int64_t t0 = cad_clock_mono_ns();
	for (uintptr_t i = 3; i <= 6; i++)
		cr_assert_eq(queue_push_wait(c.q, (void *)i, 200 * CAD_NS_PER_MS), 0,
			     "item %lu waits for room instead of being dropped", (unsigned long)i);
	cr_assert_geq(cad_clock_mono_ns() - t0, 90 * CAD_NS_PER_MS, "the producer was held back");
	pthread_join(t, NULL);
	for (int i = 0; i < 6; i++)
		cr_assert_eq(c.taken[i], (uintptr_t)i + 1, "in order");
	queue_free(c.q);
}

Test(queue, a_full_queue_nobody_takes_from_refuses_after_the_wait_then_at_once)
{
	struct queue *q;
	cr_assert_eq(queue_new(&q, 1), 0);
	int64_t t0 = cad_clock_mono_ns();
	cr_assert_eq(queue_push(q, (void *)1), 0);
	cr_assert_eq(queue_push_wait(q, (void *)2, 400 * CAD_NS_PER_MS), -ENOBUFS);
	int64_t t1 = cad_clock_mono_ns();
	cr_assert_geq(t1 - t0, 395 * CAD_NS_PER_MS, "waited for a taker");
	cr_assert_lt(t1 - t0, 2 * CAD_NS_PER_SEC);
	/* Waiting again would take 400 ms; a busy machine may take tens. */
	cr_assert_eq(queue_push_wait(q, (void *)3, 400 * CAD_NS_PER_MS), -ENOBUFS);
	cr_assert_lt(cad_clock_mono_ns() - t1, 200 * CAD_NS_PER_MS,
		     "no taker lately: refused without waiting again");
	void *out;
	cr_assert_eq(queue_pop(q, &out, 0), 0);
	cr_assert_eq(out, (void *)1);
	cr_assert_eq(queue_push_wait(q, (void *)4, 100 * CAD_NS_PER_MS), 0);
	queue_free(q);
}

/* A stream slower than its producer for good: the queue stays full, so
 * after the wait the producer is refused instead of being held back at
 * the consumer's pace. */
Test(queue, a_queue_that_stays_full_stops_holding_producers_back, .timeout = 10)
{
	struct slow_consumer c = {.n = 40, .every_ms = 20};
	cr_assert_eq(queue_new(&c.q, 4), 0);
	pthread_t t;
	pthread_create(&t, NULL, slow_consumer, &c);
	int64_t t0 = cad_clock_mono_ns();
	int refused = 0;
	for (uintptr_t i = 1; i <= 300; i++)
		if (queue_push_wait(c.q, (void *)i, 100 * CAD_NS_PER_MS) == -ENOBUFS)
			refused++;
	int64_t took = cad_clock_mono_ns() - t0;
	queue_close(c.q); /* the consumer takes what is left, then stops */
	pthread_join(t, NULL);
	cr_assert_gt(refused, 250, "refused %d of 300", refused);
	cr_assert_lt(took, 500 * CAD_NS_PER_MS, "held back %ld ms, not at the consumer's pace (800 ms)",
		     (long)(took / CAD_NS_PER_MS));
	queue_free(c.q);
}

static void *waiting_producer(void *arg)
{
	return (void *)(intptr_t)queue_push_wait(arg, (void *)2, 60 * CAD_NS_PER_SEC);
}

static void sleep_ms(long ms)
{
	struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&t, NULL);
}

struct held_producer {
	struct queue *q;
	atomic_bool pushed;
};

static void *held_producer(void *arg)
{
	struct held_producer *p = arg;
	int rc = queue_push_wait(p->q, (void *)9, 60 * CAD_NS_PER_SEC);
	atomic_store(&p->pushed, true);
	return (void *)(intptr_t)rc;
}

/* Each pop takes a few items: waking every waiting producer for each
 * would cost a context switch per producer per pop. */
Test(queue, producers_waiting_on_a_full_queue_go_on_once_a_quarter_is_free)
{
	struct held_producer p = {0};
	cr_assert_eq(queue_new(&p.q, 8), 0);
	for (uintptr_t i = 1; i <= 8; i++)
		cr_assert_eq(queue_push(p.q, (void *)i), 0);
	pthread_t t;
	pthread_create(&t, NULL, held_producer, &p);
	sleep_ms(100); /* the producer waits */
	void *out;
	cr_assert_eq(queue_pop(p.q, &out, 0), 0);
	sleep_ms(200);
	cr_assert_not(atomic_load(&p.pushed), "woken with one slot of eight free");
	cr_assert_eq(queue_pop(p.q, &out, 0), 0);
	for (int i = 0; i < 200 && !atomic_load(&p.pushed); i++)
		sleep_ms(5);
	cr_assert(atomic_load(&p.pushed), "not woken with two slots of eight free");
	void *rc;
	pthread_join(t, &rc);
	cr_assert_eq((intptr_t)rc, 0);
	queue_free(p.q);
}

Test(queue, close_wakes_a_waiting_producer_at_once, .timeout = 10)
{
	struct queue *q;
	cr_assert_eq(queue_new(&q, 1), 0);
	cr_assert_eq(queue_push(q, (void *)1), 0);
	assert_close_wakes(q, waiting_producer);
}

Test(queue, producers_that_wait_are_never_refused_by_busy_consumers, .timeout = 60)
{
	struct shared s = {.wait_ns = 5 * CAD_NS_PER_SEC};
	run_producers_and_consumers(&s, 8);
	cr_assert_eq(s.refused, 0, "a waiting producer always finds room");
	cr_assert_eq(s.taken, (uint64_t)PRODUCERS * PER_PRODUCER);
	cr_assert_eq(s.sum_out, s.sum_in);
	queue_free(s.q);
}

Test(queue, pop_batch_takes_at_most_max_in_order)
{
	struct queue *q;
	cr_assert_eq(queue_new(&q, 8), 0);
	int items[5];
	for (int i = 0; i < 5; i++)
		cr_assert_eq(queue_push(q, &items[i]), 0);
	void *out[4];
	cr_assert_eq(queue_pop_batch(q, out, 3, 0), 3);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(out[i], &items[i]);
	cr_assert_eq(queue_pop_batch(q, out, 4, 0), 2, "only what is there");
	cr_assert_eq(out[0], &items[3]);
	cr_assert_eq(out[1], &items[4]);
	cr_assert_eq(queue_pop_batch(q, out, 4, 0), -ETIMEDOUT);
	queue_close(q);
	cr_assert_eq(queue_pop_batch(q, out, 4, 0), -ESHUTDOWN);
	queue_free(q);
}

/*
 * Registered consumers are not woken for every item: check that none is
 * ever left waiting. Items come one at a time with pauses (each must wake
 * a consumer), in fast runs (the poller takes them), and in bursts (the
 * backlog wakes more consumers), then alone after long silences, when no
 * consumer polls. The consumers wait a minute for work, so an item nobody
 * was woken for waits for the next push or the close, 300 ms or more.
 */
#define PACED_ITEMS 6000
#define LONE_ITEMS 3
#define PACED_CONSUMERS 3

struct paced {
	struct queue *q;
	int64_t pushed_ns[PACED_ITEMS + LONE_ITEMS + 1];
	_Atomic int64_t worst_ns;
	_Atomic uint64_t taken, sum;
};

static void *paced_consumer(void *arg)
{
	struct paced *s = arg;
	queue_consumer_add(s->q);
	void *items[32];
	int n;
	while ((n = queue_pop_batch(s->q, items, 32, 60 * CAD_NS_PER_SEC)) != -ESHUTDOWN) {
		int64_t now = cad_clock_mono_ns();
		for (int i = 0; i < n; i++) {
			uintptr_t k = (uintptr_t)items[i];
			int64_t waited = now - s->pushed_ns[k];
			int64_t worst = atomic_load(&s->worst_ns);
			while (waited > worst && !atomic_compare_exchange_weak(&s->worst_ns, &worst, waited))
				;
			atomic_fetch_add(&s->taken, 1);
			atomic_fetch_add(&s->sum, k);
		}
	}
	queue_consumer_remove(s->q);
	return NULL;
}

static void pause_us(long us)
{
	struct timespec t = {0, us * 1000L};
	nanosleep(&t, NULL);
}

Test(queue, registered_consumers_leave_no_item_waiting, .timeout = 60)
{
	static struct paced s;
	cr_assert_eq(queue_new(&s.q, 4096), 0);
	pthread_t c[PACED_CONSUMERS];
	for (int i = 0; i < PACED_CONSUMERS; i++)
		pthread_create(&c[i], NULL, paced_consumer, &s);
	pause_us(20000);
	uint64_t sum = 0;
	for (uintptr_t k = 1; k <= PACED_ITEMS; k++) {
		s.pushed_ns[k] = cad_clock_mono_ns();
		cr_assert_eq(queue_push(s.q, (void *)k), 0);
		sum += k;
		int phase = (int)(k / 500) % 3;
		if (phase == 0)
			pause_us(k % 7 == 0 ? 3000 : 1500); /* quiet: slower than a poll */
		else if (phase == 1)
			pause_us(100); /* busy: faster than a poll */
		else if (k % 100 == 0)
			pause_us(5000); /* bursts of 100 at once */
	}
	for (uintptr_t k = PACED_ITEMS + 1; k <= PACED_ITEMS + LONE_ITEMS; k++) {
		pause_us(300000);
		s.pushed_ns[k] = cad_clock_mono_ns();
		cr_assert_eq(queue_push(s.q, (void *)k), 0);
		sum += k;
	}
	pause_us(300000);
	queue_close(s.q);
	for (int i = 0; i < PACED_CONSUMERS; i++)
		pthread_join(c[i], NULL);
	cr_assert_eq(s.taken, PACED_ITEMS + LONE_ITEMS);
	cr_assert_eq(s.sum, sum, "every item comes out exactly once");
	cr_assert_lt(s.worst_ns, 200 * CAD_NS_PER_MS, "an item waited %.1f ms",
		     (double)s.worst_ns / 1e6);
	queue_free(s.q);
}

/*
 * A consumer busy in a slow publish is awake, but not coming: an item
 * pushed meanwhile must wake one that sleeps rather than wait for it.
 */
struct busy_pair {
	struct queue *q;
	int64_t pushed_ns[3];
	_Atomic int64_t waited_ns[3];
};

static void *busy_or_sleeping_consumer(void *arg)
{
	struct busy_pair *s = arg;
	queue_consumer_add(s->q);
	void *item;
	while (queue_pop(s->q, &item, 10 * CAD_NS_PER_SEC) == 0) {
		uintptr_t k = (uintptr_t)item;
		atomic_store(&s->waited_ns[k], cad_clock_mono_ns() - s->pushed_ns[k]);
		if (k == 1)
			pause_us(999999); /* busy: the first item takes a second */
	}
	queue_consumer_remove(s->q);
	return NULL;
}

Test(queue, a_consumer_busy_in_a_slow_publish_does_not_hold_up_the_next_item)
{
	static struct busy_pair s;
	cr_assert_eq(queue_new(&s.q, 16), 0);
	pthread_t c[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&c[i], NULL, busy_or_sleeping_consumer, &s);
	pause_us(50000);
	s.pushed_ns[1] = cad_clock_mono_ns();
	cr_assert_eq(queue_push(s.q, (void *)1), 0);
	pause_us(150000);
	s.pushed_ns[2] = cad_clock_mono_ns();
	cr_assert_eq(queue_push(s.q, (void *)2), 0);
	pause_us(300000);
	int64_t waited = atomic_load(&s.waited_ns[2]);
	queue_close(s.q);
	for (int i = 0; i < 2; i++)
		pthread_join(c[i], NULL);
	cr_assert(waited > 0 && waited < 100 * CAD_NS_PER_MS,
		  "the second item was taken %.1f ms after its push (0: not within 300 ms)",
		  (double)waited / 1e6);
	queue_free(s.q);
}
