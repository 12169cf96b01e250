/* SPDX-License-Identifier: Apache-2.0 */
/* Spent NATS messages, destroyed a few at a time (see nats_msg_batch.h). */
#include "nats_msg_batch.h"

#include <string.h>

void nats_msg_batch_init(struct nats_msg_batch *b)
{
	memset(b, 0, sizeof(*b));
	pthread_mutex_init(&b->lock, NULL);
}

/* Empty the batch into `out`. Lock held. The caller destroys them once
 * it has released the lock, so that other putters need not wait. */
static unsigned nats_msg_batch_take_locked(struct nats_msg_batch *b, natsMsg **out)
{
	unsigned n = b->n;
	memcpy(out, b->held, n * sizeof(*out));
	b->n = 0;
	return n;
}

static void nats_msg_batch_destroy_all(natsMsg **msgs, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		natsMsg_Destroy(msgs[i]);
}

void nats_msg_batch_put(struct nats_msg_batch *b, natsMsg *m)
{
	natsMsg *full[NATS_MSG_BATCH_LEN];
	unsigned n = 0;

	if (!m)
		return;
	pthread_mutex_lock(&b->lock);
	b->held[b->n++] = m;
	if (b->n == NATS_MSG_BATCH_LEN)
		n = nats_msg_batch_take_locked(b, full);
	pthread_mutex_unlock(&b->lock);
	nats_msg_batch_destroy_all(full, n);
}

void nats_msg_batch_flush(struct nats_msg_batch *b)
{
	natsMsg *held[NATS_MSG_BATCH_LEN];

	pthread_mutex_lock(&b->lock);
	unsigned n = nats_msg_batch_take_locked(b, held);
	pthread_mutex_unlock(&b->lock);
	nats_msg_batch_destroy_all(held, n);
}

void nats_msg_batch_fini(struct nats_msg_batch *b)
{
	nats_msg_batch_flush(b);
	pthread_mutex_destroy(&b->lock);
}
