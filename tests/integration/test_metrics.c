/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The metrics endpoint of the built daemon, between two real nats-servers:
 * one the fleet publishes on, one with JetStream that can be stopped.
 * Known numbers of good, bad and dropped messages must show in /metrics
 * exactly, in text the Prometheus parser accepts, and /healthz must follow
 * the JetStream server down and back.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build_config.h"
#include "http_get.h"
#include "pipeline.h"
#include "prom_check.h"
#include "tmpdir.h"

static char dir[512];
static struct nats_server fleet, jets;
static struct js_client fleet_client, js_client;
static struct daemon_proc daemon_a;
static int metrics_port;

static void start_server(struct nats_server *s, const char *name)
{
	char sub[600];
	snprintf(sub, sizeof(sub), "%s/%s", dir, name);
	cr_assert_eq(mkdir(sub, 0755), 0);
	cr_assert_eq(nats_server_start(s, sub, 0, NULL), 0, "nats-server %s must start", name);
}

static void setup(void)
{
	cr_assert_eq(tmpdir_make(dir, sizeof(dir)), 0);
	start_server(&fleet, "fleet");
	start_server(&jets, "jetstream");
	cr_assert_eq(js_client_open(&fleet_client, fleet.url), 0);
	cr_assert_eq(js_client_open(&js_client, jets.url), 0);
	cr_assert_eq(js_stream_create(&js_client, "NODES", "choria.node_metadata.>", 1), 0);
	metrics_port = free_port();
}

static void teardown(void)
{
	if (daemon_a.pid > 0)
		daemon_stop(&daemon_a, SIGKILL, 5000);
	js_client_close(&fleet_client);
	js_client_close(&js_client);
	nats_server_stop(&fleet);
	nats_server_stop(&jets);
	tmpdir_remove(dir);
}

TestSuite(metrics_endpoint, .init = setup, .fini = teardown, .timeout = 120);

/* One stream worker with one publish in flight, a queue of five: with the
 * JetStream server down, the worker holds two messages (one published,
 * one waiting for room), the queue five, and the rest is dropped. */
static void start_daemon_ingest_conns(int conns)
{
	char *conf = NULL;
	cr_assert(asprintf(&conf,
			   "identity = \"adapter.test\"\n"
			   "log_level = \"debug\"\n"
			   "metrics_listen = \"127.0.0.1:%d\"\n"
			   "drain_timeout = 2\n"
			   "adapter node_data {\n"
			   "  queue_len = 5\n"
			   "  ingest {\n"
			   "    type = \"choria\"\n"
			   "    servers = {\"%s\"}\n"
			   "    topic = \"choria.discovery\"\n"
			   "    protocol = \"request\"\n"
			   "    security = \"none\"\n"
			   "    workers = %d\n"
			   "    connections = %d\n"
			   "  }\n"
			   "  stream {\n"
			   "    type = \"jetstream\"\n"
			   "    servers = {\"%s\"}\n"
			   "    topic = \"choria.node_metadata.%%s\"\n"
			   "    workers = 1\n"
			   "    max_inflight = 1\n"
			   "    ack_timeout = 1\n"
			   "    retry_max_interval = 1\n"
			   "  }\n"
			   "}\n",
			   metrics_port, fleet.url, conns, conns, jets.url) > 0);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
}

static void start_daemon(void)
{
	start_daemon_ingest_conns(1);
}

/* ----------------------------------------------------------- scraping */

static char *scrape(void)
{
	return prom_scrape(dir, metrics_port);
}

/* Sum of the node_data series of `name` with `labels` too; -1 if none. */
static double value(const char *listing, const char *name, const char *labels)
{
	char want[256];
	snprintf(want, sizeof(want), "name=\"node_data\",identity=\"adapter.test\"%s%s",
		 *labels ? "," : "", labels);
	return prom_sum(listing, name, want);
}

static double scrape_value(const char *name, const char *labels)
{
	char *l = scrape();
	double v = value(l, name, labels);
	free(l);
	return v;
}

/* Scrape until `name{labels}` reaches `want`; asserts within timeout_ms. */
static void wait_value(const char *name, const char *labels, double want, int timeout_ms)
{
	double v = -2;
	for (int waited = 0; waited <= timeout_ms; waited += 100) {
		v = scrape_value(name, labels);
		if (v == want)
			return;
		nats_Sleep(100);
	}
	cr_assert_fail("%s{%s} is %g, expected %g", name, labels, v, want);
}

