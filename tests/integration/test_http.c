/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The http stream module against a real HTTP server on loopback (the
 * http_sink fixture on libevent's evhttp), plain and TLS with a client
 * certificate. Every message arrives once by its Idempotency-Key; each
 * retriable answer, a stall past the timeout and a cut connection are
 * retried with backoff and Retry-After honoured; other answers lose the
 * message with its reason; batches keep their members and key across a
 * retry; %s in the path is the sender, percent-encoded; a wrong server CA
 * is refused; a window held by a failing endpoint fills the queue, which
 * drops the newest; SIGTERM drains.
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
#include "http_sink.h"
#include "pipeline.h"
#include "tmpdir.h"

#define ADAPTER "to_http"

static char dir[512];
static struct nats_server server;
static struct js_client client;
static struct daemon_proc daemon_a;
static struct http_sink *sink;
static int metrics_port;
/* Lines for the adapter block, before its ingest block. */
static const char *adapter_extra = "";

static void setup(void)
{
	pipeline_setup(dir, sizeof(dir), &server, &client, NULL);
	metrics_port = free_port();
}

static void teardown(void)
{
	pipeline_teardown(dir, &server, &client, &daemon_a);
	http_sink_stop(sink);
	sink = NULL;
}

TestSuite(http, .init = setup, .fini = teardown, .timeout = 180);

static void plain_sink(void)
{
	sink = http_sink_start(NULL);
	cr_assert_not_null(sink, "the HTTP server starts");
}

/* Start the daemon from the NATS server to `url`; `extra` goes into the
 * stream block. */
static void start(const char *url, const char *extra, int workers)
{
	char *c = NULL;
	cr_assert(asprintf(&c,
			   "identity = \"adapter.test\"\n"
			   "drain_timeout = 3\n"
			   "metrics_listen = \"127.0.0.1:%d\"\n"
			   "adapter " ADAPTER " {\n"
			   "%s"
			   "  ingest {\n"
			   "    type = \"choria\"\n"
			   "    servers = {\"%s\"}\n"
			   "    topic = \"choria.discovery\"\n"
			   "    security = \"none\"\n"
			   "    workers = 2\n"
			   "  }\n"
			   "  stream {\n"
			   "    type = \"http\"\n"
			   "    url = \"%s\"\n"
			   "    workers = %d\n"
			   "    %s\n"
			   "  }\n"
			   "}\n",
			   metrics_port, adapter_extra, server.url, url, workers,
			   extra ? extra : "") > 0);
	pipeline_start_daemon(&daemon_a, dir, c);
	free(c);
}

/* http://127.0.0.1:<sink port><path> */
static const char *sink_url(const char *scheme, const char *path)
{
	static char url[256];
	snprintf(url, sizeof(url), "%s://127.0.0.1:%d%s", scheme, http_sink_port(sink), path);
	return url;
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

/* The key message i of `seed` carries. */
static void msg_key(char *out, size_t len, unsigned seed, int i)
{
	char rid[33];
	pipeline_request_id(rid, seed, i);
	snprintf(out, len, "%s:node-%d.example.net", rid, i);
}

/* One envelope line is message i of `seed`, with the http label. */
static int check_envelope(const char *text, size_t len, unsigned seed)
{
	json_error_t e;
	json_t *env = json_loadb(text, len, 0, &e);
	cr_assert_not_null(env, "an envelope (%s): %.*s", e.text, (int)len, text);
	cr_assert_eq(json_object_size(env), 5, "the five envelope fields");
	cr_assert_str_eq(json_string_value(json_object_get(env, "protocol")),
			 "choria:adapters:http:output:1");
	int i = -1;
	cr_assert_eq(sscanf(json_string_value(json_object_get(env, "sender")),
			    "node-%d.example.net", &i),
		     1);
	char rid[33], body[128];
	pipeline_request_id(rid, seed, i);
	snprintf(body, sizeof(body), "{\"n\":%d,\"html\":\"<b>&</b>\"}", i);
	cr_assert_str_eq(json_string_value(json_object_get(env, "requestid")), rid);
	cr_assert_str_eq(json_string_value(json_object_get(env, "data")), body);
	json_decref(env);
	return i;
}

/* The requests answered 2xx carried messages [first, first + n) of seed,
 * one a request, each once by its key. */
static void check_singles(int first, int n, unsigned seed)
{
	cr_assert(http_sink_wait_ok(sink, (size_t)n, 60000), "%d requests answered", n);
	size_t nr;
	struct http_sink_req *r = http_sink_reqs(sink, &nr);
	char *seen = calloc((size_t)n, 1);
	for (size_t k = 0; k < nr; k++) {
		if (r[k].status < 200 || r[k].status > 299)
			continue;
		cr_assert_str_eq(r[k].method, "POST");
		cr_assert_str_eq(r[k].content_type, "application/json");
		cr_assert_not_null(r[k].user_agent);
		cr_assert_eq(strncmp(r[k].user_agent, "choria-adapterd/", 16), 0, "%s",
			     r[k].user_agent);
		int i = check_envelope(r[k].body, r[k].body_len, seed);
		cr_assert(i >= first && i < first + n);
		char key[128];
		msg_key(key, sizeof(key), seed, i);
		cr_assert_str_eq(r[k].key ? r[k].key : "", key);
		cr_assert_eq(seen[i - first], 0, "message %d answered once", i);
		seen[i - first] = 1;
	}
	for (int i = 0; i < n; i++)
		cr_assert_eq(seen[i], 1, "message %d arrived", first + i);
	free(seen);
	http_sink_reqs_free(r, nr);
}

Test(http, every_message_arrives_once_by_its_key)
{
	plain_sink();
	start(sink_url("http", "/choria/nodes"), NULL, 2);
	publish(0, 200, 0x4771);
	check_singles(0, 200, 0x4771);
	wait_health(200, NULL, 10000);
	struct adapter_counts n = stop_and_count();
	cr_assert_eq(n.published, 200);
	cr_assert_eq(n.lost + n.dropped + n.retries, 0);
	cr_assert_eq(http_sink_count(sink), 200, "no request went twice");
}

/* The attempts of the one key the server saw, in order. */
static size_t attempts_of(const char *key, int64_t *at, size_t max, int *status)
{
	size_t nr, n = 0;
	struct http_sink_req *r = http_sink_reqs(sink, &nr);
	for (size_t k = 0; k < nr && n < max; k++)
		if (r[k].key && strcmp(r[k].key, key) == 0) {
			at[n] = r[k].at_ns;
			status[n++] = r[k].status;
		}
	http_sink_reqs_free(r, nr);
	return n;
}

Test(http, each_retriable_answer_is_retried_with_backoff)
{
	plain_sink();
	int codes[] = {500, 502, 503, 504, 408, 425};
	for (size_t i = 0; i < sizeof(codes) / sizeof(*codes); i++)
		http_sink_script(sink, 1, codes[i], NULL, "busy", 0);
	start(sink_url("http", "/hook"), "retry_max_interval = 1", 1);
	publish(0, 1, 0x5e7);
	check_singles(0, 1, 0x5e7);
	char key[128];
	msg_key(key, sizeof(key), 0x5e7, 0);
	int64_t at[16];
	int status[16];
	size_t n = attempts_of(key, at, 16, status);
	cr_assert_eq(n, 7, "six failures, then the answer");
	for (size_t i = 0; i < 6; i++)
		cr_assert_eq(status[i], codes[i]);
	/* 100 ms doubled per attempt, capped at 1 s, jittered down by at most half. */
	int64_t floor_ms[] = {50, 100, 200, 400, 500, 500};
	for (size_t i = 1; i < n; i++)
		cr_assert_geq((at[i] - at[i - 1]) / 1000000, floor_ms[i - 1] - 5,
			      "attempt %zu waited its backoff", i + 1);
	struct adapter_counts c = stop_and_count();
	cr_assert_eq(c.published, 1);
	cr_assert_eq(c.retries, 6);
	cr_assert_eq(c.lost, 0);
}

Test(http, retry_after_is_honoured_in_seconds_and_as_a_date)
{
	plain_sink();
	char date[64];
	time_t t = time(NULL) + 8;
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", gmtime(&t));
	http_sink_script(sink, 1, 429, "2", "slow down", 0);
	http_sink_script(sink, 1, 503, date, NULL, 0);
	start(sink_url("http", "/hook"), "retry_max_interval = 1", 1);
	publish(0, 1, 0x429);
	check_singles(0, 1, 0x429);
	char key[128];
	msg_key(key, sizeof(key), 0x429, 0);
	int64_t at[8];
	int status[8];
	cr_assert_eq(attempts_of(key, at, 8, status), 3);
	cr_assert_geq(at[1] - at[0], 1900 * 1000000LL,
		      "Retry-After: 2 wins over retry_max_interval");
	cr_assert_geq(at[2] - at[1], 1000 * 1000000LL, "a Retry-After date is waited for");
	struct adapter_counts c = stop_and_count();
	cr_assert_eq(c.published, 1);
	cr_assert_eq(c.retries, 2);
}

Test(http, other_answers_lose_the_message_with_their_status)
{
	plain_sink();
	http_sink_script(sink, 1, 400, NULL, "field \"x\" is \x01 wrong\nsecond line", 0);
	http_sink_script(sink, 1, 404, NULL, "no such hook", 0);
	start(sink_url("http", "/hook"), NULL, 1);
	publish(0, 1, 0x400);
	wait_lost(1, 30000);
	publish(1, 1, 0x400);
	wait_lost(2, 30000);
	publish(2, 3, 0x400);
	cr_assert(http_sink_wait_ok(sink, 3, 30000));
	wait_health(200, NULL, 10000);
	struct adapter_counts c = stop_and_count();
	cr_assert_eq(c.published, 3);
	cr_assert_eq(c.lost, 2);
	cr_assert_eq(c.retries, 0, "a lost message is not sent again");
	cr_assert_geq(daemon_log_count(&daemon_a, "lost=2 (http_400=1, http_404=1)"), 1,
		      "each loss has its status");
	cr_assert_eq(daemon_log_count(
			     &daemon_a,
			     "answered 400: 1 messages lost: \"field \\x22x\\x22 is \\x01 wrong\""),
		     1, "the first line of the body, made printable");
	cr_assert_eq(daemon_log_count(&daemon_a, "second line"), 0);
}

Test(http, stalls_past_the_timeout_and_cut_connections_are_retried)
{
	plain_sink();
	http_sink_script(sink, 1, 200, NULL, NULL, 3000);
	http_sink_script(sink, 2, 0, NULL, NULL, 0);
	start(sink_url("http", "/hook"), "timeout = 1\nretry_max_interval = 1", 1);
	publish(0, 1, 0x57a);
	char key[128];
	msg_key(key, sizeof(key), 0x57a, 0);
	cr_assert(http_sink_wait(sink, 4, 30000), "the stall, two cuts, then the answer");
	int64_t at[8];
	int status[8];
	cr_assert(http_sink_wait_ok(sink, 2, 30000));
	size_t n = attempts_of(key, at, 8, status);
	cr_assert_eq(n, 4);
	cr_assert_geq(at[1] - at[0], 900 * 1000000LL, "the stalled attempt timed out first");
	struct adapter_counts c = stop_and_count();
	cr_assert_eq(c.published, 1);
	cr_assert_eq(c.retries, 3);
	cr_assert_eq(c.lost, 0);
}

Test(http, an_endpoint_that_stops_answering_is_reported_down_until_it_answers)
{
	plain_sink();
	/* Three requests held past the timeout, then answers again. */
	http_sink_script(sink, 3, 200, NULL, NULL, 5000);
	start(sink_url("http", "/hook"), "timeout = 1\nretry_max_interval = 1", 1);
	publish(0, 1, 0x5a1);
	char reason[128];
	snprintf(reason, sizeof(reason), "endpoint 127.0.0.1:%d disconnected",
		 http_sink_port(sink));
	wait_health(503, reason, 30000);
	cr_assert(http_sink_wait_ok(sink, 1, 60000), "answered once the stalls are used up");
	wait_health(200, NULL, 30000);
	struct adapter_counts c = stop_and_count();
	cr_assert_eq(c.published, 1);
	cr_assert_eq(c.lost, 0);
	cr_assert_geq(c.retries, 3);
}

/* The lines of a batch body: checked envelopes, their indexes in idx. */
static size_t batch_members(const struct http_sink_req *r, unsigned seed, int *idx, size_t max)
{
	size_t n = 0;
	const char *p = r->body, *end = r->body + r->body_len;
	cr_assert(r->body_len > 0 && end[-1] == '\n', "each line ends with a newline");
	while (p < end && n < max) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		idx[n++] = check_envelope(p, (size_t)(nl - p), seed);
		p = nl + 1;
	}
	return n;
}

Test(http, batches_keep_their_members_and_key_across_a_retry)
{
	plain_sink();
	http_sink_script(sink, 1, 503, "0", NULL, 0);
	start(sink_url("http", "/bulk"), "batch_max = 10\nbatch_wait_ms = 300", 1);
	pipeline_publish_burst(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 25, 0xba7);
	struct adapter_counts c0 = pipeline_counts_once_settled(&daemon_a, ADAPTER, 25, 60000);
	cr_assert_eq(c0.published, 25);
	size_t nr;
	struct http_sink_req *r = http_sink_reqs(sink, &nr);
	char *seen = calloc(25, 1);
	for (size_t k = 0; k < nr; k++) {
		cr_assert_str_eq(r[k].content_type, "application/x-ndjson");
		cr_assert_eq(strncmp(r[k].key, "batch-", 6), 0, "%s", r[k].key);
		int idx[16];
		size_t m = batch_members(&r[k], 0xba7, idx, 16);
		cr_assert(m >= 1 && m <= 10, "%zu members", m);
		if (k == 0) {
			/* The first batch failed: its retry is the next request
			 * with its key, with the same members. */
			cr_assert_eq(r[0].status, 503);
			size_t j = 1;
			while (j < nr && strcmp(r[j].key, r[0].key) != 0)
				j++;
			cr_assert_lt(j, nr, "the retry has the same key");
			cr_assert_eq(r[j].body_len, r[0].body_len);
			cr_assert_eq(memcmp(r[j].body, r[0].body, r[0].body_len), 0,
				     "and the same members");
			continue;
		}
		for (size_t j = 0; j < m; j++) {
			cr_assert_eq(seen[idx[j]], 0, "message %d once", idx[j]);
			seen[idx[j]] = 1;
		}
	}
	for (int i = 0; i < 25; i++)
		cr_assert_eq(seen[i], 1, "message %d arrived", i);
	cr_assert_geq(nr, 4, "25 messages make at least 3 batches, and a retry");
	free(seen);
	http_sink_reqs_free(r, nr);
	struct adapter_counts c = stop_and_count();
	cr_assert_eq(c.published, 25);
	cr_assert_eq(c.lost, 0);
}

Test(http, the_sender_in_the_path_is_percent_encoded)
{
	plain_sink();
	start(sink_url("http", "/nodes/%s/facts?from=%s"), "method = \"PUT\"", 1);
	struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REQUEST);
	s.sender = "node 1/\xc3\xa4?&.example.net";
	s.request_id = "0123456789abcdef0123456789abcdef";
	pipeline_publish_spec(&client, "choria.discovery", &s);
	cr_assert(http_sink_wait_ok(sink, 1, 30000));
	size_t nr;
	struct http_sink_req *r = http_sink_reqs(sink, &nr);
	cr_assert_eq(nr, 1);
	cr_assert_str_eq(r[0].method, "PUT");
	cr_assert_str_eq(r[0].uri, "/nodes/node%201%2F%C3%A4%3F%26.example.net/facts"
				   "?from=node%201%2F%C3%A4%3F%26.example.net");
	cr_assert_str_eq(r[0].key,
			 "0123456789abcdef0123456789abcdef:node%201/%C3%A4?&.example.net");
	http_sink_reqs_free(r, nr);
	struct adapter_counts c = stop_and_count();
	cr_assert_eq(c.published, 1);
}

