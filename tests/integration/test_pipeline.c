/* SPDX-License-Identifier: Apache-2.0 */
/*
 * End to end: Choria messages published on a real nats-server are read by
 * the built daemon and land in a JetStream stream, one envelope each.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "http_get.h"
#include "pipeline.h"
#include "tmpdir.h"

static char dir[512];
static struct nats_server server;
static struct js_client client;
static struct daemon_proc daemon_a;
static struct nats_server small; /* a stream side with a small max_payload */
static struct js_client small_client;

static void setup(void)
{
	pipeline_setup(dir, sizeof(dir), &server, &client, "NODES");
}

static void teardown(void)
{
	if (small.pid > 0) {
		js_client_close(&small_client);
		nats_server_stop(&small);
	}
	pipeline_teardown(dir, &server, &client, &daemon_a);
}

TestSuite(pipeline, .init = setup, .fini = teardown, .timeout = 120);

static char *conf_one(const char *name, const char *protocol, const char *topic, int queue_len)
{
	char *c = NULL;
	cr_assert(asprintf(&c,
			   "identity = \"adapter.test\"\n"
			   "log_level = \"info\"\n"
			   "adapter %s {\n"
			   "  queue_len = %d\n"
			   "  ingest {\n"
			   "    type = \"choria\"\n"
			   "    servers = {\"%s\"}\n"
			   "    topic = \"%s\"\n"
			   "    protocol = \"%s\"\n"
			   "    security = \"none\"\n"
			   "    workers = 2\n"
			   "  }\n"
			   "  stream {\n"
			   "    type = \"jetstream\"\n"
			   "    servers = {\"%s\"}\n"
			   "    topic = \"choria.node_metadata.%%s\"\n"
			   "    workers = 2\n"
			   "  }\n"
			   "}\n",
			   name, queue_len, server.url, topic, protocol, server.url) > 0);
	return c;
}

/* Every field of stored message `seq` is the one published for index i. */
static void check_envelope(uint64_t seq, enum choria_msg_kind kind, unsigned seed)
{
	natsMsg *m = js_stream_get(&client, "NODES", seq);
	cr_assert_not_null(m, "message %lu is in the stream", (unsigned long)seq);
	json_error_t e;
	json_t *env = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, &e);
	cr_assert_not_null(env, "envelope is JSON: %s", e.text);
	cr_assert_eq(json_object_size(env), 5, "exactly the five envelope fields");

	const char *sender = json_string_value(json_object_get(env, "sender"));
	cr_assert_not_null(sender);
	int i = -1;
	cr_assert_eq(sscanf(sender, "node-%d.example.net", &i), 1, "sender %s", sender);

	char subject[128], rid[33], body[128], when[32], msgid[128];
	snprintf(subject, sizeof(subject), "choria.node_metadata.%s", sender);
	cr_assert_str_eq(natsMsg_GetSubject(m), subject);
	pipeline_request_id(rid, seed, i);
	snprintf(body, sizeof(body), "{\"n\":%d,\"html\":\"<b>&</b>\"}", i);
	time_t t = 1520088557 + i;
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));

	cr_assert_str_eq(json_string_value(json_object_get(env, "protocol")),
			 "choria:adapters:jetstream:output:1");
	cr_assert_str_eq(json_string_value(json_object_get(env, "data")), body,
			 "data is the body exactly as sent, escapes decoded");
	cr_assert_str_eq(json_string_value(json_object_get(env, "time")), when);
	cr_assert_str_eq(json_string_value(json_object_get(env, "requestid")), rid);

	const char *id = NULL;
	cr_assert_eq(natsMsgHeader_Get(m, "Nats-Msg-Id", &id), NATS_OK);
	snprintf(msgid, sizeof(msgid), "%s:%s", rid, sender);
	cr_assert_str_eq(id, msgid);
	(void)kind;
	json_decref(env);
	natsMsg_Destroy(m);
}

