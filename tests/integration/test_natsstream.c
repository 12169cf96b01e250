/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The natsstream module end to end: Choria messages published on a real
 * nats-server go through the built daemon to the NATS Streaming protocol
 * responder of tests/stan/, on the same server, which records every publish.
 * No NATS Streaming server is packaged in Debian: these tests check the
 * module against the protocol as that responder speaks it (connect, publish
 * and acknowledgement, pings, close), not against a real NATS Streaming
 * server.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "http_get.h"
#include "pipeline.h"
#include "stan_responder.h"
#include "tmpdir.h"

#define CLUSTER "test-cluster"
#define SEED 0x5a17u

static char dir[512];
static struct nats_server server;
static struct js_client client;
static struct stan_responder *stan;
static struct daemon_proc daemon_a;
static struct nats_server small; /* a second server, for one test */

static void setup(void)
{
	cr_assert_eq(tmpdir_make(dir, sizeof(dir)), 0);
	cr_assert_eq(nats_server_start(&server, dir, 0, NULL), 0, "nats-server must start");
	cr_assert_eq(js_client_open(&client, server.url), 0);
	cr_assert_eq(stan_responder_start(&stan, server.url, CLUSTER), 0);
}

static void teardown(void)
{
	if (daemon_a.pid > 0)
		daemon_stop(&daemon_a, SIGKILL, 5000);
	stan_responder_stop(stan);
	stan = NULL;
	js_client_close(&client);
	nats_server_stop(&small);
	nats_server_stop(&server);
	tmpdir_remove(dir);
}

TestSuite(natsstream, .init = setup, .fini = teardown, .timeout = 120);

/* One adapter, node_data: requests on choria.discovery into channels
 * choria.node_metadata.<sender>, with `extra` stream options. */
static char *conf_ns_at(const char *stream_url, int workers, const char *extra, int drain_timeout)
{
	char *c = NULL;
	cr_assert(asprintf(&c,
			   "identity = \"adapter.test\"\n"
			   "drain_timeout = %d\n"
			   "adapter node_data {\n"
			   "  ingest {\n"
			   "    type = \"choria\"\n"
			   "    servers = {\"%s\"}\n"
			   "    topic = \"choria.discovery\"\n"
			   "    security = \"none\"\n"
			   "    workers = 1\n"
			   "  }\n"
			   "  stream {\n"
			   "    type = \"natsstream\"\n"
			   "    servers = {\"%s\"}\n"
			   "    clusterid = \"" CLUSTER "\"\n"
			   "    topic = \"choria.node_metadata.%%s\"\n"
			   "    workers = %d\n"
			   "    %s\n"
			   "  }\n"
			   "}\n",
			   drain_timeout, server.url, stream_url, workers, extra ? extra : "") > 0);
	return c;
}

static char *conf_ns(int workers, const char *extra, int drain_timeout)
{
	return conf_ns_at(server.url, workers, extra, drain_timeout);
}

static void start(int workers, const char *extra, int drain_timeout)
{
	char *conf = conf_ns(workers, extra, drain_timeout);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
}

static void publish(int first, int n)
{
	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, first, n, SEED);
}

static struct adapter_counts stop_and_count(int signal_to_send)
{
	cr_assert_eq(daemon_stop(&daemon_a, signal_to_send, 30000), 0, "the daemon exits 0");
	struct adapter_counts n;
	cr_assert(pipeline_counts(&daemon_a, "node_data", &n), "the daemon logged its counters");
	if (getenv("CAD_TEST_SHOW_LOG")) {
		char *log = file_read(daemon_a.log);
		fprintf(stderr, "%s", log ? log : "");
		free(log);
	}
	return n;
}

/* stop_and_count(SIGTERM), then wait until the responder has handled
 * the close of each of the daemon's `sessions`: all the daemon published
 * before them is counted there, duplicates too, and nothing more can come. */
static struct adapter_counts stop_and_count_closed(unsigned sessions)
{
	struct adapter_counts n = stop_and_count(SIGTERM);
	cr_assert(stan_responder_wait_closes(stan, sessions, 10000), "%u sessions closed",
		  sessions);
	return n;
}

