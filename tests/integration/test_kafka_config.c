/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kafka module's configuration, through `choria-adapterd -t`: a good
 * block described without its secret, and each error operators can make,
 * with its file, line, option and message.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_proc.h"
#include "tmpdir.h"
#include "tsan_skip.h"

static char dir[512], moddir[600];

static void setup(void)
{
	/* librdkafka starts its threads with C11 thrd_create(), which this
	 * ThreadSanitizer runtime does not intercept: the daemon would crash
	 * in the sanitizer as soon as one of them runs. */
	SKIP_UNDER_TSAN("librdkafka's C11 threads are unknown to the sanitizer");
	cr_assert_eq(tmpdir_make(dir, sizeof(dir)), 0);
	cr_assert_eq(daemon_modules_dir(moddir, sizeof(moddir), dir), 0);
}

static void teardown(void)
{
	tmpdir_remove(dir);
}

TestSuite(kafka_config, .init = setup, .fini = teardown, .timeout = 60);

/* The stream block's own lines start at line 5 of the file. */
static int check_conf(const char *stream_block, char **out, char *path, size_t len)
{
	return daemon_check_stream_block(out, dir, moddir, "kafka", stream_block, path, len);
}

/* The check fails with "<path>:<line>: adapter a: stream: <what>". */
static void expect_error(const char *block, int line, const char *what)
{
	daemon_expect_stream_error(dir, moddir, "kafka", block, line, what);
}

Test(kafka_config, a_good_block_is_described_without_its_secret)
{
	char path[700], *out = NULL;
	int st = check_conf(
		"    brokers = {\"kafka1.example.net:9093\", \"kafka2.example.net:9093\"}\n"
		"    topic = \"choria.node_metadata\"\n"
		"    workers = 2\n"
		"    compression = \"zstd\"\n"
		"    sasl_mechanism = \"SCRAM-SHA-512\"\n"
		"    sasl_username = \"choria\"\n"
		"    sasl_password = \"s3cr3t-word\"\n"
		"    options = {\"linger.ms=5\", \"batch.size=262144\"}\n",
		&out, path, sizeof(path));
	cr_assert_eq(st, 0, "%s", out);
	cr_assert_not_null(
		strstr(out,
		       "stream kafka (2 workers, brokers kafka1.example.net:9093,kafka2.example.net:9093, "
		       "topic choria.node_metadata, compression zstd, no TLS, SASL SCRAM-SHA-512, "
		       "at most 20000 unreported)"),
		"%s", out);
	cr_assert_null(strstr(out, "s3cr3t-word"), "the password is never printed:\n%s", out);
	free(out);
}

Test(kafka_config, the_topic_defaults_to_the_adapter_name)
{
	char path[700], *out = NULL;
	int st = check_conf("    brokers = {\"127.0.0.1:9092\"}\n", &out, path, sizeof(path));
	cr_assert_eq(st, 0, "%s", out);
	cr_assert_not_null(strstr(out,
				  "topic a, compression none, no TLS, at most 100000 unreported"),
			   "%s", out);
	free(out);
}

Test(kafka_config, brokers_are_required)
{
	expect_error("    topic = \"x\"\n", 4, "brokers: required option is missing");
}

Test(kafka_config, a_topic_with_the_sender_in_it_is_refused)
{
	expect_error("    brokers = {\"127.0.0.1:9092\"}\n    topic = \"choria.%s\"\n", 6,
		     "topic: 'choria.%s': Kafka partitions by key, and the key is the sender: "
		     "the topic cannot hold %s");
}

Test(kafka_config, invalid_topic_names_are_refused)
{
	expect_error(
		"    brokers = {\"127.0.0.1:9092\"}\n    topic = \"a b\"\n", 6,
		"topic: 'a b': a Kafka topic name holds only letters, digits, '.', '_' and '-'");
	expect_error("    brokers = {\"127.0.0.1:9092\"}\n    topic = \"..\"\n", 6,
		     "topic: '..': a Kafka topic cannot be named . or ..");
	char block[512], name[251];
	memset(name, 'x', 250);
	name[250] = '\0';
	snprintf(block, sizeof(block), "    brokers = {\"127.0.0.1:9092\"}\n    topic = \"%s\"\n",
		 name);
	char want[400];
	snprintf(want, sizeof(want), "topic: '%s': a Kafka topic name has 1 to 249 characters",
		 name);
	expect_error(block, 6, want);
	name[249] = '\0';
	snprintf(block, sizeof(block), "    brokers = {\"127.0.0.1:9092\"}\n    topic = \"%s\"\n",
		 name);
	char path[700], *out = NULL;
	cr_assert_eq(check_conf(block, &out, path, sizeof(path)), 0, "249 characters are fine: %s",
		     out);
	free(out);
}