Test(pipeline, requests_arrive_in_the_stream_with_every_envelope_field)
{
	char *conf = conf_one("node_data", "request", "choria.discovery", 1000);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);

	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 50, 0xabc);
	cr_assert(js_stream_wait_count(&client, "NODES", 50, 15000), "50 messages stored");
	for (uint64_t seq = 1; seq <= 50; seq++)
		check_envelope(seq, CHORIA_MSG_REQUEST, 0xabc);

	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0, "SIGTERM exits 0");
	struct adapter_counts n;
	cr_assert(pipeline_counts(&daemon_a, "node_data", &n));
	cr_assert_eq(n.received, 50);
	cr_assert_eq(n.published, 50);
	cr_assert_eq(n.rejected + n.dropped + n.lost + n.in_flight, 0);
	cr_assert_eq(js_stream_count(&client, "NODES"), 50, "nothing more than published");
}

Test(pipeline, replies_from_many_nodes_to_one_request_are_all_kept)
{
	char *conf = conf_one("replies", "reply", "choria.reply.>", 1000);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);

	/* Every node answers request 7 of seed 1: same request id, 40 senders. */
	for (int i = 0; i < 40; i++) {
		struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REPLY);
		char sender[64], rid[33];
		snprintf(sender, sizeof(sender), "node-%d.example.net", i);
		pipeline_request_id(rid, 1, 7);
		s.sender = sender;
		s.request_id = rid;
		pipeline_publish_spec(&client, "choria.reply.abc", &s);
	}
	cr_assert(js_stream_wait_count(&client, "NODES", 40, 15000),
		  "a shared request id does not make replies duplicates");
	/* Once the daemon has settled all 40, it publishes nothing more. */
	struct adapter_counts n = pipeline_counts_once_settled(&daemon_a, "replies", 40, 15000);
	cr_assert_eq(n.published, 40);
	cr_assert_eq(js_stream_count(&client, "NODES"), 40, "and none is stored twice");
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
}

Test(pipeline, senders_that_cannot_form_a_subject_are_counted_lost_as_bad_subject)
{
	char *conf = conf_one("node_data", "request", "choria.discovery", 1000);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);

	/* A space, a wildcard, and a sender too long for any subject. */
	char long_sender[2001];
	memset(long_sender, 'n', sizeof(long_sender) - 1);
	long_sender[sizeof(long_sender) - 1] = '\0';
	const char *senders[] = {"node one.example.net", "node.*", long_sender};
	for (size_t i = 0; i < sizeof(senders) / sizeof(*senders); i++) {
		struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REQUEST);
		s.sender = senders[i];
		pipeline_publish_spec(&client, "choria.discovery", &s);
	}
	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 3, 9);

	cr_assert(js_stream_wait_count(&client, "NODES", 3, 15000), "good messages still flow");
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	struct adapter_counts n;
	cr_assert(pipeline_counts(&daemon_a, "node_data", &n));
	cr_assert_eq(n.received, 6);
	cr_assert_eq(n.published, 3);
	cr_assert_eq(n.lost, 3);
	cr_assert_eq(js_stream_count(&client, "NODES"), 3);
	cr_assert_gt(daemon_log_count(&daemon_a, "lost=3 (bad_subject=3)"), 0,
		     "each is a subject the sender cannot form, none an encoding failure");
}

