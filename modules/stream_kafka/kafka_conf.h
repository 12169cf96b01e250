/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `kafka` stream block turned into a librdkafka producer
 * configuration: the module's own options, then the operator's `options`
 * entries, minus those that would break the module's guarantees. Every
 * error is reported against its option with host->cfg_error().
 */
#ifndef CAD_KAFKA_CONF_H
#define CAD_KAFKA_CONF_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

#include <choria-adapterd/cad_clock.h>
#include <choria-adapterd/cad_module.h>

/* The block's options, for the module's descriptor. */
extern const struct cad_option kafka_options[];

struct kafka_settings {
	char *topic;
	char *brokers;          /* comma-separated, as bootstrap.servers wants */
	long window;            /* max_inflight x workers */
	int64_t stall_after_ns; /* ack_timeout */
	char security[96];      /* for describe(): "plaintext", "TLS, SASL PLAIN" */
	char compression[16];
	rd_kafka_conf_t *base; /* all but bootstrap.servers and the callbacks */
};

/* Whether `topic` is a valid Kafka topic name: 1 to 249 of [a-zA-Z0-9._-],
 * not "." or "..". On failure *why says what is wrong. */
bool kafka_topic_valid(const char *topic, const char **why);

/* Read the block into s, reporting every error. Returns 0, -EINVAL after
 * errors were reported, or -ENOMEM. s is to be cleared either way. */
int kafka_settings_read(struct kafka_settings *s, const struct cad_host *host,
			struct cad_context *ctx, const struct cad_config *cfg);
void kafka_settings_clear(struct kafka_settings *s);

#endif
