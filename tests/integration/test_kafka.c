/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kafka stream module against librdkafka's mock cluster: three brokers
 * on loopback, a topic of three partitions replicated three times, the
 * daemon connecting over TCP as to any cluster, and the records read back
 * with a librdkafka consumer. Every message is stored once with its key,
 * headers and time, through a leader's broker going away and back,
 * injected produce errors, a fatal producer error, a cluster away at
 * start and a topic that does not exist yet; SIGTERM drains; TLS is
 * attempted when asked for.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "certs.h"
#include "http_get.h"
#include "kafka_mock.h"
#include "pipeline.h"
#include "tmpdir.h"
#include "tsan_skip.h"

#define TOPIC "choria.node_metadata"
#define PARTITIONS 3
#define ADAPTER "to_kafka"

static char dir[512];
static struct nats_server server;
static struct js_client client;
static struct daemon_proc daemon_a;
static struct kafka_mock mock;
static int metrics_port;

static void setup(void)
{
	/* librdkafka starts its threads with C11 thrd_create(), which this
	 * ThreadSanitizer runtime does not intercept: the daemon would crash
	 * in the sanitizer as soon as one of them runs. */
	SKIP_UNDER_TSAN("librdkafka's C11 threads are unknown to the sanitizer");
	pipeline_setup(dir, sizeof(dir), &server, &client, NULL);
	kafka_mock_start(&mock, 3);
	metrics_port = free_port();
}

static void teardown(void)
{
	pipeline_teardown(dir, &server, &client, &daemon_a);
	kafka_mock_stop(&mock);
}

TestSuite(kafka, .init = setup, .fini = teardown, .timeout = 180);

/* A configuration from the NATS server to the mock cluster; `extra` goes
 * into the stream block. */
static char *conf_kafka(const char *topic, const char *extra, int workers)
{
	char brokers[600];
	kafka_mock_broker_list(&mock, brokers, sizeof(brokers));
	char *c = NULL;
	cr_assert(asprintf(&c,
			   "identity = \"adapter.test\"\n"
			   "drain_timeout = 3\n"
			   "metrics_listen = \"127.0.0.1:%d\"\n"
			   "adapter " ADAPTER " {\n"
			   "  ingest {\n"
			   "    type = \"choria\"\n"
			   "    servers = {\"%s\"}\n"
			   "    topic = \"choria.discovery\"\n"
			   "    security = \"none\"\n"
			   "    workers = 2\n"
			   "  }\n"
			   "  stream {\n"
			   "    type = \"kafka\"\n"
			   "    brokers = {%s}\n"
			   "    topic = \"%s\"\n"
			   "    workers = %d\n"
			   "    %s\n"
			   "  }\n"
			   "}\n",
			   metrics_port, server.url, brokers, topic, workers,
			   extra ? extra : "") > 0);
	return c;
}

static void start(const char *topic, const char *extra, int workers)
{
	char *conf = conf_kafka(topic, extra, workers);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
}

static void publish(int first, int n, unsigned seed)
{
	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, first, n, seed);
}

static struct adapter_counts stop_and_count(void)
{
	return pipeline_stop_and_count(&daemon_a, ADAPTER);
}

static struct adapter_counts wait_lost(uint64_t lost, int timeout_ms)
{
	return pipeline_wait_lost(&daemon_a, ADAPTER, lost, timeout_ms);
}

static void wait_health(int want, const char *reason, int timeout_ms)
{
	pipeline_wait_health(metrics_port, want, reason, timeout_ms);
}

/* The envelope label check_records() expects. */
static const char *expected_protocol = "choria:adapters:kafka:output:1";

/* The topic holds the records of messages [first, first + n) of `seed`,
 * each with its key, headers, timestamp and envelope, and nothing else:
 * each once, or with `repeats`, each at least once. */