Test(pipeline, a_message_larger_than_jetstream_accepts_is_counted_lost_not_retried)
{
	char sdir[600];
	snprintf(sdir, sizeof(sdir), "%s/small", dir);
	cr_assert_eq(mkdir(sdir, 0755), 0);
	cr_assert_eq(nats_server_start(&small, sdir, 0, "max_payload: 4096"), 0);
	cr_assert_eq(js_client_open(&small_client, small.url), 0);
	cr_assert_eq(js_stream_create(&small_client, "NODES", "choria.node_metadata.>", 1), 0);
	char *conf = NULL;
	int metrics_port = free_port();
	cr_assert(asprintf(&conf,
			   "identity = \"adapter.test\"\n"
			   "metrics_listen = \"127.0.0.1:%d\"\n"
			   "adapter node_data {\n"
			   "  ingest { type = \"choria\" topic = \"choria.discovery\"\n"
			   "           servers = {\"%s\"} security = \"none\" }\n"
			   "  stream { type = \"jetstream\" servers = {\"%s\"}\n"
			   "           topic = \"choria.node_metadata.%%s\" }\n"
			   "}\n",
			   metrics_port, server.url, small.url) > 0);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);

	/* The fleet's server takes it in; its envelope is more than 4 KB. */
	pipeline_publish_big(&client, "choria.discovery");
	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 3, 9);

	cr_assert(js_stream_wait_count(&small_client, "NODES", 3, 15000), "the others still flow");
	/* The running daemon's metrics show it, for an alert to fire on. */
	struct http_reply r;
	cr_assert_eq(http_request(&r, "127.0.0.1", metrics_port, "GET", "/metrics", 5000), 0);
	cr_assert_not_null(strstr(r.body, "choria_adapter_lost_msgs{name=\"node_data\","
					  "reason=\"too_large\",identity=\"adapter.test\"} 1\n"),
			   "%s", r.body);
	http_reply_free(&r);
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	struct adapter_counts n;
	cr_assert(pipeline_counts(&daemon_a, "node_data", &n));
	cr_assert_eq(n.received, 4);
	cr_assert_eq(n.published, 3);
	cr_assert_eq(n.lost, 1);
	cr_assert_eq(n.retries, 0, "a message too large is never retried");
	cr_assert_gt(daemon_log_count(&daemon_a, "lost=1 (too_large=1)"), 0);
	cr_assert_eq(js_stream_count(&small_client, "NODES"), 3);
}

/* A line the daemon writes per message it loses is rate-limited: at most
 * one every `every_s` seconds, the first at once, over `seconds`. */
static void assert_rate_limited(const char *text, double seconds, double every_s, int events)
{
	int lines = daemon_log_count(&daemon_a, text);
	int most = 1 + (int)(seconds / every_s) + 1; /* one more for rounding */
	cr_assert_gt(lines, 0, "'%s' is logged", text);
	cr_assert_leq(lines, most,
		      "'%s' logged %d times for %d messages in %.1f s (at most %d expected)", text,
		      lines, events, seconds, most);
}

Test(pipeline, a_stream_refusing_every_message_logs_a_few_lines_not_one_per_message)
{
	/* The stream takes nothing larger than 64 bytes: every envelope is
	 * refused for good. */
	jsErrCode code = 0;
	cr_assert_eq(js_DeleteStream(client.js, "NODES", NULL, &code), NATS_OK);
	jsStreamConfig cfg;
	jsStreamConfig_Init(&cfg);
	const char *subjects[] = {"choria.node_metadata.>"};
	cfg.Name = "SMALL";
	cfg.Subjects = subjects;
	cfg.SubjectsLen = 1;
	cfg.MaxMsgSize = 64;
	jsStreamInfo *si = NULL;
	cr_assert_eq(js_AddStream(&si, client.js, &cfg, NULL, &code), NATS_OK, "code %d", code);
	jsStreamInfo_Destroy(si);
	char *conf = conf_one("node_data", "request", "choria.discovery", 1000);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);

	const int n = 300;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, n, 21);
	struct adapter_counts c = pipeline_counts_once_settled(&daemon_a, "node_data", n, 60000);
	cr_assert_eq(c.lost, (uint64_t)n, "every message is refused for good");
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	double seconds = seconds_since(&t0);
	assert_rate_limited("for good: ", seconds, 5, n);
	assert_rate_limited("lost the message", seconds, 1, n);
}