static void tls_sink(void)
{
	const struct test_pki *pki = test_pki();
	(void)pki;
	struct http_sink_tls tls = {.cert = test_pki_path("tls_server.pem"),
				    .key = test_pki_path("leaf.key"),
				    .client_ca = test_pki_path("ca.pem")};
	sink = http_sink_start(&tls);
	cr_assert_not_null(sink, "the HTTPS server starts");
}

static const char *tls_extra(const char *ca)
{
	static char extra[2048];
	snprintf(extra, sizeof(extra), "tls_ca = \"%s\"\ntls_cert = \"%s\"\ntls_key = \"%s\"",
		 test_pki_path(ca), test_pki_path("tls_client.pem"), test_pki_path("leaf.key"));
	return extra;
}

Test(http, tls_with_a_client_certificate)
{
	tls_sink();
	start(sink_url("https", "/secure"), tls_extra("ca.pem"), 2);
	publish(0, 50, 0x7150);
	check_singles(0, 50, 0x7150);
	struct adapter_counts c = stop_and_count();
	cr_assert_eq(c.published, 50);
}

Test(http, a_wrong_server_ca_is_refused_and_retried)
{
	tls_sink();
	start(sink_url("https", "/secure"), tls_extra("ca2.pem"), 1);
	publish(0, 3, 0x7151);
	char reason[128];
	snprintf(reason, sizeof(reason), "endpoint 127.0.0.1:%d disconnected",
		 http_sink_port(sink));
	wait_health(503, reason, 30000);
	cr_assert(daemon_wait_log(&daemon_a, "sending 1 messages again", 30000));
	struct adapter_counts c = stop_and_count();
	cr_assert_eq(c.published, 0);
	cr_assert_eq(c.lost, 3, "lost at the drain: %lu", (unsigned long)c.lost);
	cr_assert_eq(http_sink_count(sink), 0, "no request passed the handshake");
}

