/* SPDX-License-Identifier: Apache-2.0 */
/* Spent NATS messages, destroyed a few at a time (see nats_msg_batch.h). */
#include "nats_msg_batch.h"

#include <string.h>

void nats_msg_batch_init(struct nats_msg_batch *b)
{
	memset(b, 0, sizeof(*b));
	pthread_mutex_init(&b->lock, NULL);
}

static void destroy_all(natsMsg **msgs, unsigned n)
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
	if (b->n == NATS_MSG_BATCH_LEN) {
		/* Destroyed outside the lock: the other putters need not wait. */
		n = b->n;
		memcpy(full, b->held, sizeof(full));
		b->n = 0;
	}
	pthread_mutex_unlock(&b->lock);
	destroy_all(full, n);
}

void nats_msg_batch_flush(struct nats_msg_batch *b)
{
	natsMsg *held[NATS_MSG_BATCH_LEN];
	unsigned n;

	pthread_mutex_lock(&b->lock);
	n = b->n;
	memcpy(held, b->held, n * sizeof(*held));
	b->n = 0;
	pthread_mutex_unlock(&b->lock);
	destroy_all(held, n);
}

void nats_msg_batch_fini(struct nats_msg_batch *b)
{
	nats_msg_batch_flush(b);
	pthread_mutex_destroy(&b->lock);
}
