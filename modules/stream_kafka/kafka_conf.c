/* SPDX-License-Identifier: Apache-2.0 */
#include "kafka_conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "envelope.h"

#define TOPIC_MAX 249
/* librdkafka's own bound on queue.buffering.max.messages. */
#define QUEUE_MESSAGES_MAX 2147483647L

static const char *const kafka_compression_choices[] = {"none", "gzip", "snappy",
							"lz4",  "zstd", NULL};
static const char *const kafka_sasl_choices[] = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", NULL};

const struct cad_option kafka_options[] = {
	ENVELOPE_OPTIONS(ENVELOPE_PROTOCOL_KAFKA),
	{.name = "brokers",
	 .type = CAD_OPT_STRING_LIST,
	 .flags = CAD_OPT_REQUIRED,
	 .help = "bootstrap servers, host:port"},
	{.name = "topic",
	 .type = CAD_OPT_STRING,
	 .flags = CAD_OPT_DEFAULT_ADAPTER_NAME,
	 .help = "topic to produce to (default: the adapter name)"},
	{.name = "max_inflight",
	 .type = CAD_OPT_INT,
	 .def_int = 10000,
	 .min = 1,
	 .max = 1000000,
	 .help = "records per worker awaiting Kafka's report"},
	{.name = "ack_timeout",
	 .type = CAD_OPT_INT,
	 .def_int = 30,
	 .min = 1,
	 .max = 3600,
	 .help = "seconds records may wait without a delivery report before the stream side is "
		 "reported stalled"},
	{.name = "compression",
	 .type = CAD_OPT_STRING,
	 .def_str = "none",
	 .choices = kafka_compression_choices,
	 .help = "none, gzip, snappy, lz4 or zstd"},
	{.name = "tls_ca", .type = CAD_OPT_STRING, .help = "CA certificates (PEM); turns TLS on"},
	{.name = "tls_cert",
	 .type = CAD_OPT_STRING,
	 .help = "client certificate (PEM); turns TLS on"},
	{.name = "tls_key", .type = CAD_OPT_STRING, .help = "client key (PEM); turns TLS on"},
	{.name = "sasl_mechanism",
	 .type = CAD_OPT_STRING,
	 .choices = kafka_sasl_choices,
	 .help = "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"},
	{.name = "sasl_username", .type = CAD_OPT_STRING, .help = "SASL user name"},
	{.name = "sasl_password",
	 .type = CAD_OPT_STRING,
	 .flags = CAD_OPT_SECRET,
	 .help = "SASL password"},
	{.name = "options",
	 .type = CAD_OPT_STRING_LIST,
	 .help = "other librdkafka producer properties, name=value"},
	{.name = NULL},
};

bool kafka_topic_valid(const char *topic, const char **why)
{
	size_t n = strlen(topic);
	if (strstr(topic, "%s")) {
		*why = "Kafka partitions by key, and the key is the sender: the topic cannot hold %s";
		return false;
	}
	if (n == 0 || n > TOPIC_MAX) {
		*why = "a Kafka topic name has 1 to 249 characters";
		return false;
	}
	if (strcmp(topic, ".") == 0 || strcmp(topic, "..") == 0) {
		*why = "a Kafka topic cannot be named . or ..";
		return false;
	}
	if (strspn(topic, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
	    n) {
		*why = "a Kafka topic name holds only letters, digits, '.', '_' and '-'";
		return false;
	}
	return true;
}

/* Set one property the module chooses; its own values never fail but for
 * a librdkafka built without the feature. */
static int kafka_conf_put(rd_kafka_conf_t *conf, const struct cad_host *host,
			  const struct cad_config *cfg, const char *option, const char *name,
			  const char *value)
{
	char err[512];
	if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) == RD_KAFKA_CONF_OK)
		return 0;
	host->cfg_error(cfg, option, "%s", err);
	return 1;
}

/* Why an operator's property is refused, or NULL when it is not. */
static const char *kafka_refused(const char *name, const char *value)
{
	if (strcmp(name, "enable.idempotence") == 0 && strcasecmp(value, "true") != 0)
		return "the module needs the idempotent producer, so that librdkafka's retries never store a record twice";
	if ((strcmp(name, "acks") == 0 || strcmp(name, "request.required.acks") == 0) &&
	    strcasecmp(value, "all") != 0 && strcmp(value, "-1") != 0)
		return "a record counts published only once all in-sync replicas hold it (acks=all)";
	if ((strcmp(name, "message.timeout.ms") == 0 || strcmp(name, "delivery.timeout.ms") == 0) &&
	    strcmp(value, "0") != 0)
		return "records are retried for as long as the daemon runs (0, unlimited)";
	if (strcmp(name, "bootstrap.servers") == 0 || strcmp(name, "metadata.broker.list") == 0)
		return "the brokers option names them";
	if (strcmp(name, "transactional.id") == 0)
		return "the module does not produce in transactions";
	return NULL;
}