Test(kafka_config, unknown_properties_and_bad_values_are_librdkafkas_words)
{
	expect_error(
		"    brokers = {\"127.0.0.1:9092\"}\n    options = {\"linger.ms=5\", \"no.such.thing=1\"}\n",
		6, "options: 'no.such.thing=1': No such configuration property: \"no.such.thing\"");
	expect_error(
		"    brokers = {\"127.0.0.1:9092\"}\n    options = {\"batch.size=lots\"}\n", 6,
		"options: 'batch.size=lots': Invalid value for configuration property \"batch.size\"");
	expect_error("    brokers = {\"127.0.0.1:9092\"}\n    options = {\"linger.ms\"}\n", 6,
		     "options: 'linger.ms' is not name=value");
}

Test(kafka_config, properties_that_break_the_guarantees_are_refused_with_why)
{
	expect_error(
		"    brokers = {\"127.0.0.1:9092\"}\n    options = {\"enable.idempotence=false\"}\n",
		6,
		"options: 'enable.idempotence=false' is refused: the module needs the idempotent "
		"producer, so that librdkafka's retries never store a record twice");
	expect_error(
		"    brokers = {\"127.0.0.1:9092\"}\n    options = {\"acks=1\"}\n", 6,
		"options: 'acks=1' is refused: a record counts published only once all in-sync "
		"replicas hold it (acks=all)");
	expect_error(
		"    brokers = {\"127.0.0.1:9092\"}\n    options = {\"message.timeout.ms=300000\"}\n",
		6,
		"options: 'message.timeout.ms=300000' is refused: records are retried for as "
		"long as the daemon runs (0, unlimited)");
	char path[700], *out = NULL;
	int st = check_conf(
		"    brokers = {\"127.0.0.1:9092\"}\n"
		"    options = {\"acks=all\", \"enable.idempotence=true\", \"message.timeout.ms=0\"}\n",
		&out, path, sizeof(path));
	cr_assert_eq(st, 0, "the module's own values are fine: %s", out);
	free(out);
}

Test(kafka_config, tls_files_are_checked)
{
	char bad[700], path[700];
	cr_assert_eq(tmpdir_write(dir, "bad-ca.pem", "not a certificate\n", bad, sizeof(bad)), 0);
	char block[1024];
	snprintf(block, sizeof(block), "    brokers = {\"127.0.0.1:9092\"}\n    tls_ca = \"%s\"\n",
		 bad);
	expect_error(block, 6, "tls_ca: ssl.ca.location failed:");
	snprintf(block, sizeof(block),
		 "    brokers = {\"127.0.0.1:9092\"}\n    tls_ca = \"%s/missing.pem\"\n", dir);
	snprintf(path, sizeof(path),
		 "tls_ca: cannot read %s/missing.pem: No such file or directory", dir);
	expect_error(block, 6, path);
	snprintf(block, sizeof(block),
		 "    brokers = {\"127.0.0.1:9092\"}\n    tls_cert = \"%s\"\n", bad);
	expect_error(block, 4, "tls_key: tls_cert and tls_key go together");
}

Test(kafka_config, sasl_needs_its_three_options)
{
	expect_error("    brokers = {\"127.0.0.1:9092\"}\n    sasl_mechanism = \"PLAIN\"\n", 6,
		     "sasl_mechanism: needs sasl_username and sasl_password");
	expect_error("    brokers = {\"127.0.0.1:9092\"}\n    sasl_username = \"u\"\n", 6,
		     "sasl_username: needs sasl_mechanism");
	expect_error("    brokers = {\"127.0.0.1:9092\"}\n    sasl_mechanism = \"GSSAPI\"\n", 6,
		     "sasl_mechanism:");
	expect_error("    brokers = {\"127.0.0.1:9092\"}\n    compression = \"brotli\"\n", 6,
		     "compression:");
}

Test(kafka_config, a_secret_among_the_options_is_never_printed)
{
	char path[700], *out = NULL;
	int st = check_conf("    brokers = {\"127.0.0.1:9092\"}\n"
			    "    options = {\"no.such.password=hunter2\"}\n",
			    &out, path, sizeof(path));
	cr_assert_eq(st, 1, "%s", out);
	cr_assert_not_null(
		strstr(out, "options: 'no.such.password=***': No such configuration property"),
		"%s", out);
	cr_assert_null(strstr(out, "hunter2"), "%s", out);
	free(out);
}
