/* SPDX-License-Identifier: Apache-2.0 */
/* Spent NATS messages destroyed a batch at a time. Under the sanitizers a
 * message destroyed twice or never is reported at exit. */
#include <criterion/criterion.h>
#include <pthread.h>

#include "nats_msg_batch.h"

static void open_library(void)
{
	cr_assert_eq(nats_Open(-1), NATS_OK);
}

static natsMsg *message(void)
{
	natsMsg *m = NULL;
	cr_assert_eq(natsMsg_Create(&m, "spent", NULL, "payload", 7), NATS_OK);
	return m;
}

TestSuite(nats_msg_batch, .init = open_library);

Test(nats_msg_batch, holds_messages_until_the_batch_is_full)
{
	struct nats_msg_batch b;
	nats_msg_batch_init(&b);
	for (unsigned i = 1; i < NATS_MSG_BATCH_LEN; i++) {
		nats_msg_batch_put(&b, message());
		cr_assert_eq(b.n, i, "held %u after %u puts", b.n, i);
	}
	nats_msg_batch_put(&b, message());
	cr_assert_eq(b.n, 0, "a full batch is destroyed at once, %u still held", b.n);
	nats_msg_batch_put(&b, message());
	cr_assert_eq(b.n, 1);
	nats_msg_batch_fini(&b);
}

Test(nats_msg_batch, flush_destroys_what_is_held_and_null_is_ignored)
{
	struct nats_msg_batch b;
	nats_msg_batch_init(&b);
	nats_msg_batch_put(&b, NULL);
	cr_assert_eq(b.n, 0);
	for (int i = 0; i < 5; i++)
		nats_msg_batch_put(&b, message());
	nats_msg_batch_flush(&b);
	cr_assert_eq(b.n, 0);
	/* Still usable after a flush. */
	nats_msg_batch_put(&b, message());
	cr_assert_eq(b.n, 1);
	nats_msg_batch_fini(&b);
}

#define PUTTERS 4
#define PUTS 5003 /* not a multiple of the batch: some stay held */

static void *put_many(void *arg)
{
	struct nats_msg_batch *b = arg;
	for (int i = 0; i < PUTS; i++)
		nats_msg_batch_put(b, message());
	return NULL;
}

Test(nats_msg_batch, concurrent_putters_lose_and_repeat_nothing)
{
	struct nats_msg_batch b;
	pthread_t t[PUTTERS];
	nats_msg_batch_init(&b);
	for (int i = 0; i < PUTTERS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, put_many, &b), 0);
	for (int i = 0; i < PUTTERS; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(b.n, (PUTTERS * PUTS) % NATS_MSG_BATCH_LEN);
	nats_msg_batch_fini(&b);
}
