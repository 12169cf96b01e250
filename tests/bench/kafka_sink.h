/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where cad-bench's kafka mode sends the daemon: librdkafka's mock cluster
 * in the bench's own process (three brokers on loopback, a topic of three
 * partitions replicated three times per run), and how many records landed.
 */
#ifndef CAD_BENCH_KAFKA_SINK_H
#define CAD_BENCH_KAFKA_SINK_H

#include <stddef.h>
#include <stdint.h>

/* Start the cluster; 0 or -1 (said on stderr). */
int kafka_sink_start(void);
void kafka_sink_stop(void);
/* The brokers as a configuration list's items: "a", "b", "c". */
void kafka_sink_brokers(char *buf, size_t len);
/* A new empty topic for the next run; its name goes into buf. */
int kafka_sink_topic(char *buf, size_t len);
/* Records stored in the current topic; UINT64_MAX when it cannot tell. */
uint64_t kafka_sink_count(void);

#endif
