/* SPDX-License-Identifier: Apache-2.0 */
/* Spent NATS messages destroyed a batch at a time. Each message the tests
 * make carries its number, and natsMsg_Destroy() is wrapped to count, by
 * number, how often each is destroyed. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nats_msg_batch.h"

#define PUTTERS 4
#define PUTS 5003 /* not a multiple of the batch: some stay held */
#define NUMBERED (PUTTERS * PUTS)

static _Atomic int destroyed[NUMBERED];

/* Defined here, this natsMsg_Destroy() is the one the batch calls: count
 * a numbered message, then hand it to the library's own. */
void natsMsg_Destroy(natsMsg *m)
{
	static void (*real)(natsMsg *);
	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "natsMsg_Destroy");
	if (m && strcmp(natsMsg_GetSubject(m), "numbered") == 0) {
		int k = atoi(natsMsg_GetData(m));
		if (k >= 0 && k < NUMBERED)
			atomic_fetch_add(&destroyed[k], 1);
	}
	real(m);
}

static natsMsg *numbered(int k)
{
	char data[16];
	snprintf(data, sizeof(data), "%d", k);
	natsMsg *m = NULL;
	cr_assert_eq(natsMsg_Create(&m, "numbered", NULL, data, (int)strlen(data) + 1), NATS_OK);
	return m;
}

/* Messages 0 to n - 1: how many were destroyed once; fails on any twice. */
static int destroyed_once(int n)
{
	int once = 0;
	for (int k = 0; k < n; k++) {
		int d = atomic_load(&destroyed[k]);
		cr_assert_leq(d, 1, "message %d destroyed %d times", k, d);
		once += d;
	}
	return once;
}

static void open_library(void)
{
	cr_assert_eq(nats_Open(-1), NATS_OK);
}

TestSuite(nats_msg_batch, .init = open_library);

Test(nats_msg_batch, holds_messages_until_the_batch_is_full)
{
	struct nats_msg_batch b;
	nats_msg_batch_init(&b);
	int k;
	for (k = 0; k < NATS_MSG_BATCH_LEN - 1; k++) {
		nats_msg_batch_put(&b, numbered(k));
		cr_assert_eq(b.n, (unsigned)k + 1, "held %u after %d puts", b.n, k + 1);
		cr_assert_eq(destroyed_once(k + 1), 0, "held, not destroyed");
	}
	nats_msg_batch_put(&b, numbered(k++));
	cr_assert_eq(b.n, 0, "a full batch is destroyed at once, %u still held", b.n);
	cr_assert_eq(destroyed_once(k), NATS_MSG_BATCH_LEN, "each of the batch destroyed once");
	nats_msg_batch_put(&b, numbered(k++));
	cr_assert_eq(b.n, 1);
	cr_assert_eq(destroyed_once(k), NATS_MSG_BATCH_LEN);
	nats_msg_batch_fini(&b);
	cr_assert_eq(destroyed_once(k), k, "the last one at the end");
}

Test(nats_msg_batch, flush_destroys_what_is_held_and_null_is_ignored)
{
	struct nats_msg_batch b;
	nats_msg_batch_init(&b);
	nats_msg_batch_put(&b, NULL);
	cr_assert_eq(b.n, 0);
	for (int k = 0; k < 5; k++)
		nats_msg_batch_put(&b, numbered(k));
	nats_msg_batch_flush(&b);
	cr_assert_eq(b.n, 0);
	cr_assert_eq(destroyed_once(5), 5, "the flush destroyed each once");
	/* Still usable after a flush. */
	nats_msg_batch_put(&b, numbered(5));
	cr_assert_eq(b.n, 1);
	cr_assert_eq(destroyed_once(6), 5);
	nats_msg_batch_fini(&b);
	cr_assert_eq(destroyed_once(6), 6);
}

struct putter {
	struct nats_msg_batch *b;
	int first; /* puts messages first .. first + PUTS - 1 */
};

static void *put_many(void *arg)
{
	struct putter *p = arg;
	for (int k = p->first; k < p->first + PUTS; k++)
		nats_msg_batch_put(p->b, numbered(k));
	return NULL;
}

Test(nats_msg_batch, concurrent_putters_lose_and_repeat_nothing)
{
	struct nats_msg_batch b;
	pthread_t t[PUTTERS];
	struct putter p[PUTTERS];
	nats_msg_batch_init(&b);
	for (int i = 0; i < PUTTERS; i++) {
		p[i] = (struct putter){.b = &b, .first = i * PUTS};
		cr_assert_eq(pthread_create(&t[i], NULL, put_many, &p[i]), 0);
	}
	for (int i = 0; i < PUTTERS; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(b.n, NUMBERED % NATS_MSG_BATCH_LEN);
	cr_assert_eq(destroyed_once(NUMBERED), NUMBERED - (int)b.n,
		     "all but the ones held are destroyed, none twice");
	nats_msg_batch_fini(&b);
	for (int k = 0; k < NUMBERED; k++)
		cr_assert_eq(atomic_load(&destroyed[k]), 1, "message %d destroyed %d times", k,
			     atomic_load(&destroyed[k]));
}