/* Check every field of a publish's envelope and its channel; returns the
 * index i of the message pipeline_publish() sent. */
static int check_pub(const struct stan_pub *p)
{
	json_error_t e;
	json_t *env = json_loadb(p->data, p->len, 0, &e);
	cr_assert_not_null(env, "envelope is JSON: %s", e.text);
	cr_assert_eq(json_object_size(env), 5, "exactly the five envelope fields");
	const char *sender = json_string_value(json_object_get(env, "sender"));
	cr_assert_not_null(sender);
	int i = -1;
	cr_assert_eq(sscanf(sender, "node-%d.example.net", &i), 1, "sender %s", sender);

	char channel[128], rid[33], body[128], when[32], tail[140];
	snprintf(channel, sizeof(channel), "choria.node_metadata.%s", sender);
	cr_assert_str_eq(p->channel, channel);
	/* On the wire: <publish prefix handed out at connect>.<channel>. */
	snprintf(tail, sizeof(tail), ".%s", channel);
	cr_assert_eq(strncmp(p->subject, "_STAN.pub.", 10), 0, "%s", p->subject);
	cr_assert_str_eq(p->subject + strlen(p->subject) - strlen(tail), tail);
	pipeline_request_id(rid, SEED, i);
	snprintf(body, sizeof(body), "{\"n\":%d,\"html\":\"<b>&</b>\"}", i);
	time_t t = 1520088557 + i;
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
	cr_assert_str_eq(json_string_value(json_object_get(env, "protocol")),
			 "choria:adapters:natsstream:output:1");
	cr_assert_str_eq(json_string_value(json_object_get(env, "data")), body,
			 "data is the body exactly as sent");
	cr_assert_str_eq(json_string_value(json_object_get(env, "time")), when);
	cr_assert_str_eq(json_string_value(json_object_get(env, "requestid")), rid);
	json_decref(env);
	return i;
}

/* How many times each of messages [0, n) was stored; checks every stored
 * envelope on the way. */
static void stored_per_message(int *counts, int n)
{
	memset(counts, 0, sizeof(int) * (size_t)n);
	struct stan_pub *pubs = NULL;
	size_t np = stan_responder_pubs(stan, &pubs);
	for (size_t k = 0; k < np; k++) {
		if (!pubs[k].stored)
			continue;
		int i = check_pub(&pubs[k]);
		cr_assert(i >= 0 && i < n, "message %d was not published by the test", i);
		counts[i]++;
	}
	stan_pubs_free(pubs, np);
}

static void assert_each_stored_once(int n)
{
	int *counts = calloc((size_t)n, sizeof(int));
	stored_per_message(counts, n);
	for (int i = 0; i < n; i++)
		cr_assert_eq(counts[i], 1, "message %d stored %d times", i, counts[i]);
	free(counts);
}

/* Wait until the daemon's log holds `text` at least n times; the count. */
static int wait_log_count(const char *text, int n, int timeout_ms)
{
	int c = 0;
	for (int waited = 0; (c = daemon_log_count(&daemon_a, text)) < n && waited < timeout_ms;
	     waited += 50)
		nats_Sleep(50);
	return c;
}

static bool client_id_form(const char *id)
{
	regex_t re;
	cr_assert_eq(regcomp(&re, "^node_data_[0-9]+-[0-9a-z]{12}-[0-9]+$", REG_EXTENDED), 0);
	bool ok = regexec(&re, id, 0, NULL, 0) == 0;
	regfree(&re);
	return ok;
}