static void check_records_of(const char *topic, int first, int n, unsigned seed, bool repeats)
{
	cr_assert(kafka_mock_wait_stored(&mock, topic, PARTITIONS, n, 60000),
		  "%d records stored in %s (%ld there); the daemon's log:\n%s", n, topic,
		  (long)kafka_mock_stored(&mock, topic, PARTITIONS), file_read(daemon_a.log));
	int64_t stored = kafka_mock_stored(&mock, topic, PARTITIONS);
	if (repeats)
		cr_assert_geq(stored, n, "%s holds %ld records, not %d", topic, (long)stored, n);
	else
		cr_assert_eq(stored, n, "%s holds %ld records, not %d", topic, (long)stored, n);
	struct kafka_record *r = kafka_mock_read(&mock, topic, PARTITIONS, (size_t)stored, 30000);
	char *seen = calloc((size_t)n, 1);
	for (int k = 0; k < stored; k++) {
		int i = -1;
		cr_assert_not_null(r[k].key, "record %d has a key", k);
		cr_assert_eq(sscanf(r[k].key, "node-%d.example.net", &i), 1, "%s", r[k].key);
		cr_assert(i >= first && i < first + n, "%s was published", r[k].key);
		cr_assert(repeats || seen[i - first] == 0, "message %d is stored once", i);
		seen[i - first] = 1;

		char rid[33], body[128], when[32], sender[64];
		pipeline_request_id(rid, seed, i);
		snprintf(body, sizeof(body), "{\"n\":%d,\"html\":\"<b>&</b>\"}", i);
		snprintf(sender, sizeof(sender), "node-%d.example.net", i);
		time_t t = 1520088557 + i;
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
		cr_assert_str_eq(r[k].key, sender);
		cr_assert_str_eq(r[k].sender ? r[k].sender : "", sender, "choria-sender header");
		cr_assert_str_eq(r[k].requestid ? r[k].requestid : "", rid,
				 "choria-requestid header");
		cr_assert_eq(r[k].tstype, RD_KAFKA_TIMESTAMP_CREATE_TIME);
		cr_assert_eq(r[k].timestamp, (int64_t)t * 1000, "the message's time in ms");

		json_error_t e;
		json_t *env = json_loads(r[k].value, 0, &e);
		cr_assert_not_null(env, "the value is JSON (%s): %s", e.text, r[k].value);
		cr_assert_eq(json_object_size(env), 5, "the five envelope fields: %s", r[k].value);
		cr_assert_str_eq(json_string_value(json_object_get(env, "protocol")),
				 expected_protocol);
		cr_assert_str_eq(json_string_value(json_object_get(env, "sender")), sender);
		cr_assert_str_eq(json_string_value(json_object_get(env, "requestid")), rid);
		cr_assert_str_eq(json_string_value(json_object_get(env, "data")), body);
		cr_assert_str_eq(json_string_value(json_object_get(env, "time")), when);
		json_decref(env);
	}
	for (int i = 0; i < n; i++)
		cr_assert_eq(seen[i], 1, "message %d is stored", first + i);
	free(seen);
	kafka_records_free(r, (size_t)stored);
}

static void check_records(const char *topic, int first, int n, unsigned seed)
{
	check_records_of(topic, first, n, seed, false);
}

Test(kafka, every_message_is_stored_once_with_its_key_headers_and_time)
{
	kafka_mock_topic(&mock, TOPIC, PARTITIONS);
	start(TOPIC, NULL, 2);
	publish(0, 300, 0xca1);
	check_records(TOPIC, 0, 300, 0xca1);
	cr_assert(daemon_wait_log(&daemon_a, "cluster: connected", 10000));
	wait_health(200, NULL, 10000);
	struct adapter_counts n = stop_and_count();
	cr_assert_eq(n.received, 300);
	cr_assert_eq(n.published, 300);
	cr_assert_eq(n.lost + n.dropped + n.in_flight + n.retries, 0);
}

Test(kafka, output_protocol_labels_every_envelope)
{
	kafka_mock_topic(&mock, TOPIC, PARTITIONS);
	start(TOPIC, "output_protocol = \"choria:adapters:choria_streams:output:1\"", 1);
	publish(0, 20, 0xca7);
	expected_protocol = "choria:adapters:choria_streams:output:1";
	check_records(TOPIC, 0, 20, 0xca7);
	struct adapter_counts n = stop_and_count();
	cr_assert_eq(n.published, 20);
}

