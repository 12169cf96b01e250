/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The http module's rules for an answer: which statuses publish, retry or
 * lose, how a Retry-After is read, and the jittered backoff's bounds.
 */
#include <criterion/criterion.h>
#include <time.h>

#include "http_answer.h"

Test(http_answer, statuses_publish_retry_or_lose)
{
	for (long s = 200; s <= 299; s++)
		cr_assert_eq(http_verdict_of(s), HTTP_PUBLISHED, "%ld", s);
	long retry[] = {0, 408, 425, 429, 500, 502, 503, 504};
	for (size_t i = 0; i < sizeof(retry) / sizeof(*retry); i++)
		cr_assert_eq(http_verdict_of(retry[i]), HTTP_RETRY, "%ld", retry[i]);
	long lost[] = {100, 301, 304, 400, 401, 403, 404, 409, 413, 422, 501, 505, 599};
	for (size_t i = 0; i < sizeof(lost) / sizeof(*lost); i++)
		cr_assert_eq(http_verdict_of(lost[i]), HTTP_LOST, "%ld", lost[i]);
}

Test(http_answer, retry_after_in_seconds_or_as_a_date)
{
	time_t now = 1700000000; /* Tue, 14 Nov 2023 22:13:20 GMT */
	cr_assert_eq(http_retry_after_ms("0", now), 0);
	cr_assert_eq(http_retry_after_ms("  7", now), 7000);
	cr_assert_eq(http_retry_after_ms("120\r\n", now), 120000);
	cr_assert_eq(http_retry_after_ms("86400", now), HTTP_RETRY_AFTER_MAX_MS,
		     "capped at an hour");
	cr_assert_eq(http_retry_after_ms("99999999999999999999", now), HTTP_RETRY_AFTER_MAX_MS);
	cr_assert_eq(http_retry_after_ms("Tue, 14 Nov 2023 22:13:50 GMT", now), 30000);
	cr_assert_eq(http_retry_after_ms("Tue, 14 Nov 2023 22:00:00 GMT", now), 0, "a past date");
	cr_assert_eq(http_retry_after_ms("Wed, 15 Nov 2023 22:13:20 GMT", now),
		     HTTP_RETRY_AFTER_MAX_MS);
	cr_assert_eq(http_retry_after_ms("soon", now), -1);
	cr_assert_eq(http_retry_after_ms("5s", now), -1);
	cr_assert_eq(http_retry_after_ms("", now), -1);
}

Test(http_answer, backoff_doubles_to_its_cap_less_at_most_half)
{
	uint64_t seed = 42;
	int64_t full[] = {100, 200, 400, 800, 1000, 1000, 1000};
	for (uint32_t a = 1; a <= 7; a++)
		for (int k = 0; k < 200; k++) {
			int64_t ms = http_backoff_ms(a, 1000, &seed);
			cr_assert(ms <= full[a - 1] && ms >= full[a - 1] / 2, "attempt %u: %ld ms",
				  a, (long)ms);
		}
	/* The jitter varies. */
	int64_t first = http_backoff_ms(5, 1000, &seed);
	bool varied = false;
	for (int k = 0; k < 50 && !varied; k++)
		varied = http_backoff_ms(5, 1000, &seed) != first;
	cr_assert(varied);
}