Test(natsstream, envelopes_channels_acks_and_client_ids)
{
	start(2, NULL, 10);
	publish(0, 60);
	cr_assert(stan_responder_wait_stored(stan, 60, 15000), "60 messages stored");

	struct stan_session *ss = NULL;
	size_t n = stan_responder_sessions(stan, &ss);
	cr_assert_eq(n, 2, "one streaming connection per worker");
	for (size_t i = 0; i < n; i++) {
		cr_assert(client_id_form(ss[i].client_id), "client id %s", ss[i].client_id);
		cr_assert(ss[i].alive);
	}
	cr_assert_str_neq(ss[0].client_id, ss[1].client_id);
	bool w1 = strncmp(ss[0].client_id, "node_data_1-", 12) == 0 ||
		  strncmp(ss[1].client_id, "node_data_1-", 12) == 0;
	bool w2 = strncmp(ss[0].client_id, "node_data_2-", 12) == 0 ||
		  strncmp(ss[1].client_id, "node_data_2-", 12) == 0;
	cr_assert(w1 && w2, "client ids %s and %s name workers 1 and 2", ss[0].client_id,
		  ss[1].client_id);
	free(ss);

	struct adapter_counts c = stop_and_count_closed(2);
	assert_each_stored_once(60);
	cr_assert_eq(c.received, 60);
	cr_assert_eq(c.published, 60, "every acknowledgement counted once");
	cr_assert_eq(c.retries + c.rejected + c.dropped + c.lost + c.in_flight, 0);
	struct stan_counts sc;
	stan_responder_counts(stan, &sc);
	cr_assert_eq(sc.pubs, 60, "no publish sent twice");
	cr_assert_eq(sc.acked, 60);
	cr_assert_eq(sc.closes, 2, "each worker closes its session on exit");
}

Test(natsstream, two_daemons_get_distinct_client_ids)
{
	char dir_b[600];
	snprintf(dir_b, sizeof(dir_b), "%s/b", dir);
	cr_assert_eq(mkdir(dir_b, 0755), 0);
	char *conf = conf_ns(1, NULL, 10);
	pipeline_start_daemon(&daemon_a, dir, conf);
	struct daemon_proc daemon_b;
	pipeline_start_daemon(&daemon_b, dir_b, conf);
	free(conf);
	struct stan_counts sc;
	stan_responder_counts(stan, &sc);
	cr_assert_eq(sc.connects, 2, "the same adapter in two daemons: both are accepted");
	cr_assert_eq(sc.refused, 0);
	struct stan_session *ss = NULL;
	cr_assert_eq(stan_responder_sessions(stan, &ss), 2);
	cr_assert_str_neq(ss[0].client_id, ss[1].client_id, "distinct client ids");
	free(ss);
	publish(0, 20);
	cr_assert(stan_responder_wait_stored(stan, 20, 15000));
	cr_assert_eq(daemon_stop(&daemon_b, SIGTERM, 30000), 0);
	stop_and_count_closed(2);
	assert_each_stored_once(20);
}

Test(natsstream, the_window_bounds_unacknowledged_publishes)
{
	stan_responder_set_ack_mode(stan, STAN_ACK_HOLD);
	start(1, "max_inflight = 4\n    ack_timeout = 60", 10);
	publish(0, 20);
	cr_assert(stan_responder_wait_pubs(stan, 4, 10000));
	nats_Sleep(500);
	struct stan_counts sc;
	stan_responder_counts(stan, &sc);
	cr_assert_eq(sc.pubs, 4, "at most max_inflight publishes wait for an acknowledgement");

	/* Each release lets the next four through. */
	for (int round = 0; round < 100 && sc.pubs < 20; round++) {
		stan_responder_release(stan);
		nats_Sleep(50);
		stan_responder_counts(stan, &sc);
		cr_assert_leq(sc.pubs - sc.acked, 4, "window exceeded: %zu sent, %zu acked",
			      sc.pubs, sc.acked);
	}
	stan_responder_set_ack_mode(stan, STAN_ACK);
	stan_responder_release(stan);
	cr_assert_eq(sc.pubs, 20);
	struct adapter_counts c = stop_and_count(SIGTERM);
	cr_assert_eq(c.published, 20);
	cr_assert_eq(c.retries + c.lost, 0);
	assert_each_stored_once(20);
}

