/* SPDX-License-Identifier: Apache-2.0 */
#include "pacing.h"

#include <stdarg.h>
#include <stdio.h>

#define WAKE_EVERY_NS (50 * CAD_NS_PER_MS)

int64_t pacing_backoff_ms(int64_t first_ms, int64_t max_ms, uint32_t attempts)
{
	int64_t ms = first_ms;
	for (uint32_t i = 1; i < attempts && ms < max_ms; i++)
		ms *= 2;
	return ms < max_ms ? ms : max_ms;
}

void pacing_cond_init(pthread_cond_t *cond)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cond, &ca);
	pthread_condattr_destroy(&ca);
}

void pacing_cond_wait(pthread_cond_t *cond, pthread_mutex_t *lock, int64_t until_ns)
{
	int64_t wake = cad_clock_mono_ns() + WAKE_EVERY_NS;
	if (until_ns && until_ns < wake)
		wake = until_ns;
	struct timespec ts = cad_clock_timespec(wake);
	pthread_cond_timedwait(cond, lock, &ts);
}

static void pacing_vlog(const struct cad_host *host, struct cad_context *ctx,
			struct cad_ratelimit *limit, enum cad_log_level level, const char *fmt,
			va_list ap)
{
	uint64_t suppressed;
	if (!cad_ratelimit_allow(limit, PACING_WARN_EVERY_NS, &suppressed))
		return;
	char line[512];
	vsnprintf(line, sizeof(line), fmt, ap);
	if (suppressed)
		host->log(ctx, level, "%s (%llu more since the last report)", line,
			  (unsigned long long)suppressed);
	else
		host->log(ctx, level, "%s", line);
}

void pacing_log(const struct cad_host *host, struct cad_context *ctx, struct cad_ratelimit *limit,
		enum cad_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	pacing_vlog(host, ctx, limit, level, fmt, ap);
	va_end(ap);
}

void pacing_warn(const struct cad_host *host, struct cad_context *ctx, struct cad_ratelimit *limit,
		 const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	pacing_vlog(host, ctx, limit, CAD_LOG_WARN, fmt, ap);
	va_end(ap);
}
