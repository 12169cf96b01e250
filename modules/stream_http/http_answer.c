/* SPDX-License-Identifier: Apache-2.0 */
#include "http_answer.h"

#include <curl/curl.h>
#include <ctype.h>
#include <stdlib.h>

#include "pacing.h"

#define HTTP_RETRY_FIRST_MS 100

enum http_verdict http_verdict_of(long status)
{
	if (status >= 200 && status <= 299)
		return HTTP_PUBLISHED;
	switch (status) {
	case 0:
	case 408:
	case 425:
	case 429:
	case 500:
	case 502:
	case 503:
	case 504:
		return HTTP_RETRY;
	default:
		return HTTP_LOST;
	}
}

int64_t http_retry_after_ms(const char *value, time_t now)
{
	while (*value == ' ' || *value == '\t')
		value++;
	int64_t s;
	if (isdigit((unsigned char)*value)) {
		char *end;
		long long v = strtoll(value, &end, 10);
		while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
			end++;
		if (*end)
			return -1;
		s = v;
	} else {
		time_t t = curl_getdate(value, NULL);
		if (t == (time_t)-1)
			return -1;
		s = t > now ? (int64_t)(t - now) : 0;
	}
	return s >= HTTP_RETRY_AFTER_MAX_MS / 1000 ? HTTP_RETRY_AFTER_MAX_MS : s * 1000;
}

/* xorshift64*: enough to spread retries, and each caller's own. */
static uint64_t http_random(uint64_t *seed)
{
	uint64_t x = *seed ? *seed : 0x9e3779b97f4a7c15ULL;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*seed = x;
	return x * 0x2545f4914f6cdd1dULL;
}

int64_t http_backoff_ms(uint32_t attempts, int64_t max_ms, uint64_t *seed)
{
	int64_t ms = pacing_backoff_ms(HTTP_RETRY_FIRST_MS, max_ms, attempts);
	int64_t half = ms / 2;
	return ms - (half > 0 ? (int64_t)(http_random(seed) % (uint64_t)(half + 1)) : 0);
}