Test(natsstream, a_full_window_refills_on_acknowledgements_not_on_timers)
{
	/* A window of 8, full nearly all the time: acknowledgements wake the
	 * waiting worker. Had it to wait for its 50 ms timer instead, eight
	 * a timer at most, and a timed wait never ends early, 2000 messages
	 * would take 12.5 s at least. The bound sits below that. */
	start(1, "max_inflight = 8", 10);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	publish(0, 2000);
	cr_assert(stan_responder_wait_stored(stan, 2000, 60000), "2000 messages stored");
	double s = seconds_since(&t0);
	cr_assert_lt(s, 10.0, "2000 messages through a window of 8 took %.1f s", s);
	struct adapter_counts c = stop_and_count(SIGTERM);
	cr_assert_eq(c.published, 2000);
	cr_assert_eq(c.retries + c.lost + c.dropped, 0);
}

Test(natsstream, a_silent_server_is_retried_until_it_acknowledges)
{
	stan_responder_set_ack_mode(stan, STAN_ACK_NONE);
	start(2, "ack_timeout = 1\n    retry_max_interval = 1", 10);
	publish(0, 20);
	cr_assert(stan_responder_wait_pubs(stan, 40, 10000),
		  "unacknowledged publishes are sent again");
	struct stan_counts sc;
	stan_responder_counts(stan, &sc);
	cr_assert_eq(sc.stored, 0);

	stan_responder_set_ack_mode(stan, STAN_ACK);
	cr_assert(stan_responder_wait_stored(stan, 20, 15000), "delivered once the server answers");
	struct adapter_counts c = stop_and_count_closed(2);
	cr_assert_eq(c.published, 20, "each message counted published once");
	cr_assert_gt(c.retries, 0);
	cr_assert_eq(c.lost + c.in_flight, 0);
	assert_each_stored_once(20);
	cr_assert_gt(daemon_log_count(&daemon_a, "did not acknowledge a publish"), 0);
}

Test(natsstream, error_acknowledgements_are_retried)
{
	stan_responder_set_ack_mode(stan, STAN_ACK_ERROR);
	start(1, "retry_max_interval = 1", 10);
	publish(0, 10);
	cr_assert(stan_responder_wait_pubs(stan, 20, 10000), "refused publishes are sent again");
	stan_responder_set_ack_mode(stan, STAN_ACK);
	cr_assert(stan_responder_wait_stored(stan, 10, 15000));
	struct adapter_counts c = stop_and_count_closed(1);
	cr_assert_eq(c.published, 10);
	cr_assert_gt(c.retries, 0);
	cr_assert_eq(c.lost, 0);
	assert_each_stored_once(10);
	cr_assert_gt(daemon_log_count(&daemon_a, "stan: store failed"), 0);
}

/* NATS Streaming has no duplicate detection: a message whose
 * acknowledgement was lost is stored again when it is retried. The daemon
 * still counts it published once, and loses nothing. */
Test(natsstream, lost_acknowledgements_store_duplicates_but_lose_nothing)
{
	stan_responder_set_ack_mode(stan, STAN_ACK_LOST);
	start(1, "ack_timeout = 1\n    retry_max_interval = 1", 10);
	publish(0, 10);
	cr_assert(stan_responder_wait_stored(stan, 20, 10000), "retried after the lost acks");
	stan_responder_set_ack_mode(stan, STAN_ACK);
	struct stan_counts sc;
	for (int waited = 0; waited < 15000; waited += 50) {
		stan_responder_counts(stan, &sc);
		if (sc.acked >= 10)
			break;
		nats_Sleep(50);
	}
	cr_assert_geq(sc.acked, 10);
	struct adapter_counts c = stop_and_count_closed(1);
	cr_assert_eq(c.published, 10, "never counted published twice");
	cr_assert_eq(c.lost + c.in_flight, 0);
	cr_assert_geq(c.retries, 10);
	int counts[10];
	stored_per_message(counts, 10);
	for (int i = 0; i < 10; i++)
		cr_assert_geq(counts[i], 2, "message %d: stored before and after its lost ack", i);
}

