/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Retry pacing shared by the stream modules that publish with a window:
 * capped exponential backoff, waits on the monotonic clock (cad_clock.h),
 * and the three options that size and pace a window.
 */
#ifndef CAD_PACING_H
#define CAD_PACING_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <choria-adapterd/cad_clock.h>
#include <choria-adapterd/cad_module.h>
#include <choria-adapterd/cad_ratelimit.h>

/* Entries for a stream module's option table. */
#define PUBLISH_WINDOW_OPTIONS                                                                     \
	{.name = "max_inflight", .type = CAD_OPT_INT, .def_int = 256, .min = 1, .max = 65536,      \
	 .help = "unacknowledged publishes per worker"},                                           \
	{.name = "ack_timeout", .type = CAD_OPT_INT, .def_int = 5, .min = 1, .max = 300,           \
	 .help = "seconds to wait for an acknowledgement before publishing again"},                \
	{.name = "retry_max_interval", .type = CAD_OPT_INT, .def_int = 10, .min = 1, .max = 3600,  \
	 .help = "longest pause, in seconds, between two attempts to publish or to connect"}

struct publish_window {
	long max_inflight;
	int64_t ack_timeout_ms;
	int64_t retry_max_ms;
};

/* Read PUBLISH_WINDOW_OPTIONS from a block (the host checked the ranges). */
void publish_window_read(struct publish_window *w, const struct cad_host *host,
			 const struct cad_config *cfg);

/* How many publishes of a full window of `size` are still unacknowledged
 * when its waiting publishers are woken: a quarter of it is free (one
 * place in a window under 4). Waking them at every acknowledgement costs a
 * context switch per message whenever the window is the limit. */
long publish_window_low_water(long size);

/* first_ms doubled for each attempt after the first, capped at max_ms. */
int64_t pacing_backoff_ms(int64_t first_ms, int64_t max_ms, uint32_t attempts);

/* Initialise a window's condition on CLOCK_MONOTONIC, as
 * pacing_cond_wait() needs. */
void pacing_cond_init(pthread_cond_t *cond);

/* Wait on `cond` (a CLOCK_MONOTONIC condition, `lock` held) for at most
 * 50 ms, and not past until_ns when it is set: a window's waiter wakes
 * often enough to resend what falls due and to see a deadline. */
void pacing_cond_wait(pthread_cond_t *cond, pthread_mutex_t *lock, int64_t until_ns);

/* Log a warning at most once every 5 s per `limit` (zeroed at first):
 * retries of a window repeat the same complaint. */
#define PACING_WARN_EVERY_NS (5000 * CAD_NS_PER_MS)
void pacing_warn(const struct cad_host *host, struct cad_context *ctx, struct cad_ratelimit *limit,
		 const char *fmt, ...) CAD_PRINTF(4, 5);

#endif
