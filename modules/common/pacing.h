/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Time and retry pacing shared by the stream modules: the monotonic
 * clock, capped exponential backoff, a window's timed wait, and rate-limited
 * warnings.
 */
#ifndef CAD_PACING_H
#define CAD_PACING_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "cad_module.h"

int64_t pacing_now_ns(void); /* CLOCK_MONOTONIC */

/* first_ms doubled for each attempt after the first, capped at max_ms. */
int64_t pacing_backoff_ms(int64_t first_ms, int64_t max_ms, uint32_t attempts);

/* Initialise a window's condition on CLOCK_MONOTONIC, as
 * pacing_cond_wait() needs. */
void pacing_cond_init(pthread_cond_t *cond);

/* Wait on `cond` (a CLOCK_MONOTONIC condition, `lock` held) for at most
 * 50 ms, and not past until_ns when it is set: a window's waiter wakes
 * often enough to resend what falls due and to see a deadline. */
void pacing_cond_wait(pthread_cond_t *cond, pthread_mutex_t *lock, int64_t until_ns);

/* Log a warning at most once every 5 s per `next_ns`, a shared slot that
 * starts at 0: retries of a window repeat the same complaint. */
void pacing_warn(const struct cad_host *host, struct cad_context *ctx, _Atomic int64_t *next_ns,
		 const char *fmt, ...) CAD_PRINTF(4, 5);

#endif
