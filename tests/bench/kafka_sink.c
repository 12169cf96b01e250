/* SPDX-License-Identifier: Apache-2.0 */
#include "kafka_sink.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <string.h>

#define KAFKA_SINK_BROKERS 3
#define KAFKA_SINK_PARTITIONS 3

/* The bench is one process with one sink. */
static rd_kafka_t *sink_host, *sink_reader;
static rd_kafka_mock_cluster_t *sink_mc;
static char sink_topic[64];
static int sink_runs;

static void kafka_sink_quiet(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	(void)level;
	(void)fac;
	(void)buf;
}

static rd_kafka_t *kafka_sink_client(rd_kafka_type_t type, const char *bootstraps)
{
	char err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set_log_cb(conf, kafka_sink_quiet);
	if ((bootstraps && rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, err,
					     sizeof(err)) != RD_KAFKA_CONF_OK) ||
	    (type == RD_KAFKA_CONSUMER && rd_kafka_conf_set(conf, "group.id", "cad-bench", err,
							    sizeof(err)) != RD_KAFKA_CONF_OK)) {
		fprintf(stderr, "cad-bench: %s\n", err);
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
	if (!rk) {
		fprintf(stderr, "cad-bench: %s\n", err);
		rd_kafka_conf_destroy(conf);
	}
	return rk;
}

int kafka_sink_start(void)
{
	sink_host = kafka_sink_client(RD_KAFKA_PRODUCER, NULL);
	sink_mc = sink_host ? rd_kafka_mock_cluster_new(sink_host, KAFKA_SINK_BROKERS) : NULL;
	sink_reader = sink_mc ? kafka_sink_client(RD_KAFKA_CONSUMER,
						  rd_kafka_mock_cluster_bootstraps(sink_mc))
			      : NULL;
	if (!sink_reader) {
		fprintf(stderr, "cad-bench: cannot start librdkafka's mock cluster\n");
		return -1;
	}
	return 0;
}

void kafka_sink_stop(void)
{
	if (sink_reader)
		rd_kafka_destroy(sink_reader);
	if (sink_mc)
		rd_kafka_mock_cluster_destroy(sink_mc);
	if (sink_host)
		rd_kafka_destroy(sink_host);
	sink_reader = sink_host = NULL;
	sink_mc = NULL;
}

void kafka_sink_brokers(char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = '\0';
	for (const char *p = rd_kafka_mock_cluster_bootstraps(sink_mc); *p && used < len;) {
		size_t n = strcspn(p, ",");
		used += (size_t)snprintf(buf + used, len - used, "%s\"%.*s\"", used ? ", " : "",
					 (int)n, p);
		p += n + (p[n] == ',');
	}
}

int kafka_sink_topic(char *buf, size_t len)
{
	snprintf(sink_topic, sizeof(sink_topic), "choria.bench.%d", ++sink_runs);
	if (rd_kafka_mock_topic_create(sink_mc, sink_topic, KAFKA_SINK_PARTITIONS,
				       KAFKA_SINK_BROKERS) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return -1;
	snprintf(buf, len, "%s", sink_topic);
	return 0;
}

uint64_t kafka_sink_count(void)
{
	uint64_t total = 0;
	for (int p = 0; p < KAFKA_SINK_PARTITIONS; p++) {
		int64_t lo = 0, hi = 0;
		if (rd_kafka_query_watermark_offsets(sink_reader, sink_topic, p, &lo, &hi, 2000) !=
		    RD_KAFKA_RESP_ERR_NO_ERROR)
			return UINT64_MAX;
		total += (uint64_t)hi;
	}
	return total;
}
