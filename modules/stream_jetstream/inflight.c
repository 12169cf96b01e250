/* SPDX-License-Identifier: Apache-2.0 */
#include "inflight.h"

#include <errno.h>
#include <stdlib.h>

static size_t slot_of(const struct inflight *t, const void *key)
{
	/* Fibonacci hashing spreads the aligned pointer bits. */
	return (size_t)(((uintptr_t)key * 11400714819323198485ull) >> 20) & t->mask;
}

int inflight_init(struct inflight *t, size_t max)
{
	size_t cap = 16;
	while (cap < max * 2)
		cap *= 2;
	t->slots = calloc(cap, sizeof(*t->slots));
	if (!t->slots)
		return -ENOMEM;
	t->mask = cap - 1;
	t->count = 0;
	return 0;
}

void inflight_destroy(struct inflight *t)
{
	free(t->slots);
	t->slots = NULL;
}

struct inflight_entry *inflight_put(struct inflight *t, const void *key, struct cad_msg *msg)
{
	size_t i = slot_of(t, key);
	while (t->slots[i].key)
		i = (i + 1) & t->mask;
	t->slots[i] = (struct inflight_entry){key, msg, 0};
	t->count++;
	return &t->slots[i];
}

struct inflight_entry *inflight_get(struct inflight *t, const void *key)
{
	for (size_t i = slot_of(t, key); t->slots[i].key; i = (i + 1) & t->mask)
		if (t->slots[i].key == key)
			return &t->slots[i];
	return NULL;
}

/* Backward-shift deletion keeps every probe chain unbroken without
 * tombstones. */
void inflight_del(struct inflight *t, struct inflight_entry *e)
{
	size_t hole = (size_t)(e - t->slots);
	size_t i = hole;
	for (;;) {
		i = (i + 1) & t->mask;
		if (!t->slots[i].key)
			break;
		size_t home = slot_of(t, t->slots[i].key);
		/* Move the entry into the hole when its home is not in (hole, i]. */
		if (((i - home) & t->mask) >= ((i - hole) & t->mask)) {
			t->slots[hole] = t->slots[i];
			hole = i;
		}
	}
	t->slots[hole].key = NULL;
	t->slots[hole].msg = NULL;
	t->count--;
}
