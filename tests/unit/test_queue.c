/* SPDX-License-Identifier: Apache-2.0 */
/* The bounded queue: capacity, order, close, and many threads at once. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

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
	queue_free(q);
}

/* Whether thread `tid` of this process sleeps (state S): a waiter blocked
 * on a condition. One that runs, or has ended, does not. */
static bool thread_sleeps(pid_t tid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *end = strrchr(buf, ')'); /* the name may hold spaces */
	return end && end[1] == ' ' && end[2] == 'S';
}

/* A thread that calls one of the queue's waits and records its thread id
 * first, so that the test can see when it blocks. */
struct waiter {
	struct queue *q;
	void *item;
	int64_t wait_ns;
	_Atomic pid_t tid;
	atomic_bool done;
	int rc;
};

/* Wait (10 s at most) until w's thread has blocked or has returned. */
static void wait_blocked_or_done(struct waiter *w)
{
	for (int i = 0; i < 10000; i++) {
		pid_t tid = atomic_load(&w->tid);
		if (atomic_load(&w->done) || (tid && thread_sleeps(tid)))
			return;
		struct timespec pause = {0, 1000000L};
		nanosleep(&pause, NULL);
	}
	cr_assert_fail("the waiter neither blocked nor returned in 10 s");
}

static void *waiter_pop(void *arg)
{
	struct waiter *w = arg;
	atomic_store(&w->tid, gettid());
	w->rc = queue_pop(w->q, &w->item, w->wait_ns);
	atomic_store(&w->done, true);
	return NULL;
}

