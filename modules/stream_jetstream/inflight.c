/* SPDX-License-Identifier: Apache-2.0 */
#include "inflight.h"

#include <errno.h>
#include <stdlib.h>

static size_t inflight_slot_of(const struct inflight *t, uint64_t token)
{
	/* Fibonacci hashing: consecutive tokens in consecutive slots would
	 * make one long run, which every deletion walks to its end. */
	return (size_t)((token * 11400714819323198485ull) >> t->shift);
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
	t->shift = 64;
	for (size_t c = cap; c > 1; c >>= 1)
		t->shift--;
	t->count = 0;
	return 0;
}

void inflight_destroy(struct inflight *t)
{
	free(t->slots);
	t->slots = NULL;
}

struct inflight_entry *inflight_put(struct inflight *t, uint64_t token, struct cad_msg *msg)
{
	size_t i = inflight_slot_of(t, token);
	while (t->slots[i].token)
		i = (i + 1) & t->mask;
	t->slots[i] = (struct inflight_entry){.token = token, .pw.msg = msg};
	t->count++;
	return &t->slots[i];
}

struct inflight_entry *inflight_get(struct inflight *t, uint64_t token)
{
	for (size_t i = inflight_slot_of(t, token); t->slots[i].token; i = (i + 1) & t->mask)
		if (t->slots[i].token == token)
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
		if (!t->slots[i].token)
			break;
		size_t home = inflight_slot_of(t, t->slots[i].token);
		/* Move the entry into the hole when its home is not in (hole, i]. */
		if (((i - home) & t->mask) >= ((i - hole) & t->mask)) {
			t->slots[hole] = t->slots[i];
			hole = i;
		}
	}
	t->slots[hole] = (struct inflight_entry){0};
	t->count--;
}