/* The `options` entries, applied after the module's own properties. */
static int kafka_conf_options(rd_kafka_conf_t *conf, const struct cad_host *host,
			      const struct cad_config *cfg, int *nomem)
{
	int errors = 0;
	unsigned n = host->cfg_list_len(cfg, "options");
	for (unsigned i = 0; i < n; i++) {
		const char *entry = host->cfg_list_str(cfg, "options", i);
		const char *eq = strchr(entry, '=');
		if (!eq || eq == entry) {
			host->cfg_error(cfg, "options", "'%s' is not name=value", entry);
			errors++;
			continue;
		}
		char *name = strndup(entry, (size_t)(eq - entry));
		if (!name) {
			*nomem = 1;
			return errors;
		}
		const char *value = eq + 1, *why = kafka_refused(name, value);
		/* A secret's value is never printed, even when it is wrong. */
		const char *shown =
			strstr(name, "password") || strstr(name, "secret") ? "***" : value;
		char err[512];
		if (why) {
			host->cfg_error(cfg, "options", "'%s=%s' is refused: %s", name, shown, why);
			errors++;
		} else if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) !=
			   RD_KAFKA_CONF_OK) {
			host->cfg_error(cfg, "options", "'%s=%s': %s", name, shown, err);
			errors++;
		}
		free(name);
	}
	return errors;
}

static int kafka_check_readable(const struct cad_host *host, const struct cad_config *cfg,
				const char *option)
{
	const char *path = host->cfg_str(cfg, option);
	if (!path || access(path, R_OK) == 0)
		return 0;
	host->cfg_error(cfg, option, "cannot read %s: %s", path, strerror(errno));
	return 1;
}

/* TLS and SASL properties, and the security.protocol they make. */
static int kafka_conf_security(struct kafka_settings *s, rd_kafka_conf_t *conf,
			       const struct cad_host *host, const struct cad_config *cfg)
{
	const char *ca = host->cfg_str(cfg, "tls_ca"), *cert = host->cfg_str(cfg, "tls_cert"),
		   *key = host->cfg_str(cfg, "tls_key"),
		   *mech = host->cfg_str(cfg, "sasl_mechanism"),
		   *user = host->cfg_str(cfg, "sasl_username"),
		   *pass = host->cfg_str(cfg, "sasl_password");
	bool tls = ca || cert || key;
	int errors = kafka_check_readable(host, cfg, "tls_ca") +
		     kafka_check_readable(host, cfg, "tls_cert") +
		     kafka_check_readable(host, cfg, "tls_key");
	if (!cert != !key) {
		host->cfg_error(cfg, cert ? "tls_key" : "tls_cert",
				"tls_cert and tls_key go together");
		errors++;
	}
	if (mech && (!user || !pass)) {
		host->cfg_error(cfg, "sasl_mechanism", "needs sasl_username and sasl_password");
		errors++;
	}
	if (!mech && (user || pass)) {
		host->cfg_error(cfg, user ? "sasl_username" : "sasl_password",
				"needs sasl_mechanism");
		errors++;
	}
	if (errors)
		return errors;
	const char *protocol =
		tls ? (mech ? "sasl_ssl" : "ssl") : (mech ? "sasl_plaintext" : "plaintext");
	errors += kafka_conf_put(conf, host, cfg, NULL, "security.protocol", protocol);
	if (ca)
		errors += kafka_conf_put(conf, host, cfg, "tls_ca", "ssl.ca.location", ca);
	if (cert)
		errors += kafka_conf_put(conf, host, cfg, "tls_cert", "ssl.certificate.location",
					 cert);
	if (key)
		errors += kafka_conf_put(conf, host, cfg, "tls_key", "ssl.key.location", key);
	if (mech) {
		errors +=
			kafka_conf_put(conf, host, cfg, "sasl_mechanism", "sasl.mechanisms", mech);
		errors += kafka_conf_put(conf, host, cfg, "sasl_username", "sasl.username", user);
		errors += kafka_conf_put(conf, host, cfg, "sasl_password", "sasl.password", pass);
	}
	snprintf(s->security, sizeof(s->security), "%s%s%s", tls ? "TLS" : "no TLS",
		 mech ? ", SASL " : "", mech ? mech : "");
	return errors;
}

/* The option a librdkafka complaint about the whole configuration is
 * about, when it names one; NULL for the block. */
