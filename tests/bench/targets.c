/* SPDX-License-Identifier: Apache-2.0 */
#include "targets.h"

#include <stdio.h>

#define TARGET_VS_RAW 0.90
#define TARGET_CPU_RSA 1.3
#define TARGET_RSS_MIB 16.0
#define TARGET_P99_MS 5.0

static const char *verdict(bool holds)
{
	return holds ? "holds" : "missed";
}

/* One line: the figure, whether it holds, and the relay's own figure. */
static void line(const char *what, const char *wanted, double got, const char *unit,
		 bool holds, const struct bench_figures *raw, double raw_got)
{
	printf("  %-36s %-7s %7.2f %-4s %s", what, wanted, got, unit, verdict(holds));
	if (raw && raw->ran)
		printf("%*s raw alone: %.2f %s", holds ? 1 : 0, "", raw_got, unit);
	printf("\n");
}

void targets_print(const struct bench_figures *raw, const struct bench_figures *none,
		   const struct bench_figures *verify, long rate)
{
	char p99_none[64], p99_verify[64];

	snprintf(p99_none, sizeof(p99_none), "none: p99 at %ld msg/s", rate);
	snprintf(p99_verify, sizeof(p99_verify), "verify: p99 at %ld msg/s", rate);
	printf("\ntargets (this run's medians; raw alone: the relay in the same run)\n");
	if (none->ran && raw->ran)
		line(none->lost == 0 ? "none: msg/s vs raw, 0 lost" : "none: msg/s vs raw, LOST some",
		     ">= 0.90", none->vs_raw, "",
		     none->vs_raw >= TARGET_VS_RAW && none->lost == 0, NULL, 0);
	if (none->ran)
		line(p99_none, "<= 5", none->p99_ms, "ms", none->p99_ms <= TARGET_P99_MS, raw,
		     raw->p99_ms);
	if (verify->ran) {
		line("verify: CPU per message", "<= 1.3", verify->cpu_rsa, "RSA",
		     verify->cpu_rsa <= TARGET_CPU_RSA, raw, raw->cpu_rsa);
		line("verify: peak RSS under full load", "<= 16", verify->rss_mib, "MiB",
		     verify->rss_mib <= TARGET_RSS_MIB, raw, raw->rss_mib);
		line(p99_verify, "<= 5", verify->p99_ms, "ms", verify->p99_ms <= TARGET_P99_MS,
		     raw, raw->p99_ms);
	}
}