Test(pipeline, messages_over_max_payload_log_a_few_lines_not_one_per_message)
{
	char sdir[600];
	snprintf(sdir, sizeof(sdir), "%s/small", dir);
	cr_assert_eq(mkdir(sdir, 0755), 0);
	cr_assert_eq(nats_server_start(&small, sdir, 0, "max_payload: 4096"), 0);
	cr_assert_eq(js_client_open(&small_client, small.url), 0);
	cr_assert_eq(js_stream_create(&small_client, "NODES", "choria.node_metadata.>", 1), 0);
	char *conf = NULL;
	cr_assert(asprintf(&conf,
			   "adapter node_data {\n"
			   "  ingest { type = \"choria\" topic = \"choria.discovery\"\n"
			   "           servers = {\"%s\"} security = \"none\" }\n"
			   "  stream { type = \"jetstream\" servers = {\"%s\"}\n"
			   "           topic = \"choria.node_metadata.%%s\" }\n"
			   "}\n",
			   server.url, small.url) > 0);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);

	const int n = 200;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < n; i++)
		pipeline_publish_big(&client, "choria.discovery");
	struct adapter_counts c = pipeline_counts_once_settled(&daemon_a, "node_data", n, 60000);
	cr_assert_eq(c.lost, (uint64_t)n);
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	double seconds = seconds_since(&t0);
	assert_rate_limited("larger than the server accepts (max_payload)", seconds, 5, n);
	assert_rate_limited("lost the message", seconds, 1, n);
}

Test(pipeline, malformed_messages_are_counted_and_never_published)
{
	char *conf = conf_one("node_data", "request", "choria.discovery", 1000);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);

	const char *junk[] =
		{"", "not json", "{\"protocol\":\"choria:transport:1\"}", "[1,2]",
		 "{\"protocol\":\"choria:transport:1\",\"data\":\"%%%\",\"headers\":{}}"};
	for (size_t i = 0; i < sizeof(junk) / sizeof(*junk); i++)
		cr_assert_eq(nats_publish_raw(&client, "choria.discovery", junk[i],
					      strlen(junk[i])),
			     0);
	struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REQUEST);
	s.ttl = 10; /* below the schema's minimum */
	pipeline_publish_spec(&client, "choria.discovery", &s);
	struct choria_msg_spec r = choria_msg_defaults(CHORIA_MSG_REPLY); /* wrong protocol */
	pipeline_publish_spec(&client, "choria.discovery", &r);
	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 3, 9);

	cr_assert(js_stream_wait_count(&client, "NODES", 3, 15000), "good messages still flow");
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0, "bad input is never fatal");
	struct adapter_counts n;
	cr_assert(pipeline_counts(&daemon_a, "node_data", &n));
	cr_assert_eq(n.received, 10);
	cr_assert_eq(n.rejected, 7);
	cr_assert_eq(n.published, 3);
	cr_assert_eq(js_stream_count(&client, "NODES"), 3);
	/* Each reason is counted on its own. */
	const char *by_reason[] = {"not_json=3", "bad_transport=1", "bad_base64=1", "bad_message=1",
				   "bad_secure=1"};
	for (size_t i = 0; i < sizeof(by_reason) / sizeof(*by_reason); i++)
		cr_assert_gt(daemon_log_count(&daemon_a, by_reason[i]), 0, "%s in the counter line",
			     by_reason[i]);
	/* The log names the reason too (one line a second at most). */
	cr_assert_gt(daemon_log_count(&daemon_a, "rejected a message ("), 0);
}

