/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Spent NATS messages, destroyed a few at a time.
 *
 * natsMsg_Destroy() hands each message to cnats' one garbage-collector
 * thread and wakes it whenever its list was empty: at a steady 10000
 * messages a second that is more than one wake-up per message. Holding
 * spent messages and destroying them NATS_MSG_BATCH_LEN at a time wakes
 * the collector about once a batch instead, for at most that many
 * messages of memory.
 *
 * Thread-safe. Flush before the NATS library is closed.
 */
#ifndef CAD_NATS_MSG_BATCH_H
#define CAD_NATS_MSG_BATCH_H

#include <pthread.h>

#include <nats/nats.h>

#define NATS_MSG_BATCH_LEN 16

struct nats_msg_batch {
	pthread_mutex_t lock;
	unsigned n;
	natsMsg *held[NATS_MSG_BATCH_LEN];
};

void nats_msg_batch_init(struct nats_msg_batch *b);
/* Take `m` (NULL is ignored); destroy the batch once it is full. */
void nats_msg_batch_put(struct nats_msg_batch *b, natsMsg *m);
/* Destroy every message held now. */
void nats_msg_batch_flush(struct nats_msg_batch *b);
/* Flush, then destroy the batch's lock. */
void nats_msg_batch_fini(struct nats_msg_batch *b);

#endif