Test(natsstream, a_server_that_forgets_its_clients_is_reconnected_to)
{
	start(2, "ping_interval = 1\n    retry_max_interval = 1", 10);
	publish(0, 10);
	cr_assert(stan_responder_wait_stored(stan, 10, 15000));

	/* As a restarted server would: pings and publishes of the old
	 * sessions are answered with errors. */
	stan_responder_drop_sessions(stan);
	publish(10, 10);
	cr_assert(stan_responder_wait_connects(stan, 4, 15000), "both workers connect again");
	cr_assert(stan_responder_wait_stored(stan, 20, 15000), "what was refused is sent again");
	publish(20, 10);
	cr_assert(stan_responder_wait_stored(stan, 30, 15000));

	struct stan_session *ss = NULL;
	size_t n = stan_responder_sessions(stan, &ss);
	cr_assert_eq(n, 4);
	for (size_t i = 0; i < n; i++)
		cr_assert(client_id_form(ss[i].client_id), "%s", ss[i].client_id);
	cr_assert(!ss[0].alive && !ss[1].alive && ss[2].alive && ss[3].alive);
	free(ss);
	/* The library reports the loss on its own thread, maybe after the
	 * worker found the connection closed and replaced it. */
	cr_assert_eq(wait_log_count("lost the NATS Streaming connection", 2, 5000), 2);

	struct adapter_counts c = stop_and_count_closed(2);
	cr_assert_eq(c.received, 30);
	cr_assert_eq(c.published, 30);
	cr_assert_eq(c.lost + c.in_flight, 0);
	assert_each_stored_once(30);
}

Test(natsstream, unanswered_pings_end_the_connection_and_it_is_remade)
{
	start(1, "ping_interval = 1\n    ping_max_out = 2\n    retry_max_interval = 1", 10);
	publish(0, 5);
	cr_assert(stan_responder_wait_stored(stan, 5, 15000));
	stan_responder_answer_pings(stan, false);
	cr_assert(daemon_wait_log(&daemon_a, "lost the NATS Streaming connection", 15000),
		  "unanswered pings are noticed");
	stan_responder_answer_pings(stan, true);
	cr_assert(stan_responder_wait_connects(stan, 2, 15000));
	/* The connection's state, as the daemon reports it. */
	cr_assert_eq(wait_log_count("stream 1: connected\n", 2, 5000), 2);
	cr_assert_eq(daemon_log_count(&daemon_a, "stream 1: disconnected\n"), 1);
	publish(5, 5);
	cr_assert(stan_responder_wait_stored(stan, 10, 15000));
	struct adapter_counts c = stop_and_count_closed(1);
	cr_assert_eq(c.published, 10);
	cr_assert_eq(c.lost, 0);
	assert_each_stored_once(10);
}

Test(natsstream, a_server_that_stops_acknowledging_is_reported_stalled_until_it_answers)
{
	int port = free_port();
	char *ns = conf_ns(1, "ack_timeout = 1\n    retry_max_interval = 1", 5), *conf = NULL;
	cr_assert(asprintf(&conf, "metrics_listen = \"127.0.0.1:%d\"\n%s", port, ns) > 0);
	free(ns);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	publish(0, 5);
	cr_assert(stan_responder_wait_stored(stan, 5, 15000));
	cr_assert(pipeline_health_within(port, 200, NULL, 30000, NULL, NULL, 0),
		  "healthy while the server answers");

	stan_responder_set_ack_mode(stan, STAN_ACK_NONE);
	publish(5, 5);
	cr_assert(pipeline_health_within(
			  port, 503,
			  "\"adapter node_data: stream 1 acknowledgements disconnected\"", 60000,
			  NULL, NULL, 0),
		  "/healthz reports the stall");
	cr_assert_eq(pipeline_connection_up(port, "stream 1"), 1, "while the connection is up");
	cr_assert_eq(pipeline_connection_up(port, "stream 1 acknowledgements"), 0);
	cr_assert(daemon_wait_log(&daemon_a, "stream 1 acknowledgements: 5 publishes held", 10000));

	stan_responder_set_ack_mode(stan, STAN_ACK);
	cr_assert(pipeline_health_within(port, 200, NULL, 60000, NULL, NULL, 0),
		  "healthy again once answered");
	cr_assert_eq(pipeline_connection_up(port, "stream 1 acknowledgements"), 1);
	cr_assert(stan_responder_wait_stored(stan, 10, 15000));
}