static int health(char **body)
{
	struct http_reply r;
	cr_assert_eq(http_request(&r, "127.0.0.1", metrics_port, "GET", "/healthz", 5000), 0);
	int status = r.status;
	if (body)
		*body = strdup(r.body);
	http_reply_free(&r);
	return status;
}

static void wait_health(int want, const char *reason, int timeout_ms)
{
	char *body = NULL;
	for (int waited = 0; waited <= timeout_ms; waited += 100) {
		free(body);
		int status = health(&body);
		if (status == want && (!reason || strstr(body, reason))) {
			free(body);
			return;
		}
		nats_Sleep(100);
	}
	cr_assert_fail("/healthz did not answer %d%s%s; last: %s", want, reason ? " with " : "",
		       reason ? reason : "", body);
}

/* ---------------------------------------------------------- messages */

struct sent {
	uint64_t wire, body; /* bytes as published, and of the bodies alone */
};

/* Messages i in [first, first+n), as pipeline_publish() makes them, with
 * their sizes added to *s (body bytes only for those below `kept`, the
 * ones the test expects to be published). */
static void publish_good(int first, int n, int kept, struct sent *s)
{
	for (int i = first; i < first + n; i++) {
		struct choria_msg_spec spec = choria_msg_defaults(CHORIA_MSG_REQUEST);
		char sender[64], rid[33], body[128];
		snprintf(sender, sizeof(sender), "node-%d.example.net", i);
		pipeline_request_id(rid, 7, i);
		snprintf(body, sizeof(body), "{\"n\":%d,\"html\":\"<b>&</b>\"}", i);
		spec.sender = sender;
		spec.request_id = rid;
		spec.body = body;
		spec.time = 1520088557 + i;
		s->wire += pipeline_publish_spec(&fleet_client, "choria.discovery", &spec);
		if (i < kept)
			s->body += strlen(body);
	}
}

static void publish_raw(const char *text, struct sent *s)
{
	cr_assert_eq(nats_publish_raw(&fleet_client, "choria.discovery", text, strlen(text)), 0);
	s->wire += strlen(text);
}

static void publish_spec(struct choria_msg_spec *spec, struct sent *s)
{
	s->wire += pipeline_publish_spec(&fleet_client, "choria.discovery", spec);
}

/* -------------------------------------------------------------- tests */

#define IN "role=\"input\""
#define OUT "role=\"output\""

