/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Retry pacing shared by the stream modules: capped exponential backoff,
 * a window's timed wait on the monotonic clock (cad_clock.h), and
 * rate-limited warnings.
 */
#ifndef CAD_PACING_H
#define CAD_PACING_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <choria-adapterd/cad_clock.h>
#include <choria-adapterd/cad_module.h>
#include <choria-adapterd/cad_ratelimit.h>

/* first_ms doubled for each attempt after the first, capped at max_ms. */
int64_t pacing_backoff_ms(int64_t first_ms, int64_t max_ms, uint32_t attempts);

/* Initialise a window's condition on CLOCK_MONOTONIC, as
 * pacing_cond_wait() needs. */
void pacing_cond_init(pthread_cond_t *cond);

/* Wait on `cond` (a CLOCK_MONOTONIC condition, `lock` held) for at most
 * 50 ms, and not past until_ns when it is set: a window's waiter wakes
 * often enough to resend what falls due and to see a deadline. */
void pacing_cond_wait(pthread_cond_t *cond, pthread_mutex_t *lock, int64_t until_ns);

/* Log a line at most once every 5 s per `limit` (zeroed at first), with
 * the number of lines silenced since the last one: every line a message
 * can cause (a retry, a message refused for good) goes through one, so
 * that a stream refusing every message cannot flood the log. */
#define PACING_WARN_EVERY_NS (5000 * CAD_NS_PER_MS)
void pacing_log(const struct cad_host *host, struct cad_context *ctx, struct cad_ratelimit *limit,
		enum cad_log_level level, const char *fmt, ...) CAD_PRINTF(5, 6);
/* pacing_log() at CAD_LOG_WARN. */
void pacing_warn(const struct cad_host *host, struct cad_context *ctx, struct cad_ratelimit *limit,
		 const char *fmt, ...) CAD_PRINTF(4, 5);

#endif
