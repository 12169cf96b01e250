/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Concurrency & locking: a slot's label is written once, before `used` is
 * raised past it with release ordering; readers load `used` with acquire
 * ordering and only look at slots below it. Values are relaxed atomics.
 */
#include "counters.h"

#include <stdio.h>
#include <string.h>

#include "label.h"

void counters_init(struct counter_set *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->grow, NULL);
}

void counters_destroy(struct counter_set *s)
{
	pthread_mutex_destroy(&s->grow);
}

static struct labelled_counter *find(struct counter_set *s, size_t used, const char *label)
{
	for (size_t i = 0; i < used; i++)
		if (strcmp(s->slot[i].label, label) == 0)
			return &s->slot[i];
	return NULL;
}

static struct labelled_counter *find_or_add(struct counter_set *s, const char *name)
{
	char label[sizeof(s->slot[0].label)];
	label_copy(label, sizeof(label), name);
	size_t used = atomic_load_explicit(&s->used, memory_order_acquire);
	struct labelled_counter *c = find(s, used, label);
	if (c)
		return c;
	pthread_mutex_lock(&s->grow);
	used = atomic_load_explicit(&s->used, memory_order_acquire);
	c = find(s, used, label);
	if (!c) {
		if (used == COUNTERS_MAX_LABELS) {
			c = find(s, used, COUNTERS_OTHER);
			if (!c)
				c = &s->slot[used - 1]; /* the last slot is kept for "other" */
		} else {
			c = &s->slot[used];
			label_copy(c->label, sizeof(c->label),
				   used == COUNTERS_MAX_LABELS - 1 ? COUNTERS_OTHER : label);
			atomic_store_explicit(&s->used, used + 1, memory_order_release);
		}
	}
	pthread_mutex_unlock(&s->grow);
	return c;
}

void counters_add(struct counter_set *s, const char *label, uint64_t n)
{
	atomic_fetch_add_explicit(&find_or_add(s, label)->value, n, memory_order_relaxed);
}

uint64_t counters_get(struct counter_set *s, const char *name)
{
	char label[sizeof(s->slot[0].label)];
	label_copy(label, sizeof(label), name);
	size_t used = atomic_load_explicit(&s->used, memory_order_acquire);
	struct labelled_counter *c = find(s, used, label);
	return c ? atomic_load_explicit(&c->value, memory_order_relaxed) : 0;
}

uint64_t counters_total(struct counter_set *s)
{
	uint64_t t = 0;
	size_t used = atomic_load_explicit(&s->used, memory_order_acquire);
	for (size_t i = 0; i < used; i++)
		t += atomic_load_explicit(&s->slot[i].value, memory_order_relaxed);
	return t;
}

void counters_each(struct counter_set *s, void (*fn)(const char *, uint64_t, void *), void *arg)
{
	size_t used = atomic_load_explicit(&s->used, memory_order_acquire);
	for (size_t i = 0; i < used; i++)
		fn(s->slot[i].label, atomic_load_explicit(&s->slot[i].value, memory_order_relaxed),
		   arg);
}