Test(metrics_endpoint, counts_good_bad_and_dropped_messages_exactly)
{
	start_daemon();
	wait_health(200, NULL, 10000);

	char *l = scrape();
	double v;
	cr_assert(prom_value(l, "choria_adapterd_build_info{version=\"" PACKAGE_VERSION "\"}", &v));
	cr_assert_eq(v, 1);
	cr_assert_eq(value(l, "choria_adapter_received_msgs", IN), 0);
	cr_assert_eq(value(l, "choria_adapter_queue_capacity", ""), 5);
	cr_assert_eq(value(l, "choria_adapter_connection_up", "connection=\"ingest 1\"," IN), 1);
	cr_assert_eq(value(l, "choria_adapter_connection_up", "connection=\"stream\"," OUT), 1);
	free(l);

	/* 20 good, five at a time so that the small queue never overflows,
	 * and 6 bad, each for a known reason. */
	struct sent sent = {0};
	for (int i = 0; i < 20; i += 5) {
		publish_good(i, 5, 20, &sent);
		wait_value("choria_adapter_published_msgs", OUT, i + 5, 5000);
	}
	publish_raw("not json", &sent);
	publish_raw("", &sent);
	publish_raw("{\"protocol\":\"choria:transport:1\",\"data\":\"%%%\",\"headers\":{}}", &sent);
	publish_raw("{\"protocol\":\"choria:transport:9\",\"data\":\"e30=\",\"headers\":{}}",
		    &sent);
	struct choria_msg_spec spec = choria_msg_defaults(CHORIA_MSG_REQUEST);
	spec.ttl = 10;
	publish_spec(&spec, &sent);
	spec = choria_msg_defaults(CHORIA_MSG_REQUEST);
	spec.secure_protocol = "choria:secure:request:9";
	publish_spec(&spec, &sent);
	cr_assert(js_stream_wait_count(&js_client, "NODES", 20, 15000));
	wait_value("choria_adapter_received_msgs", IN, 26, 5000);

	l = scrape();
	cr_assert_eq(value(l, "choria_adapter_received_msgs", IN), 26);
	cr_assert_eq(value(l, "choria_adapter_published_msgs", OUT), 20);
	cr_assert_eq(value(l, "choria_adapter_errors", IN), 6);
	cr_assert_eq(value(l, "choria_adapter_errors", OUT), 0);
	cr_assert_eq(value(l, "choria_adapter_bytes", IN), (double)sent.wire);
	cr_assert_eq(value(l, "choria_adapter_bytes", OUT), (double)sent.body);
	cr_assert_eq(value(l, "choria_adapter_rejected_msgs", "reason=\"not_json\""), 2);
	cr_assert_eq(value(l, "choria_adapter_rejected_msgs", "reason=\"bad_base64\""), 1);
	cr_assert_eq(value(l, "choria_adapter_rejected_msgs", "reason=\"bad_transport\""), 1);
	cr_assert_eq(value(l, "choria_adapter_rejected_msgs", "reason=\"bad_message\""), 1);
	cr_assert_eq(value(l, "choria_adapter_rejected_msgs", "reason=\"bad_secure\""), 1);
	cr_assert_eq(value(l, "choria_adapter_rejected_msgs", ""), 6, "no other reason");
	cr_assert_eq(value(l, "choria_adapter_dropped_msgs", ""), -1, "nothing dropped yet");
	cr_assert_eq(value(l, "choria_adapter_lost_msgs", ""), -1);
	cr_assert_eq(value(l, "choria_adapter_time_count", OUT), 20);
	cr_assert_eq(value(l, "choria_adapter_time_bucket", "le=\"+Inf\"," OUT), 20);
	cr_assert_gt(value(l, "choria_adapter_time_sum", OUT), 0);
	cr_assert_eq(value(l, "choria_adapter_in_flight_msgs", ""), 0);
	cr_assert_eq(value(l, "choria_adapter_queue_length", ""), 0);
	cr_assert_eq(value(l, "choria_adapter_publish_retries", ""), 0);
	free(l);

	/* JetStream goes away: two messages fill the worker... */
	nats_server_stop(&jets);
	wait_health(503, "\"adapter node_data: stream disconnected\"", 10000);
	cr_assert_eq(scrape_value("choria_adapter_connection_up", "connection=\"stream\"," OUT), 0);
	publish_good(20, 2, 27, &sent);
	wait_value("choria_adapter_in_flight_msgs", "", 2, 5000);
	cr_assert_eq(scrape_value("choria_adapter_queue_length", ""), 0);
	/* ...five fill the queue and three more are dropped, the newest. */
	publish_good(22, 8, 27, &sent);
	wait_value("choria_adapter_dropped_msgs", "reason=\"queue_full\"", 3, 5000);
	l = scrape();
	cr_assert_eq(value(l, "choria_adapter_queue_length", ""), 5);
	cr_assert_eq(value(l, "choria_adapter_in_flight_msgs", ""), 7);
	cr_assert_eq(value(l, "choria_adapter_received_msgs", IN), 36);
	cr_assert_eq(value(l, "choria_adapter_errors", IN), 9, "6 rejected and 3 dropped");
	free(l);
	wait_health(503, "\"adapter node_data: queue full (5 of 5)\"", 5000);
	/* The unacknowledged publish is sent again while the server is away. */
	for (int waited = 0; waited < 10000; waited += 100) {
		if (scrape_value("choria_adapter_publish_retries", "") >= 1)
			break;
		nats_Sleep(100);
	}
	cr_assert_geq(scrape_value("choria_adapter_publish_retries", ""), 1);

	/* JetStream is back on the same port and store: all that was held
	 * is published, and the daemon is healthy again. */
	cr_assert_eq(nats_server_restart(&jets), 0);
	wait_health(200, NULL, 20000);
	wait_value("choria_adapter_published_msgs", OUT, 27, 20000);
	cr_assert(js_stream_wait_count(&js_client, "NODES", 27, 10000));
	/* Every publish settled, resends too: none is on its way. */
	wait_value("choria_adapter_in_flight_msgs", "", 0, 10000);
	cr_assert_eq(js_stream_count(&js_client, "NODES"), 27, "retries are not stored twice");

	l = scrape();
	cr_assert_eq(value(l, "choria_adapter_received_msgs", IN), 36);
	cr_assert_eq(value(l, "choria_adapter_published_msgs", OUT), 27);
	cr_assert_eq(value(l, "choria_adapter_errors", IN), 9);
	cr_assert_eq(value(l, "choria_adapter_errors", OUT), 0);
	cr_assert_eq(value(l, "choria_adapter_bytes", IN), (double)sent.wire);
	cr_assert_eq(value(l, "choria_adapter_bytes", OUT), (double)sent.body);
	cr_assert_eq(value(l, "choria_adapter_dropped_msgs", "reason=\"queue_full\""), 3);
	cr_assert_eq(value(l, "choria_adapter_dropped_msgs", ""), 3);
	cr_assert_eq(value(l, "choria_adapter_rejected_msgs", ""), 6);
	cr_assert_eq(value(l, "choria_adapter_lost_msgs", ""), -1);
	cr_assert_eq(value(l, "choria_adapter_time_count", OUT), 27);
	cr_assert_eq(value(l, "choria_adapter_time_bucket", "le=\"+Inf\"," OUT), 27);
	cr_assert_geq(value(l, "choria_adapter_time_sum", OUT), 1.0,
		      "the held messages waited at least an acknowledgement timeout");
	cr_assert_eq(value(l, "choria_adapter_in_flight_msgs", ""), 0);
	cr_assert_eq(value(l, "choria_adapter_queue_length", ""), 0);
	cr_assert_eq(value(l, "choria_adapter_connection_up", "connection=\"stream\"," OUT), 1);
	free(l);

	/* The log agrees, with a line for each event an operator acts on
	 * and, at debug, one per message each way. */
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	struct adapter_counts n;
	cr_assert(pipeline_counts(&daemon_a, "node_data", &n));
	cr_assert_eq(n.received, 36);
	cr_assert_eq(n.published, 27);
	cr_assert_eq(n.rejected, 6);
	cr_assert_eq(n.dropped, 3);
	cr_assert_eq(n.lost, 0);
	cr_assert_gt(
		daemon_log_count(&daemon_a,
				 "metrics: serving /metrics and /healthz on http://127.0.0.1:"),
		0);
	cr_assert_gt(daemon_log_count(&daemon_a,
				      "adapter node_data: jetstream: stream: disconnected"),
		     0);
	cr_assert_gt(daemon_log_count(&daemon_a, "dropped a message from node-"), 0);
	cr_assert_gt(daemon_log_count(&daemon_a, "rejected a message (not_json)"), 0);
	cr_assert_eq(daemon_log_count(&daemon_a, "stored in NODES at"), 27);
	cr_assert_eq(daemon_log_count(&daemon_a, "ingest 1: request "), 30);
	cr_assert_gt(daemon_log_count(&daemon_a, "metrics: GET /metrics: 200"), 0);
}

