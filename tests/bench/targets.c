/* SPDX-License-Identifier: Apache-2.0 */
#include "targets.h"

#include <stdio.h>

#define TARGET_VS_RAW 0.90
#define TARGET_CPU_RSA 1.3
#define TARGET_RSS_MIB 16.0
#define TARGET_P99_MS 5.0

/* One line: the figure against its bound (a floor when `at_least`, else a
 * ceiling), whether it holds, and the relay's own figure. `also` is a
 * further condition of the target. */
static void line(const char *what, bool at_least, double bound, double got, const char *unit,
		 bool also, const struct bench_figures *raw, double raw_got)
{
	bool holds = also && (at_least ? got >= bound : got <= bound);
	char wanted[16];
	snprintf(wanted, sizeof(wanted), "%s %g", at_least ? ">=" : "<=", bound);
	printf("  %-36s %-7s %7.2f %-4s %s", what, wanted, got, unit, holds ? "holds" : "missed");
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
		line(none->lost == 0 ? "none: msg/s vs raw, 0 lost"
				     : "none: msg/s vs raw, LOST some",
		     true, TARGET_VS_RAW, none->vs_raw, "", none->lost == 0, NULL, 0);
	if (none->ran)
		line(p99_none, false, TARGET_P99_MS, none->p99_ms, "ms", true, raw, raw->p99_ms);
	if (verify->ran) {
		line("verify: CPU per message", false, TARGET_CPU_RSA, verify->cpu_rsa, "RSA", true,
		     raw, raw->cpu_rsa);
		line("verify: peak RSS under full load", false, TARGET_RSS_MIB, verify->rss_mib,
		     "MiB", true, raw, raw->rss_mib);
		line(p99_verify, false, TARGET_P99_MS, verify->p99_ms, "ms", true, raw,
		     raw->p99_ms);
	}
}