Test(pipeline, rejections_are_logged_once_a_second_with_how_many_were_not)
{
	char *conf = conf_one("node_data", "request", "choria.discovery", 1000);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 200; i++)
		cr_assert_eq(natsConnection_PublishString(client.nc, "choria.discovery", "junk"),
			     NATS_OK);
	cr_assert_eq(natsConnection_Flush(client.nc), NATS_OK);
	pipeline_counts_once_received(&daemon_a, "node_data", 200, 10000);
	nats_Sleep(1100);
	cr_assert_eq(nats_publish_raw(&client, "choria.discovery", "junk", 4), 0);
	pipeline_counts_once_received(&daemon_a, "node_data", 201, 10000);
	double took = seconds_since(&t0);

	/* Every rejection is either a line or counted in the next one. */
	char *log = file_read(daemon_a.log);
	cr_assert_not_null(log);
	int lines = 0;
	unsigned long accounted = 0;
	for (const char *p = log; (p = strstr(p, "rejected a message (")); p++) {
		const char *more = strstr(p, " more rejections since the last report)");
		const char *eol = strchr(p, '\n');
		cr_assert(more && (!eol || more < eol), "a count on the line");
		const char *count = more;
		while (count > p && count[-1] != '(')
			count--;
		unsigned long n = 0;
		cr_assert_eq(sscanf(count, "%lu", &n), 1);
		accounted += 1 + n;
		lines++;
	}
	free(log);
	/* One a second at most: in `took` seconds, one more than whole seconds. */
	cr_assert_leq(lines, 1 + (int)took, "%d lines for 201 rejections in %.1f s", lines, took);
	cr_assert_eq(accounted, 201, "the lines account for every rejection");
}

Test(pipeline, several_adapters_in_one_daemon_keep_their_own_subjects)
{
	cr_assert_eq(js_stream_create(&client, "REPLIES", "replies.>", 1), 0);
	char *conf = NULL;
	cr_assert(
		asprintf(
			&conf,
			"adapter nodes {\n"
			"  ingest { type = \"choria\" topic = \"choria.discovery\"\n"
			"           servers = {\"%s\"} security = \"none\" }\n"
			"  stream { type = \"jetstream\" servers = {\"%s\"}\n"
			"           topic = \"choria.node_metadata.%%s\" }\n"
			"}\n"
			"adapter answers {\n"
			"  ingest { type = \"choria\" servers = {\"%s\"} topic = \"choria.reply.>\"\n"
			"           protocol = \"reply\" security = \"none\" }\n"
			"  stream { type = \"jetstream\" servers = {\"%s\"} topic = \"replies.%%s\" }\n"
			"}\n",
			server.url, server.url, server.url, server.url) > 0);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);

	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 20, 1);
	pipeline_publish(&client, "choria.reply.x", CHORIA_MSG_REPLY, 100, 30, 2);
	cr_assert(js_stream_wait_count(&client, "NODES", 20, 15000));
	cr_assert(js_stream_wait_count(&client, "REPLIES", 30, 15000));
	/* Once each adapter has settled its own, neither publishes more. */
	cr_assert_eq(pipeline_counts_once_settled(&daemon_a, "nodes", 20, 15000).published, 20);
	cr_assert_eq(pipeline_counts_once_settled(&daemon_a, "answers", 30, 15000).published, 30);
	cr_assert_eq(js_stream_count(&client, "NODES"), 20);
	cr_assert_eq(js_stream_count(&client, "REPLIES"), 30);
	natsMsg *m = js_stream_get(&client, "REPLIES", 1);
	cr_assert_not_null(m);
	cr_assert_eq(strncmp(natsMsg_GetSubject(m), "replies.node-1", 14), 0, "%s",
		     natsMsg_GetSubject(m));
	natsMsg_Destroy(m);
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	struct adapter_counts n;
	cr_assert(pipeline_counts(&daemon_a, "nodes", &n));
	cr_assert_eq(n.received, 20);
	cr_assert(pipeline_counts(&daemon_a, "answers", &n));
	cr_assert_eq(n.received, 30);
}

