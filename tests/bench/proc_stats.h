/* SPDX-License-Identifier: Apache-2.0 */
/* CPU time and peak memory of a process, from /proc. */
#ifndef CAD_BENCH_PROC_STATS_H
#define CAD_BENCH_PROC_STATS_H

#include <sys/types.h>

/* User plus system CPU seconds the process has used so far. */
double proc_cpu_seconds(pid_t pid);
/* Peak resident set (VmHWM) in KiB; -1 when unreadable. */
long proc_peak_rss_kib(pid_t pid);

/* Context switches, voluntary and not, of all the process's threads so
 * far; -1 when unreadable. Each is a thread that slept or was preempted:
 * hand-offs between threads show up here. */
long proc_context_switches(pid_t pid);

#endif
