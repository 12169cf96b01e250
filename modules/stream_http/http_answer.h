/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What an endpoint's answer means for the messages of a request, and when
 * a retry goes: pure functions, so that the rules read in one place.
 */
#ifndef CAD_HTTP_ANSWER_H
#define CAD_HTTP_ANSWER_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

enum http_verdict {
	HTTP_PUBLISHED, /* 2xx */
	HTTP_RETRY,     /* 408, 425, 429, 500, 502, 503, 504, or no answer */
	HTTP_LOST,      /* any other status */
};

/* The verdict on an answer with `status` (0: none came: a timeout, a
 * refused or reset connection, a TLS failure). */
enum http_verdict http_verdict_of(long status);

/* The longest pause a server's Retry-After may ask for. */
#define HTTP_RETRY_AFTER_MAX_MS (3600 * 1000LL)

/* A Retry-After value (delay-seconds or an HTTP date, compared with
 * `now`) in milliseconds, capped at HTTP_RETRY_AFTER_MAX_MS; -1 when it is
 * neither. */
int64_t http_retry_after_ms(const char *value, time_t now);

/* The pause before attempt `attempts + 1`: 100 ms doubled per attempt,
 * capped at max_ms, then a random part of its second half dropped so that
 * workers that failed together do not come back together. `seed` is the
 * caller's own generator state. */
int64_t http_backoff_ms(uint32_t attempts, int64_t max_ms, uint64_t *seed);

#endif