Test(natsstream, each_worker_connection_has_its_metrics_series)
{
	int port = free_port();
	char *ns = conf_ns(2, NULL, 5), *conf = NULL;
	cr_assert(asprintf(&conf, "metrics_listen = \"127.0.0.1:%d\"\n%s", port, ns) > 0);
	free(ns);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	cr_assert(stan_responder_wait_connects(stan, 2, 15000));
	cr_assert_eq(wait_log_count("stream 2: connected\n", 1, 5000), 1);
	cr_assert_eq(pipeline_connection_up(port, "stream 1"), 1);
	cr_assert_eq(pipeline_connection_up(port, "stream 2"), 1);
	cr_assert_eq(pipeline_connection_up(port, "stream 3"), -1, "one series a worker");
}

Test(natsstream, a_restarted_nats_server_is_ridden_out)
{
	start(1, "ping_interval = 1\n    ping_max_out = 2\n    retry_max_interval = 1", 10);
	publish(0, 5);
	cr_assert(stan_responder_wait_stored(stan, 5, 15000));
	/* Acknowledged too: a publish stored whose acknowledgement the kill
	 * cut off would be sent again and stored twice, as NATS Streaming
	 * allows. */
	pipeline_counts_once_settled(&daemon_a, "node_data", 5, 15000);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	nats_server_kill(&server);
	/* Unreachable is said once an attempt has failed, 250 ms after the
	 * loss, not at once. */
	cr_assert(daemon_wait_log(&daemon_a, "stream 1: cannot connect to nats://", 10000));
	double after = seconds_since(&t0);
	cr_assert_geq(after, 0.2, "said %.3f s after the loss, before any attempt", after);
	/* Away for longer than the pings allow. */
	cr_assert(daemon_wait_log(&daemon_a, "lost the NATS Streaming connection", 15000));
	cr_assert_eq(nats_server_restart(&server), 0);
	cr_assert(stan_responder_wait_connects(stan, 2, 30000), "the module connects again");
	/* The ingest connection is back too once it has said so twice. */
	cr_assert_geq(wait_log_count("ingest 1: connected", 2, 20000), 2);
	nats_Sleep(500);
	publish(5, 5);
	cr_assert(stan_responder_wait_stored(stan, 10, 15000));
	struct adapter_counts c = stop_and_count_closed(1);
	cr_assert_eq(c.published, 10);
	cr_assert_eq(c.lost, 0);
	assert_each_stored_once(10);
}

Test(natsstream, a_cluster_away_at_start_is_waited_for)
{
	stan_responder_stop(stan);
	stan = NULL;
	start(1, "retry_max_interval = 1", 10);
	cr_assert(daemon_wait_log(&daemon_a, "cannot connect to NATS Streaming cluster " CLUSTER,
				  5000));
	publish(0, 10);
	nats_Sleep(500);
	cr_assert_eq(stan_responder_start(&stan, server.url, CLUSTER), 0);
	cr_assert(stan_responder_wait_stored(stan, 10, 15000),
		  "delivered once the cluster answers");
	struct adapter_counts c = stop_and_count_closed(1);
	cr_assert_eq(c.published, 10);
	cr_assert_eq(c.lost, 0);
	assert_each_stored_once(10);
}

Test(natsstream, sigterm_waits_for_outstanding_acknowledgements)
{
	stan_responder_set_ack_mode(stan, STAN_ACK_HOLD);
	start(1, "ack_timeout = 60", 10);
	publish(0, 10);
	cr_assert(stan_responder_wait_pubs(stan, 10, 10000));
	kill(daemon_a.pid, SIGTERM);
	nats_Sleep(1000);
	cr_assert_eq(stan_responder_release(stan), 10);
	struct adapter_counts c = stop_and_count(SIGTERM);
	cr_assert_eq(c.published, 10, "acknowledged during the drain");
	cr_assert_eq(c.lost + c.in_flight, 0);
	struct stan_counts sc;
	stan_responder_counts(stan, &sc);
	cr_assert_eq(sc.closes, 1);
}

