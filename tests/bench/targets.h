/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The performance targets, checked against one run's medians, each beside
 * what the byte relay alone reached in the same run: a target the relay
 * itself misses is out of reach on this machine, whatever the daemon does.
 */
#ifndef CAD_BENCH_TARGETS_H
#define CAD_BENCH_TARGETS_H

#include <stdbool.h>

/* One mode's medians, as the table prints them. */
struct bench_figures {
	bool ran;
	double vs_raw;  /* msg/s, ratio to raw within each repeat, median */
	double lost;    /* total over the throughput runs */
	double cpu_rsa; /* CPU per message in RSA-2048 verifications */
	double rss_mib; /* peak RSS in the throughput run (full load) */
	double p99_ms;  /* at BENCH_RATE, to JetStream's acknowledgement */
};

/* Print the targets section. `rate` is the latency run's msg/s. */
void targets_print(const struct bench_figures *raw, const struct bench_figures *none,
		   const struct bench_figures *verify, long rate);

#endif