static const char *kafka_error_option(const char *err)
{
	if (strncmp(err, "ssl.ca", 6) == 0)
		return "tls_ca";
	if (strncmp(err, "ssl.certificate", 15) == 0)
		return "tls_cert";
	if (strncmp(err, "ssl.key", 7) == 0 || strstr(err, "private key"))
		return "tls_key";
	if (strncmp(err, "sasl", 4) == 0)
		return "sasl_mechanism";
	return "options";
}

static void kafka_quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	(void)level;
	(void)fac;
	(void)buf;
}

/* librdkafka checks the whole configuration, and loads the TLS files,
 * when it builds a client: build one with no broker to connect to. */
static int kafka_conf_check(const struct kafka_settings *s, const struct cad_host *host,
			    const struct cad_config *cfg)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_dup(s->base);
	if (!conf)
		return -ENOMEM;
	rd_kafka_conf_set_log_cb(conf, kafka_quiet_log);
	char err[512] = "";
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (!rk) {
		rd_kafka_conf_destroy(conf);
		host->cfg_error(cfg, kafka_error_option(err), "%s", err);
		return -EINVAL;
	}
	rd_kafka_destroy(rk);
	return 0;
}

static char *kafka_join_brokers(const struct cad_host *host, const struct cad_config *cfg,
				int *errors)
{
	unsigned n = host->cfg_list_len(cfg, "brokers");
	size_t len = 1;
	for (unsigned i = 0; i < n; i++)
		len += strlen(host->cfg_list_str(cfg, "brokers", i)) + 1;
	char *out = malloc(len);
	if (!out)
		return NULL;
	out[0] = '\0';
	for (unsigned i = 0; i < n; i++) {
		const char *b = host->cfg_list_str(cfg, "brokers", i);
		if (!*b || strpbrk(b, ", \t")) {
			host->cfg_error(cfg, "brokers", "'%s' is not host:port", b);
			(*errors)++;
		}
		if (i)
			strcat(out, ",");
		strcat(out, b);
	}
	if (n == 0) {
		host->cfg_error(cfg, "brokers", "at least one broker is needed");
		(*errors)++;
	}
	return out;
}

int kafka_settings_read(struct kafka_settings *s, const struct cad_host *host,
			struct cad_context *ctx, const struct cad_config *cfg)
{
	memset(s, 0, sizeof(*s));
	int errors = 0, nomem = 0;
	const char *topic = host->cfg_str(cfg, "topic");
	s->topic = strdup(topic ? topic : host->adapter_name(ctx));
	s->brokers = kafka_join_brokers(host, cfg, &errors);
	s->base = rd_kafka_conf_new();
	if (!s->topic || !s->brokers || !s->base)
		return -ENOMEM;
	const char *why;
	if (!kafka_topic_valid(s->topic, &why)) {
		host->cfg_error(cfg, "topic", "'%s': %s", s->topic, why);
		errors++;
	}
	s->stall_after_ns = host->cfg_int(cfg, "ack_timeout") * CAD_NS_PER_SEC;
	s->window = host->cfg_int(cfg, "max_inflight") * host->cfg_int(cfg, "workers");
	if (s->window > QUEUE_MESSAGES_MAX)
		s->window = QUEUE_MESSAGES_MAX;
	snprintf(s->compression, sizeof(s->compression), "%s", host->cfg_str(cfg, "compression"));

	char window[24];
	snprintf(window, sizeof(window), "%ld", s->window);
	rd_kafka_conf_t *c = s->base;
	errors += kafka_conf_put(c, host, cfg, NULL, "enable.idempotence", "true");
	errors += kafka_conf_put(c, host, cfg, NULL, "acks", "all");
	errors += kafka_conf_put(c, host, cfg, NULL, "message.timeout.ms", "0");
	errors += kafka_conf_put(c, host, cfg, NULL, "client.id", "choria-adapterd");
	errors += kafka_conf_put(c, host, cfg, NULL, "queue.buffering.max.messages", window);
	errors += kafka_conf_put(c, host, cfg, "compression", "compression.codec", s->compression);
	errors += kafka_conf_security(s, c, host, cfg);
	errors += kafka_conf_options(c, host, cfg, &nomem);
	if (nomem)
		return -ENOMEM;
	if (errors)
		return -EINVAL;
	return kafka_conf_check(s, host, cfg);
}

void kafka_settings_clear(struct kafka_settings *s)
{
	free(s->topic);
	free(s->brokers);
	if (s->base)
		rd_kafka_conf_destroy(s->base);
	memset(s, 0, sizeof(*s));
}
