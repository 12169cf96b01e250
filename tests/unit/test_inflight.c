/* SPDX-License-Identifier: Apache-2.0 */
/* The JetStream module's table of unacknowledged publishes, keyed by the
 * token in each publish's reply subject. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "inflight.h"

/* Distinct fake messages: the table only stores the pointer. */
static struct cad_msg *msg_of(uint64_t token)
{
	return (struct cad_msg *)(uintptr_t)(token * 16);
}

Test(inflight, every_entry_is_found_by_its_token_until_deleted)
{
	struct inflight t;
	cr_assert_eq(inflight_init(&t, 100), 0);
	for (uint64_t k = 1; k <= 100; k++)
		inflight_put(&t, k, msg_of(k));
	cr_assert_eq(t.count, 100);
	for (uint64_t k = 1; k <= 100; k += 2)
		inflight_del(&t, inflight_get(&t, k));
	cr_assert_eq(t.count, 50);
	for (uint64_t k = 1; k <= 100; k++) {
		struct inflight_entry *e = inflight_get(&t, k);
		if (k % 2) {
			cr_assert_null(e, "token %lu was deleted", (unsigned long)k);
		} else {
			cr_assert_not_null(e, "token %lu is lost", (unsigned long)k);
			cr_assert_eq(e->msg, msg_of(k));
			cr_assert_eq(e->retry_at_ns, 0);
		}
	}
	cr_assert_null(inflight_get(&t, 1000));
	inflight_destroy(&t);
}

/* Tokens that share a home slot, and runs that wrap past the table's end,
 * keep every probe chain whole across deletions. */
Test(inflight, colliding_and_wrapping_tokens_survive_deletion_in_any_order)
{
	struct inflight t;
	cr_assert_eq(inflight_init(&t, 8), 0); /* 16 slots */
	size_t cap = t.mask + 1;
	uint64_t tokens[] = {cap - 1, 2 * cap - 1, 3 * cap - 1, cap, 2 * cap, 1, cap + 1, 4 * cap - 1};
	size_t n = sizeof(tokens) / sizeof(tokens[0]);
	for (size_t i = 0; i < n; i++)
		inflight_put(&t, tokens[i], msg_of(tokens[i]));
	size_t order[] = {0, 5, 3, 7, 1, 6, 2, 4};
	for (size_t d = 0; d < n; d++) {
		inflight_del(&t, inflight_get(&t, tokens[order[d]]));
		for (size_t j = d + 1; j < n; j++) {
			struct inflight_entry *e = inflight_get(&t, tokens[order[j]]);
			cr_assert_not_null(e, "token %lu lost after deleting %lu",
					   (unsigned long)tokens[order[j]], (unsigned long)tokens[order[d]]);
			cr_assert_eq(e->msg, msg_of(tokens[order[j]]));
		}
	}
	cr_assert_eq(t.count, 0);
	for (size_t i = 0; i <= t.mask; i++)
		cr_assert_eq(t.slots[i].token, 0);
	inflight_destroy(&t);
}

Test(inflight, the_table_has_room_for_twice_its_maximum)
{
	struct inflight t;
	cr_assert_eq(inflight_init(&t, 2560), 0);
	cr_assert_geq(t.mask + 1, 2 * 2560);
	inflight_destroy(&t);
}
