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
			cr_assert_eq(e->pw.msg, msg_of(k));
			cr_assert_eq(e->pw.retry_at_ns, 0);
		}
	}
	cr_assert_null(inflight_get(&t, 1000));
	inflight_destroy(&t);
}

/* The slot a token takes in an empty table: its home. */
static size_t home_of(struct inflight *t, uint64_t token)
{
	struct inflight_entry *e = inflight_put(t, token, msg_of(token));
	size_t home = (size_t)(e - t->slots);
	inflight_del(t, e);
	return home;
}

/* Tokens that share a home slot, and a run that wraps past the table's
 * end, keep every probe chain whole across deletions in any order. */
Test(inflight, colliding_and_wrapping_tokens_survive_deletion_in_any_order)
{
	struct inflight t;
	cr_assert_eq(inflight_init(&t, 8), 0); /* 16 slots */
	uint64_t tokens[8];
	size_t n = 0, at_end = 0, at_five = 0;
	for (uint64_t k = 1; n < 8 && k < 100000; k++) {
		size_t home = home_of(&t, k);
		if (home == t.mask && at_end < 4) {
			tokens[n++] = k;
			at_end++;
		} else if (home == 5 && at_five < 4) {
			tokens[n++] = k;
			at_five++;
		}
	}
	cr_assert_eq(n, 8, "found 4 tokens at home in the last slot and 4 in slot 5");
	for (size_t i = 0; i < n; i++)
		inflight_put(&t, tokens[i], msg_of(tokens[i]));
	size_t order[] = {0, 5, 3, 7, 1, 6, 2, 4};
	for (size_t d = 0; d < n; d++) {
		inflight_del(&t, inflight_get(&t, tokens[order[d]]));
		for (size_t j = d + 1; j < n; j++) {
			struct inflight_entry *e = inflight_get(&t, tokens[order[j]]);
			cr_assert_not_null(e, "token %lu lost after deleting %lu",
					   (unsigned long)tokens[order[j]],
					   (unsigned long)tokens[order[d]]);
			cr_assert_eq(e->pw.msg, msg_of(tokens[order[j]]));
		}
	}
	cr_assert_eq(t.count, 0);
	for (size_t i = 0; i <= t.mask; i++)
		cr_assert_eq(t.slots[i].token, 0);
	inflight_destroy(&t);
}

/* Tokens are consecutive. Were they in consecutive slots, a window of
 * them would be one run, and each deletion would walk it to its end. */
Test(inflight, a_window_of_consecutive_tokens_leaves_only_short_runs)
{
	struct inflight t;
	cr_assert_eq(inflight_init(&t, 2560), 0);
	for (uint64_t k = 1000; k < 1000 + 2560; k++)
		inflight_put(&t, k, msg_of(k));
	size_t longest = 0, run = 0;
	for (size_t i = 0; i <= 2 * t.mask + 1; i++) { /* twice round: runs may wrap */
		run = t.slots[i & t.mask].token ? run + 1 : 0;
		if (run > longest)
			longest = run;
	}
	cr_assert_lt(longest, 64, "a run of %zu occupied slots", longest);
	inflight_destroy(&t);
}

Test(inflight, the_table_has_room_for_twice_its_maximum)
{
	struct inflight t;
	cr_assert_eq(inflight_init(&t, 2560), 0);
	cr_assert_geq(t.mask + 1, 2 * 2560);
	inflight_destroy(&t);
}