Test(http, an_endpoint_away_at_start_is_retried_not_fatal)
{
	int port = free_port();
	char url[128], reason[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", port);
	start(url, "retry_max_interval = 1", 1);
	publish(0, 2, 0xa3a);
	snprintf(reason, sizeof(reason), "endpoint 127.0.0.1:%d disconnected", port);
	wait_health(503, reason, 30000);
	struct adapter_counts c = pipeline_counts_once_received(&daemon_a, ADAPTER, 2, 30000);
	cr_assert_eq(c.published, 0);
	struct adapter_counts n = stop_and_count();
	cr_assert_eq(n.lost, 2);
	cr_assert_gt(n.retries, 0);
	cr_assert_geq(daemon_log_count(&daemon_a, "lost=2 (shutdown=2)"), 1);
}

Test(http, sigterm_delivers_what_is_queued_then_counts_the_rest_as_shutdown)
{
	plain_sink();
	/* A batch that waits a minute goes at once on SIGTERM. */
	start(sink_url("http", "/bulk"), "batch_max = 100\nbatch_wait_ms = 60000", 1);
	publish(0, 7, 0xd7a);
	pipeline_counts_once_received(&daemon_a, ADAPTER, 7, 30000);
	struct adapter_counts c = stop_and_count();
	cr_assert_eq(c.published, 7);
	cr_assert_eq(c.lost, 0);

	/* An endpoint that keeps failing holds the shutdown to drain_timeout. */
	http_sink_script(sink, 100000, 503, NULL, NULL, 0);
	start(sink_url("http", "/hook"), "retry_max_interval = 1", 2);
	publish(0, 20, 0xd7b);
	pipeline_counts_once_received(&daemon_a, ADAPTER, 20, 30000);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	c = stop_and_count();
	cr_assert_geq(seconds_since(&t0), 2.5, "it waited for the drain timeout");
	cr_assert_eq(c.published, 0);
	cr_assert_eq(c.lost, 20);
	cr_assert_geq(daemon_log_count(&daemon_a, "lost=20 (shutdown=20)"), 1);
}

Test(http, a_full_window_fills_the_queue_which_drops_the_newest)
{
	plain_sink();
	http_sink_script(sink, 100000, 503, NULL, NULL, 0);
	adapter_extra = "  queue_len = 10\n";
	start(sink_url("http", "/hook"), "max_inflight = 2\nretry_max_interval = 1", 1);
	pipeline_publish_burst(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 100, 0xf11);
	struct adapter_counts c = pipeline_counts_once_received(&daemon_a, ADAPTER, 100, 30000);
	/* At most the window of 2, what the host's worker took off the queue
	 * at once (32) and the queue's 10 are held: the rest was dropped. */
	cr_assert_leq(c.in_flight, 44, "%lu held", (unsigned long)c.in_flight);
	cr_assert_geq(c.dropped, 56, "%lu dropped", (unsigned long)c.dropped);
	cr_assert(http_sink_wait(sink, 4, 30000), "the window is retried meanwhile");
	struct adapter_counts n = stop_and_count();
	cr_assert_eq(n.published, 0);
	cr_assert_eq(n.dropped + n.lost, 100);
	cr_assert_gt(n.retries, 0);
}

int main(int argc, char **argv)
{
	return test_pki_main(argc, argv);
}