Test(pipeline, daemons_sharing_a_queue_group_receive_each_message_once)
{
	char dir_b[600];
	snprintf(dir_b, sizeof(dir_b), "%s/b", dir);
	cr_assert_eq(mkdir(dir_b, 0755), 0);
	char *conf = conf_one("node_data", "request", "choria.discovery", 1000);
	pipeline_start_daemon(&daemon_a, dir, conf);
	struct daemon_proc daemon_b;
	pipeline_start_daemon(&daemon_b, dir_b, conf);
	free(conf);

	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 300, 3);
	cr_assert(js_stream_wait_count(&client, "NODES", 300, 20000));
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	cr_assert_eq(daemon_stop(&daemon_b, SIGTERM, 20000), 0);
	struct adapter_counts a, b;
	cr_assert(pipeline_counts(&daemon_a, "node_data", &a));
	cr_assert(pipeline_counts(&daemon_b, "node_data", &b));
	cr_assert_eq(a.received + b.received, 300, "a: %lu b: %lu", (unsigned long)a.received,
		     (unsigned long)b.received);
	cr_assert_gt(a.received, 0, "the queue group shares the load");
	cr_assert_gt(b.received, 0, "the queue group shares the load");
	/* 300 received between them and 300 distinct ones stored: each once. */
	uint64_t distinct = 0;
	cr_assert_eq(pipeline_stream_ids(&client, "NODES", &distinct), 300);
	cr_assert_eq(distinct, 300, "%lu distinct messages stored", (unsigned long)distinct);
}

static _Atomic int member_got;

static void count_member(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
	(void)nc;
	(void)sub;
	(void)closure;
	member_got++;
	natsMsg_Destroy(m);
}

Test(pipeline, the_queue_group_is_named_after_the_adapter_as_choria_names_it)
{
	char *conf = conf_one("node_data", "request", "choria.discovery", 1000);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	/* Another member of the group the documentation names. */
	natsSubscription *sub = NULL;
	cr_assert_eq(natsConnection_QueueSubscribe(&sub, client.nc, "choria.discovery",
						   "nats_ingest_node_data", count_member, NULL),
		     NATS_OK);
	cr_assert_eq(natsConnection_Flush(client.nc), NATS_OK);
	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 300, 4);
	/* Until the two members have had all 300 between them. */
	struct adapter_counts a = {0};
	for (int waited = 0; waited < 15000 && a.received + (uint64_t)member_got < 300;
	     waited += 50) {
		kill(daemon_a.pid, SIGUSR1);
		nats_Sleep(50);
		pipeline_counts(&daemon_a, "node_data", &a);
	}
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	cr_assert(pipeline_counts(&daemon_a, "node_data", &a));
	cr_assert_eq(a.received + (uint64_t)member_got, 300, "daemon %lu, member %d",
		     (unsigned long)a.received, (int)member_got);
	cr_assert_gt(member_got, 0, "the member shares the load");
	cr_assert_lt(a.received, 300, "the daemon is in the same group");
}

Test(pipeline, output_protocol_labels_every_envelope)
{
	char *conf = NULL;
	cr_assert(
		asprintf(
			&conf,
			"identity = \"adapter.test\"\n"
			"adapter node_data {\n"
			"  ingest { type = \"choria\" topic = \"choria.discovery\"\n"
			"           servers = {\"%s\"} security = \"none\" }\n"
			"  stream { type = \"jetstream\" servers = {\"%s\"}\n"
			"           topic = \"choria.node_metadata.%%s\"\n"
			"           output_protocol = \"choria:adapters:choria_streams:output:1\" }\n"
			"}\n",
			server.url, server.url) > 0);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);

	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 5, 0xcafe);
	cr_assert(js_stream_wait_count(&client, "NODES", 5, 15000), "5 messages stored");
	for (uint64_t seq = 1; seq <= 5; seq++) {
		natsMsg *m = js_stream_get(&client, "NODES", seq);
		cr_assert_not_null(m, "message %lu is in the stream", (unsigned long)seq);
		json_t *env =
			json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
		cr_assert_not_null(env);
		cr_assert_str_eq(json_string_value(json_object_get(env, "protocol")),
				 "choria:adapters:choria_streams:output:1");
		json_decref(env);
		natsMsg_Destroy(m);
	}
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0, "SIGTERM exits 0");
}
