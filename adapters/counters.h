/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counters labelled by a reason ("malformed", "queue_full", ...). Labels
 * come from modules as short stable strings; the set grows on first use
 * and never shrinks, so readers can walk it without a lock.
 */
#ifndef CAD_COUNTERS_H
#define CAD_COUNTERS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#define COUNTERS_MAX_LABELS 32
#define COUNTERS_OTHER "other" /* where labels go once the set is full */

struct labelled_counter {
	char label[48];
	_Atomic uint64_t value;
};

struct counter_set {
	pthread_mutex_t grow; /* serialises adding a label */
	_Atomic size_t used;
	struct labelled_counter slot[COUNTERS_MAX_LABELS];
};

void counters_init(struct counter_set *s);
void counters_destroy(struct counter_set *s);
void counters_add(struct counter_set *s, const char *label, uint64_t n);
uint64_t counters_get(struct counter_set *s, const char *label);
uint64_t counters_total(struct counter_set *s);

/* Calls fn for each label in the order they first appeared. */
void counters_each(struct counter_set *s, void (*fn)(const char *label, uint64_t value, void *arg),
		   void *arg);

#endif