Test(metrics_endpoint, every_connection_has_its_series_and_its_say_in_health)
{
	start_daemon_ingest_conns(100);
	wait_health(200, NULL, 20000);
	char *l = scrape();
	cr_assert_eq(value(l, "choria_adapter_connection_up", IN), 100);
	cr_assert_eq(value(l, "choria_adapter_connection_up", "connection=\"ingest 100\"," IN), 1);
	free(l);

	nats_server_stop(&fleet);
	/* The connections notice one by one. */
	wait_value("choria_adapter_connection_up", IN, 0, 20000);
	char *body = NULL;
	cr_assert_eq(health(&body), 503);
	cr_assert_not_null(strstr(body, "\"adapter node_data: ingest 1 disconnected\""), "%s",
			   body);
	cr_assert_not_null(strstr(body, "\"adapter node_data: ingest 100 disconnected\""), "%s",
			   body);
	free(body);
}

Test(metrics_endpoint, health_follows_the_jetstream_server)
{
	start_daemon();
	wait_health(200, NULL, 10000);
	char *body = NULL;
	cr_assert_eq(health(&body), 200);
	cr_assert_str_eq(body,
			 "{\"status\":\"healthy\",\"config\":{\"last_reload_successful\":true,"
			 "\"error\":null}}\n");
	free(body);

	nats_server_stop(&jets);
	wait_health(503, NULL, 10000);
	cr_assert_eq(health(&body), 503);
	cr_assert_str_eq(body, "{\"status\":\"unhealthy\",\"reasons\":"
			       "[\"adapter node_data: stream disconnected\"],"
			       "\"config\":{\"last_reload_successful\":true,\"error\":null}}\n");
	free(body);

	cr_assert_eq(nats_server_restart(&jets), 0);
	wait_health(200, NULL, 20000);

	/* Draining on SIGTERM is not healthy either: a paused JetStream
	 * server holds a message in flight for the 2 s drain. Then the port
	 * closes. */
	cr_assert_eq(kill(jets.pid, SIGSTOP), 0);
	struct sent sent = {0};
	publish_good(0, 1, 1, &sent);
	wait_value("choria_adapter_in_flight_msgs", "", 1, 5000);
	cr_assert_eq(kill(daemon_a.pid, SIGTERM), 0);
	wait_health(503, "\"stopping\"", 1500);
	cr_assert_eq(kill(jets.pid, SIGCONT), 0);
	cr_assert_eq(daemon_wait_exit(&daemon_a, 20000), 0);
	struct http_reply r;
	cr_assert_lt(http_request(&r, "127.0.0.1", metrics_port, "GET", "/healthz", 2000), 0);
}