static void *waiter_push(void *arg)
{
	struct waiter *w = arg;
	atomic_store(&w->tid, gettid());
	w->rc = queue_push_wait(w->q, w->item, w->wait_ns);
	atomic_store(&w->done, true);
	return NULL;
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

#define ITEMS (PRODUCERS * PER_PRODUCER)

/* Items are numbered 1 to ITEMS, each pushed once; what became of each
 * is counted by its number. */
struct shared {
	struct queue *q;
	int64_t wait_ns; /* what producers pass to queue_push_wait() */
	_Atomic int producers;
	_Atomic uint64_t accepted, refused, taken;
	_Atomic uint8_t accepted_item[ITEMS + 1], taken_item[ITEMS + 1];
};

static void *producer(void *arg)
{
	struct shared *s = arg;
	uintptr_t first = (uintptr_t)atomic_fetch_add(&s->producers, 1) * PER_PRODUCER + 1;
	for (uintptr_t k = first; k < first + PER_PRODUCER; k++) {
		if (queue_push_wait(s->q, (void *)k, s->wait_ns) == 0) {
			atomic_fetch_add(&s->accepted, 1);
			atomic_store(&s->accepted_item[k], 1);
		} else {
			atomic_fetch_add(&s->refused, 1);
		}
	}
	return NULL;
}

/* Every accepted item taken exactly once, no refused one taken. */
static void assert_each_accepted_item_taken_once(struct shared *s)
{
	for (int k = 1; k <= ITEMS; k++)
		cr_assert_eq(atomic_load(&s->taken_item[k]), atomic_load(&s->accepted_item[k]),
			     "item %d: accepted %d times, taken %d times", k,
			     atomic_load(&s->accepted_item[k]), atomic_load(&s->taken_item[k]));
}

static void *consumer(void *arg)
{
	struct shared *s = arg;
	void *item;
	int rc;
	while ((rc = queue_pop(s->q, &item, 10 * CAD_NS_PER_MS)) != -ESHUTDOWN) {
		if (rc == 0) {
			atomic_fetch_add(&s->taken, 1);
			atomic_fetch_add(&s->taken_item[(uintptr_t)item], 1);
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
	static struct shared s;
	run_producers_and_consumers(&s, 64);
	cr_assert_eq(s.accepted + s.refused, (uint64_t)ITEMS);
	cr_assert_eq(s.taken, s.accepted, "taken %lu, accepted %lu", (unsigned long)s.taken,
		     (unsigned long)s.accepted);
	assert_each_accepted_item_taken_once(&s);
	cr_assert_gt(s.accepted, 0);
	queue_free(s.q);
}

/* Run `wait` on q for a minute, close q once it blocks: it must return
 * -ESHUTDOWN, long before its minute (the test's timeout is 10 s). Frees q. */
static void assert_close_wakes(struct queue *q, void *(*wait)(void *))
{
	struct waiter w = {.q = q, .item = (void *)2, .wait_ns = 60 * CAD_NS_PER_SEC};
	pthread_t t;
	pthread_create(&t, NULL, wait, &w);
	wait_blocked_or_done(&w);
	cr_assert_not(atomic_load(&w.done), "returned %d before the close", w.rc);
	queue_close(q);
	pthread_join(t, NULL);
	cr_assert_eq(w.rc, -ESHUTDOWN);
	queue_free(q);
}

Test(queue, close_wakes_a_waiting_consumer_at_once, .timeout = 10)
{
	struct queue *q;
	cr_assert_eq(queue_new(&q, 8), 0);
	assert_close_wakes(q, waiter_pop);
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
		cr_assert_eq(queue_push_wait(c.q, (void *)i, 5 * CAD_NS_PER_SEC), 0,
			     "item %lu waits for room instead of being dropped", (unsigned long)i);
	cr_assert_geq(cad_clock_mono_ns() - t0, 90 * CAD_NS_PER_MS, "the producer was held back");
	pthread_join(t, NULL);
	for (int i = 0; i < 6; i++)
		cr_assert_eq(c.taken[i], (uintptr_t)i + 1, "in order");
	queue_free(c.q);
}

/* Push `item` on q, full for longer than wait_ns already, from another
 * thread, and take an item as soon as that push has blocked or returned:
 * a push that waited again would get that room. Asserts that it was
 * refused without waiting, and takes the item back out of the queue. */
static void assert_refused_without_waiting(struct queue *q, void *item, int64_t wait_ns)
{
	struct waiter w = {.q = q, .item = item, .wait_ns = wait_ns};
	pthread_t t;
	pthread_create(&t, NULL, waiter_push, &w);
	wait_blocked_or_done(&w);
	void *out;
	cr_assert_eq(queue_pop(q, &out, 0), 0);
	cr_assert_neq(out, item);
	pthread_join(t, NULL);
	cr_assert_eq(w.rc, -ENOBUFS, "no taker lately: refused without waiting again (%d)", w.rc);
	cr_assert_eq(queue_push(q, out), 0, "the item taken goes back");
}

Test(queue, a_full_queue_nobody_takes_from_refuses_after_the_wait_then_at_once)
{
	struct queue *q;
	cr_assert_eq(queue_new(&q, 1), 0);
	int64_t t0 = cad_clock_mono_ns();
	cr_assert_eq(queue_push(q, (void *)1), 0);
	cr_assert_eq(queue_push_wait(q, (void *)2, 400 * CAD_NS_PER_MS), -ENOBUFS);
	cr_assert_geq(cad_clock_mono_ns() - t0, 395 * CAD_NS_PER_MS, "waited for a taker");
	assert_refused_without_waiting(q, (void *)3, 400 * CAD_NS_PER_MS);
	void *out;
	cr_assert_eq(queue_pop(q, &out, 0), 0);
	cr_assert_eq(out, (void *)1);
	cr_assert_eq(queue_push_wait(q, (void *)4, 100 * CAD_NS_PER_MS), 0);
	queue_free(q);
}

/* A stream slower than its producer for good: the consumer takes an item
 * now and then, the queue stays full, so after the wait the producer is
 * refused at once instead of being held back at the consumer's pace. */
Test(queue, a_queue_that_stays_full_stops_holding_producers_back, .timeout = 10)
{
	struct queue *q;
	cr_assert_eq(queue_new(&q, 4), 0);
	int64_t t0 = cad_clock_mono_ns();
	for (uintptr_t i = 1; i <= 4; i++)
		cr_assert_eq(queue_push(q, (void *)i), 0);
	cr_assert_eq(queue_push_wait(q, (void *)5, 300 * CAD_NS_PER_MS), -ENOBUFS);
	cr_assert_geq(cad_clock_mono_ns() - t0, 295 * CAD_NS_PER_MS, "the producer was held back");
	for (uintptr_t i = 6; i < 12; i += 2) {
		void *out;
		cr_assert_eq(queue_pop(q, &out, 0), 0, "the consumer takes one");
		cr_assert_eq(queue_push_wait(q, (void *)i, 300 * CAD_NS_PER_MS), 0,
			     "into its room");
		assert_refused_without_waiting(q, (void *)(i + 1), 300 * CAD_NS_PER_MS);
	}
	queue_free(q);
}

/* Each pop takes a few items: waking every waiting producer for each
 * would cost a context switch per producer per pop. A pop that wakes a
 * producer makes it runnable before the pop returns, so a producer still
 * asleep after the pop was not woken. */
Test(queue, producers_waiting_on_a_full_queue_go_on_once_a_quarter_is_free)
{
	struct queue *q;
	cr_assert_eq(queue_new(&q, 8), 0);
	for (uintptr_t i = 1; i <= 8; i++)
		cr_assert_eq(queue_push(q, (void *)i), 0);
	struct waiter w = {.q = q, .item = (void *)9, .wait_ns = 60 * CAD_NS_PER_SEC};
	pthread_t t;
	pthread_create(&t, NULL, waiter_push, &w);
	wait_blocked_or_done(&w);
	cr_assert_not(atomic_load(&w.done), "a full queue holds the producer");
	void *out;
	cr_assert_eq(queue_pop(q, &out, 0), 0);
	bool done = atomic_load(&w.done);
	cr_assert(!done && thread_sleeps(atomic_load(&w.tid)), "woken with one slot of eight free");
	cr_assert_eq(queue_pop(q, &out, 0), 0);
	pthread_join(t, NULL);
	cr_assert_eq(w.rc, 0, "not woken with two slots of eight free: refused after its minute");
	queue_free(q);
}

Test(queue, close_wakes_a_waiting_producer_at_once, .timeout = 10)
{
	struct queue *q;
	cr_assert_eq(queue_new(&q, 1), 0);
	cr_assert_eq(queue_push(q, (void *)1), 0);
	assert_close_wakes(q, waiter_push);
}

Test(queue, producers_that_wait_are_never_refused_by_busy_consumers, .timeout = 60)
{
	static struct shared s = {.wait_ns = 5 * CAD_NS_PER_SEC};
	run_producers_and_consumers(&s, 8);
	cr_assert_eq(s.refused, 0, "a waiting producer always finds room");
	cr_assert_eq(s.taken, (uint64_t)ITEMS);
	assert_each_accepted_item_taken_once(&s);
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
 * was woken for stays in the queue until the next push or the close: at
 * the end of the runs and after each lone item, every item must be taken
 * before anything else is pushed.
 */
#define PACED_ITEMS 6000
#define LONE_ITEMS 3
#define PACED_CONSUMERS 3

struct paced {
	struct queue *q;
	_Atomic uint64_t taken;
	_Atomic uint8_t taken_item[PACED_ITEMS + LONE_ITEMS + 1];
};

static void *paced_consumer(void *arg)
{
	struct paced *s = arg;
	queue_consumer_add(s->q);
	void *items[32];
	int n;
	while ((n = queue_pop_batch(s->q, items, 32, 60 * CAD_NS_PER_SEC)) != -ESHUTDOWN) {
		for (int i = 0; i < n; i++) {
			atomic_fetch_add(&s->taken_item[(uintptr_t)items[i]], 1);
			atomic_fetch_add(&s->taken, 1);
		}
	}
	queue_consumer_remove(s->q);
	return NULL;
}

static void pause_us(long us)
{
	struct timespec t = {us / 1000000L, (us % 1000000L) * 1000L};
	nanosleep(&t, NULL);
}

/* Wait until the consumers have taken n items, with nothing pushed
 * meanwhile; 10 s at most, well short of their minute. */
static void assert_all_taken(struct paced *s, uint64_t n)
{
	for (int i = 0; i < 10000 && atomic_load(&s->taken) < n; i++)
		pause_us(1000);
	cr_assert_eq(atomic_load(&s->taken), n, "an item was left waiting: %lu of %lu taken",
		     (unsigned long)atomic_load(&s->taken), (unsigned long)n);
}

Test(queue, registered_consumers_leave_no_item_waiting, .timeout = 60)
{
	static struct paced s;
	cr_assert_eq(queue_new(&s.q, 4096), 0);
	pthread_t c[PACED_CONSUMERS];
	for (int i = 0; i < PACED_CONSUMERS; i++)
		pthread_create(&c[i], NULL, paced_consumer, &s);
	pause_us(20000);
	for (uintptr_t k = 1; k <= PACED_ITEMS; k++) {
		cr_assert_eq(queue_push(s.q, (void *)k), 0);
		int phase = (int)(k / 500) % 3;
		if (phase == 0)
			pause_us(k % 7 == 0 ? 3000 : 1500); /* quiet: slower than a poll */
		else if (phase == 1)
			pause_us(100); /* busy: faster than a poll */
		else if (k % 100 == 0)
			pause_us(5000); /* bursts of 100 at once */
	}
	assert_all_taken(&s, PACED_ITEMS);
	for (uintptr_t k = PACED_ITEMS + 1; k <= PACED_ITEMS + LONE_ITEMS; k++) {
		pause_us(300000); /* a silence: the consumers stop polling */
		cr_assert_eq(queue_push(s.q, (void *)k), 0);
		assert_all_taken(&s, k);
	}
	queue_close(s.q);
	for (int i = 0; i < PACED_CONSUMERS; i++)
		pthread_join(c[i], NULL);
	cr_assert_eq(s.taken, PACED_ITEMS + LONE_ITEMS);
	for (int k = 1; k <= PACED_ITEMS + LONE_ITEMS; k++)
		cr_assert_eq(atomic_load(&s.taken_item[k]), 1, "item %d taken %d times", k,
			     atomic_load(&s.taken_item[k]));
	queue_free(s.q);
}

/*
 * A consumer busy in a slow publish is awake, but not coming: an item
 * pushed meanwhile must wake one that sleeps rather than wait for it. The
 * busy one's publish lasts until the test ends it, so the second item
 * can only be taken by the other consumer.
 */
struct busy_pair {
	struct queue *q;
	atomic_bool publish_done;
	_Atomic int taken_by[3]; /* which consumer (1 or 2) took item k */
	_Atomic int next_id;
};

static void *busy_or_sleeping_consumer(void *arg)
{
	struct busy_pair *s = arg;
	int id = atomic_fetch_add(&s->next_id, 1) + 1;
	queue_consumer_add(s->q);
	void *item;
	while (queue_pop(s->q, &item, 60 * CAD_NS_PER_SEC) == 0) {
		uintptr_t k = (uintptr_t)item;
		atomic_store(&s->taken_by[k], id);
		while (k == 1 && !atomic_load(&s->publish_done))
			pause_us(1000); /* busy: the first item's publish */
	}
	queue_consumer_remove(s->q);
	return NULL;
}

/* Wait (10 s at most, well short of the consumers' minute) until item k
 * is taken; by which consumer. */
static int taker_of(struct busy_pair *s, int k)
{
	for (int i = 0; i < 10000 && !atomic_load(&s->taken_by[k]); i++)
		pause_us(1000);
	return atomic_load(&s->taken_by[k]);
}

Test(queue, a_consumer_busy_in_a_slow_publish_does_not_hold_up_the_next_item)
{
	static struct busy_pair s;
	cr_assert_eq(queue_new(&s.q, 16), 0);
	pthread_t c[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&c[i], NULL, busy_or_sleeping_consumer, &s);
	pause_us(50000);
	cr_assert_eq(queue_push(s.q, (void *)1), 0);
	int busy = taker_of(&s, 1);
	cr_assert(busy, "the first item is taken");
	pause_us(150000); /* busy for longer than a poll: it is not coming */
	cr_assert_eq(queue_push(s.q, (void *)2), 0);
	int other = taker_of(&s, 2);
	atomic_store(&s.publish_done, true);
	queue_close(s.q);
	for (int i = 0; i < 2; i++)
		pthread_join(c[i], NULL);
	cr_assert(other && other != busy, "the second item waited for the busy consumer");
	queue_free(s.q);
}