Test(kafka, permanent_errors_are_lost_with_their_own_reason)
{
	kafka_mock_topic(&mock, TOPIC, PARTITIONS);
	start(TOPIC, NULL, 1);
	rd_kafka_mock_push_request_errors(mock.mc, 0 /* Produce */, 1,
					  RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
	publish(1000, 1, 0xbad);
	wait_lost(1, 30000);
	publish(0, 50, 0x600d);
	check_records(TOPIC, 0, 50, 0x600d);
	rd_kafka_mock_push_request_errors(mock.mc, 0, 1,
					  RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
	publish(1001, 1, 0xbad);
	wait_lost(2, 30000);
	struct adapter_counts n = stop_and_count();
	cr_assert_eq(n.published, 50);
	cr_assert_eq(n.lost, 2);
	cr_assert_geq(daemon_log_count(&daemon_a, "lost=2 (too_large=1, not_authorized=1)"), 1,
		      "each loss has its own reason");
	cr_assert_eq(daemon_log_count(&daemon_a, "for good: MSG_SIZE_TOO_LARGE"), 1);
}

Test(kafka, retriable_produce_errors_are_retried_and_stored_once)
{
	kafka_mock_topic(&mock, TOPIC, PARTITIONS);
	start(TOPIC, NULL, 2);
	rd_kafka_mock_push_request_errors(mock.mc, 0 /* Produce */, 6,
					  RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
					  RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
					  RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
					  RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
					  RD_KAFKA_RESP_ERR__TRANSPORT,
					  RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
	publish(0, 200, 0x7e7);
	check_records(TOPIC, 0, 200, 0x7e7);
	struct adapter_counts n = stop_and_count();
	cr_assert_eq(n.published, 200);
	cr_assert_eq(n.lost + n.dropped, 0, "librdkafka retried them all");
}

Test(kafka, the_leaders_broker_away_and_back_loses_and_doubles_nothing)
{
	kafka_mock_topic(&mock, TOPIC, PARTITIONS);
	start(TOPIC, NULL, 2);
	publish(0, 150, 0x1ead);
	cr_assert(kafka_mock_wait_stored(&mock, TOPIC, PARTITIONS, 150, 60000));
	/* Broker 1 leads partition 0. */
	cr_assert_eq(rd_kafka_mock_broker_set_down(mock.mc, 1), 0);
	publish(150, 150, 0x1ead);
	struct adapter_counts c = pipeline_counts_once_received(&daemon_a, ADAPTER, 300, 30000);
	cr_assert_lt(c.published, 300, "partition 0's records wait for its leader");
	cr_assert_eq(rd_kafka_mock_broker_set_up(mock.mc, 1), 0);
	check_records(TOPIC, 0, 300, 0x1ead);
	struct adapter_counts n = stop_and_count();
	cr_assert_eq(n.published, 300);
	cr_assert_eq(n.lost + n.dropped, 0);
}

Test(kafka, a_fatal_producer_error_rebuilds_the_producer_and_sends_again)
{
	kafka_mock_topic(&mock, TOPIC, PARTITIONS);
	/* The first produce request answered out of order: the idempotence
	 * state is lost, which librdkafka raises as a fatal error. */
	rd_kafka_mock_push_request_errors(mock.mc, 0 /* Produce */, 1,
					  RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
	start(TOPIC, NULL, 2);
	publish(0, 200, 0xfa7a1);
	cr_assert(daemon_wait_log(&daemon_a, "the Kafka producer failed for good", 10000));
	struct adapter_counts n = stop_and_count();
	cr_assert_eq(n.published, 200);
	cr_assert_eq(n.lost + n.dropped, 0);
	cr_assert_gt(n.retries, 0, "what the old producer held was sent again, and counted");
	/* A record the old producer had stored but not yet reported is sent
	 * again by the new one: a new producer session, which idempotence
	 * does not span, may store it twice (as choria-adapterd.conf(5) says). */
	check_records_of(TOPIC, 0, 200, 0xfa7a1, true);
}

Test(kafka, a_cluster_away_at_start_is_waited_for)
{
	kafka_mock_topic(&mock, TOPIC, PARTITIONS);
	cr_assert_eq(rd_kafka_mock_broker_set_down(mock.mc, -1), 0);
	start(TOPIC, NULL, 2);
	publish(0, 50, 0xdead);
	pipeline_counts_once_received(&daemon_a, ADAPTER, 50, 30000);
	wait_health(503, "cluster disconnected", 30000);
	cr_assert(daemon_wait_log(&daemon_a, "no Kafka broker", 10000));
	cr_assert_eq(rd_kafka_mock_broker_set_up(mock.mc, -1), 0);
	check_records(TOPIC, 0, 50, 0xdead);
	wait_health(200, NULL, 30000);
	struct adapter_counts n = stop_and_count();
	cr_assert_eq(n.published, 50);
	cr_assert_eq(n.lost + n.dropped, 0);
}

Test(kafka, a_topic_that_does_not_exist_yet_is_retried_and_shown)
{
	/* The mock cluster creates any topic a client asks about: it is made
	 * to answer that this one is unknown instead, as a cluster does until
	 * the topic is created, and then to answer normally. */
	kafka_mock_topic(&mock, "choria.later", PARTITIONS);
	rd_kafka_mock_topic_set_error(mock.mc, "choria.later",
				      RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
	start("choria.later", "options = {\"topic.metadata.propagation.max.ms=500\"}", 1);
	publish(0, 20, 0x1a7e);
	pipeline_counts_once_received(&daemon_a, ADAPTER, 20, 30000);
	cr_assert(daemon_wait_log(&daemon_a, "topic choria.later does not exist", 30000));
	wait_health(503, "topic choria.later disconnected", 30000);
	rd_kafka_mock_topic_set_error(mock.mc, "choria.later", RD_KAFKA_RESP_ERR_NO_ERROR);
	check_records("choria.later", 0, 20, 0x1a7e);
	wait_health(200, NULL, 30000);
	struct adapter_counts n = stop_and_count();
	cr_assert_eq(n.published, 20);
	cr_assert_eq(n.lost + n.dropped, 0, "a missing topic is no loss");
	cr_assert_gt(n.retries, 0, "its records were produced again");
}

Test(kafka, a_cluster_that_stops_answering_is_reported_stalled_until_it_answers)
{
	kafka_mock_topic(&mock, TOPIC, PARTITIONS);
	start(TOPIC, "ack_timeout = 1", 1);
	publish(0, 10, 0x57a1);
	check_records(TOPIC, 0, 10, 0x57a1);
	wait_health(200, NULL, 30000);
	/* Every broker answers a minute late: connected, and silent. */
	for (int32_t b = 1; b <= 3; b++)
		cr_assert_eq(rd_kafka_mock_broker_set_rtt(mock.mc, b, 60000), 0);
	publish(10, 10, 0x57a1);
	wait_health(503, "cluster acknowledgements disconnected", 30000);
	cr_assert(daemon_wait_log(&daemon_a, "the stream side is stalled", 10000));
	for (int32_t b = 1; b <= 3; b++)
		cr_assert_eq(rd_kafka_mock_broker_set_rtt(mock.mc, b, 0), 0);
	wait_health(200, NULL, 120000);
	cr_assert(daemon_wait_log(&daemon_a, "cluster acknowledgements: connected", 10000));
	struct adapter_counts n = stop_and_count();
	cr_assert_eq(n.published, 20);
	cr_assert_eq(n.lost + n.dropped, 0);
}

Test(kafka, sigterm_drains_then_counts_what_is_left_lost_as_shutdown)
{
	kafka_mock_topic(&mock, TOPIC, PARTITIONS);
	start(TOPIC, NULL, 2);
	cr_assert(daemon_wait_log(&daemon_a, "cluster: connected", 30000));
	cr_assert_eq(rd_kafka_mock_broker_set_down(mock.mc, -1), 0);
	publish(0, 40, 0x57);
	pipeline_counts_once_received(&daemon_a, ADAPTER, 40, 30000);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct adapter_counts n = stop_and_count();
	cr_assert_geq(seconds_since(&t0), 2.5, "it waited for the drain timeout");
	cr_assert_eq(n.published, 0);
	cr_assert_eq(n.lost, 40);
	cr_assert_geq(daemon_log_count(&daemon_a, "lost=40 (shutdown=40)"), 1);
}

Test(kafka, tls_is_attempted_when_a_ca_is_given)
{
	EVP_PKEY *key = test_key_new(2048);
	struct test_cert_spec spec = {.cn = "Test Kafka CA", .from = -60, .to = 3600, .ca = true};
	X509 *ca = test_cert_make(&spec, key, NULL, NULL);
	char *pem = test_cert_pem(ca);
	char ca_path[700], extra[800];
	cr_assert_eq(tmpdir_write(dir, "kafka-ca.pem", pem, ca_path, sizeof(ca_path)), 0);
	free(pem);
	X509_free(ca);
	EVP_PKEY_free(key);
	kafka_mock_topic(&mock, TOPIC, PARTITIONS);
	snprintf(extra, sizeof(extra), "tls_ca = \"%s\"", ca_path);
	start(TOPIC, extra, 1);
	publish(0, 5, 0x715);
	/* The mock brokers speak plaintext: the handshake fails. */
	cr_assert(daemon_wait_log(&daemon_a, "SSL", 30000), "a TLS connection was attempted");
	wait_health(503, "cluster disconnected", 30000);
	struct adapter_counts n = stop_and_count();
	cr_assert_eq(n.published, 0, "nothing went out in clear");
	cr_assert_eq(kafka_mock_stored(&mock, TOPIC, PARTITIONS), 0);
}
