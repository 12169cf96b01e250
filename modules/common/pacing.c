/* SPDX-License-Identifier: Apache-2.0 */
#include "pacing.h"

#include <time.h>

void publish_window_read(struct publish_window *w, const struct cad_host *host,
			 const struct cad_config *cfg)
{
	w->max_inflight = host->cfg_int(cfg, "max_inflight");
	w->ack_timeout_ms = host->cfg_int(cfg, "ack_timeout") * 1000;
	w->retry_max_ms = host->cfg_int(cfg, "retry_max_interval") * 1000;
}

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