/* CPU seconds the process has used, from /proc. */
static double cpu_seconds(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	char *stat = file_read(path);
	cr_assert_not_null(stat);
	unsigned long utime = 0, stime = 0;
	const char *after = strrchr(stat, ')');
	cr_assert(after && sscanf(after + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
				  &utime, &stime) == 2);
	free(stat);
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static int open_fds(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	cr_assert_not_null(d);
	int n = 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n - 2;
}

Test(metrics_endpoint, out_of_file_descriptors_it_pauses_accepting_instead_of_spinning)
{
	start_daemon();
	/* Room for two more files, whatever else the daemon holds. */
	struct rlimit was, low;
	cr_assert_eq(prlimit(daemon_a.pid, RLIMIT_NOFILE, NULL, &was), 0);
	low = was;
	low.rlim_cur = (rlim_t)open_fds(daemon_a.pid) + 2;
	cr_assert_eq(prlimit(daemon_a.pid, RLIMIT_NOFILE, &low, NULL), 0);
	int fds[40];
	for (int i = 0; i < 40; i++) {
		fds[i] = http_connect("127.0.0.1", metrics_port, 5000);
		cr_assert_geq(fds[i], 0);
	}
	cr_assert(daemon_wait_log(&daemon_a, "cannot accept a connection", 10000),
		  "the failure is logged");
	/* The connections still wait, so it fails again after each pause:
	 * two more lines come at least a whole pause (1 s) apart, where a
	 * daemon that tried again at once would write them together. */
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	double cpu0 = cpu_seconds(daemon_a.pid);
	int lines0 = daemon_log_count(&daemon_a, "cannot accept a connection"), lines = 0;
	for (int waited = 0; waited < 20000 && lines < 2; waited += 20) {
		nats_Sleep(20);
		lines = daemon_log_count(&daemon_a, "cannot accept a connection") - lines0;
	}
	double took = seconds_since(&t0);
	double cpu = cpu_seconds(daemon_a.pid) - cpu0;
	cr_assert_geq(lines, 2, "it tries again after its pause");
	cr_assert_geq(took, 0.9, "two more lines in %.2f s: once a pause, not once a try", took);
	cr_assert_lt(cpu, took / 4, "%.2f s of CPU in %.2f s", cpu, took);

	/* Files to spare again: it serves as before. */
	for (int i = 0; i < 40; i++)
		close(fds[i]);
	cr_assert_eq(prlimit(daemon_a.pid, RLIMIT_NOFILE, &was, NULL), 0);
	struct http_reply r;
	int rc = -1;
	for (int i = 0; i < 30 && rc != 0; i++) {
		rc = http_request(&r, "127.0.0.1", metrics_port, "GET", "/metrics", 2000);
		if (rc != 0)
			nats_Sleep(500);
	}
	cr_assert_eq(rc, 0, "serves once it can accept again");
	cr_assert_eq(r.status, 200);
	http_reply_free(&r);
}

Test(metrics_endpoint, a_port_in_use_stops_the_daemon_at_start)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)metrics_port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(fd, 1), 0);
	char *conf = NULL;
	cr_assert(
		asprintf(
			&conf,
			"metrics_listen = \"127.0.0.1:%d\"\n"
			"adapter a {\n"
			"  ingest { type = \"choria\" servers = {\"%s\"} topic = \"t\" security = \"none\" }\n"
			"  stream { type = \"jetstream\" servers = {\"%s\"} }\n"
			"}\n",
			metrics_port, fleet.url, jets.url) > 0);
	cr_assert_eq(daemon_start(&daemon_a, dir, conf), 0);
	free(conf);
	cr_assert_eq(daemon_wait_exit(&daemon_a, 10000), 3, "exit 3: could not start");
	char want[128];
	snprintf(want, sizeof(want),
		 "metrics_listen: cannot listen on 127.0.0.1:%d: Address already in use",
		 metrics_port);
	cr_assert_eq(daemon_log_count(&daemon_a, want), 1);
	cr_assert_eq(daemon_log_count(&daemon_a, "connected"), 0, "nothing connected first");
	close(fd);
}
