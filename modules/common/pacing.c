/* SPDX-License-Identifier: Apache-2.0 */
#include "pacing.h"

#include <stdio.h>
#include <time.h>

#define WAKE_EVERY_NS (50 * 1000000LL)
#define WARN_EVERY_NS (5000 * 1000000LL)

int64_t pacing_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

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
	int64_t wake = pacing_now_ns() + WAKE_EVERY_NS;
	if (until_ns && until_ns < wake)
		wake = until_ns;
	struct timespec ts = {.tv_sec = wake / 1000000000LL, .tv_nsec = wake % 1000000000LL};
	pthread_cond_timedwait(cond, lock, &ts);
}

void pacing_warn(const struct cad_host *host, struct cad_context *ctx, _Atomic int64_t *next_ns,
		 const char *fmt, ...)
{
	int64_t now = pacing_now_ns(), next = atomic_load(next_ns);
	if (now < next || !atomic_compare_exchange_strong(next_ns, &next, now + WARN_EVERY_NS))
		return;
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	host->log(ctx, CAD_LOG_WARN, "%s", line);
}
