/* SPDX-License-Identifier: Apache-2.0 */
/* Reason-labelled counters: labels, totals, overflow into "other". */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>

#include "counters.h"

Test(counters, count_by_label)
{
	struct counter_set s;
	counters_init(&s);
	counters_add(&s, "malformed", 2);
	counters_add(&s, "bad_signature", 1);
	counters_add(&s, "malformed", 3);
	cr_assert_eq(counters_get(&s, "malformed"), 5);
	cr_assert_eq(counters_get(&s, "bad_signature"), 1);
	cr_assert_eq(counters_get(&s, "never"), 0);
	cr_assert_eq(counters_total(&s), 6);
	counters_destroy(&s);
}

Test(counters, labels_past_the_limit_go_to_other)
{
	struct counter_set s;
	counters_init(&s);
	char label[32];
	for (int i = 0; i < COUNTERS_MAX_LABELS + 10; i++) {
		snprintf(label, sizeof(label), "reason_%d", i);
		counters_add(&s, label, 1);
	}
	cr_assert_eq(counters_total(&s), COUNTERS_MAX_LABELS + 10, "nothing is lost");
	cr_assert_eq(counters_get(&s, COUNTERS_OTHER), 11);
	counters_destroy(&s);
}

static char first_label[64];

static void count_labels(const char *label, uint64_t value, void *arg)
{
	(void)value;
	if (*(int *)arg == 0)
		snprintf(first_label, sizeof(first_label), "%s", label);
	++*(int *)arg;
}

Test(counters, a_label_too_long_is_cut_the_same_way_each_time_at_a_character)
{
	struct counter_set s;
	counters_init(&s);
	/* 46 ASCII bytes, then a two-byte character across the 47-byte cut. */
	const char *label = "a_reason_that_is_longer_than_a_label_can_hold_\xc3\xa9_and_more";
	for (int i = 0; i < 3; i++)
		counters_add(&s, label, 1);
	cr_assert_eq(counters_get(&s, label), 3, "one slot, found again");
	int slots = 0;
	counters_each(&s, count_labels, &slots);
	cr_assert_eq(slots, 1);
	cr_assert_str_eq(first_label, "a_reason_that_is_longer_than_a_label_can_hold_",
			 "cut before the character, not inside it");
	counters_destroy(&s);
}

static struct counter_set shared;

static void *hammer(void *arg)
{
	(void)arg;
	for (int i = 0; i < 100000; i++)
		counters_add(&shared, (i & 1) ? "a" : "b", 1);
	return NULL;
}

Test(counters, concurrent_adds_are_exact)
{
	counters_init(&shared);
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, hammer, NULL);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(counters_get(&shared, "a"), 200000);
	cr_assert_eq(counters_get(&shared, "b"), 200000);
	counters_destroy(&shared);
}