Test(natsstream, sigterm_gives_up_at_the_drain_timeout_and_counts_the_loss)
{
	stan_responder_set_ack_mode(stan, STAN_ACK_NONE);
	start(1, "ack_timeout = 60", 2);
	publish(0, 10);
	cr_assert(stan_responder_wait_pubs(stan, 10, 10000));
	/* The acknowledgements would be waited for 60 s: the exit within
	 * stop_and_count()'s 30 s, with the loss counted at shutdown, is the
	 * drain's 2 s ending it. */
	struct adapter_counts c = stop_and_count(SIGTERM);
	cr_assert_eq(c.published, 0);
	cr_assert_eq(c.lost, 10);
	cr_assert_eq(c.in_flight, 0);
	cr_assert_gt(daemon_log_count(&daemon_a, "lost=10 (shutdown=10)"), 0);
}

Test(natsstream, a_message_larger_than_the_server_accepts_is_counted_lost)
{
	/* The stream side on a server with a small max_payload; the fleet
	 * side on the usual one, which takes the large message in. */
	char sdir[600];
	snprintf(sdir, sizeof(sdir), "%s/small", dir);
	cr_assert_eq(mkdir(sdir, 0755), 0);
	cr_assert_eq(nats_server_start(&small, sdir, 0, "max_payload: 4096"), 0);
	stan_responder_stop(stan);
	cr_assert_eq(stan_responder_start(&stan, small.url, CLUSTER), 0);
	char *conf = conf_ns_at(small.url, 1, NULL, 10);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);

	pipeline_publish_big(&client, "choria.discovery");
	publish(0, 3);
	cr_assert(stan_responder_wait_stored(stan, 3, 15000), "the others still flow");
	struct adapter_counts c = stop_and_count_closed(1);
	cr_assert_eq(c.received, 4);
	cr_assert_eq(c.published, 3);
	cr_assert_eq(c.lost, 1);
	cr_assert_eq(c.retries, 0, "a message too large is never retried");
	cr_assert_gt(daemon_log_count(&daemon_a, "lost=1 (too_large=1)"), 0);
	assert_each_stored_once(3);
}

Test(natsstream, senders_that_cannot_form_a_channel_are_counted_lost_as_bad_subject)
{
	start(1, NULL, 10);
	/* A space, and a sender too long for any channel. */
	char long_sender[2001];
	memset(long_sender, 'n', sizeof(long_sender) - 1);
	long_sender[sizeof(long_sender) - 1] = '\0';
	const char *senders[] = {"node one.example.net", long_sender};
	for (size_t i = 0; i < sizeof(senders) / sizeof(*senders); i++) {
		struct choria_msg_spec m = choria_msg_defaults(CHORIA_MSG_REQUEST);
		m.sender = senders[i];
		pipeline_publish_spec(&client, "choria.discovery", &m);
	}
	publish(0, 3);
	cr_assert(stan_responder_wait_stored(stan, 3, 15000), "the others still flow");
	struct adapter_counts c = stop_and_count(SIGTERM);
	cr_assert_eq(c.received, 5);
	cr_assert_eq(c.published, 3);
	cr_assert_eq(c.lost, 2);
	cr_assert_gt(daemon_log_count(&daemon_a, "lost=2 (bad_subject=2)"), 0);
	assert_each_stored_once(3);
}

Test(natsstream, output_protocol_labels_every_envelope)
{
	start(1, "output_protocol = \"choria:adapters:choria_streams:output:1\"", 10);
	publish(0, 5);
	cr_assert(stan_responder_wait_stored(stan, 5, 15000), "5 messages stored");
	struct stan_pub *pubs = NULL;
	size_t np = stan_responder_pubs(stan, &pubs), labelled = 0;
	for (size_t k = 0; k < np; k++) {
		json_t *env = json_loadb(pubs[k].data, pubs[k].len, 0, NULL);
		cr_assert_not_null(env);
		cr_assert_str_eq(json_string_value(json_object_get(env, "protocol")),
				 "choria:adapters:choria_streams:output:1");
		labelled += pubs[k].stored;
		json_decref(env);
	}
	stan_pubs_free(pubs, np);
	cr_assert_eq(labelled, 5);
	stop_and_count_closed(1);
}
