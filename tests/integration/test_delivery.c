/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Delivery guarantees under faults: whatever the JetStream side does, a
 * message the daemon accepted reaches the stream exactly once, or is
 * counted as lost with a reason. The ingest and the stream use separate
 * nats-servers so the stream side can fail alone.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include "http_get.h"
#include "pipeline.h"
#include "tmpdir.h"

static char dir[512];
static struct nats_server ingest, stream, node[3];
static struct js_client fleet; /* publishes on the ingest server */
static struct daemon_proc daemon_p;

static void setup(void)
{
	cr_assert_eq(tmpdir_make(dir, sizeof(dir)), 0);
	char d[600];
	snprintf(d, sizeof(d), "%s/ingest", dir);
	cr_assert_eq(mkdir(d, 0755), 0);
	cr_assert_eq(nats_server_start(&ingest, d, 0, NULL), 0);
	cr_assert_eq(js_client_open(&fleet, ingest.url), 0);
	snprintf(d, sizeof(d), "%s/stream", dir);
	cr_assert_eq(mkdir(d, 0755), 0);
}

static void teardown(void)
{
	if (daemon_p.pid > 0)
		daemon_stop(&daemon_p, SIGKILL, 5000);
	js_client_close(&fleet);
	nats_server_stop(&ingest);
	nats_server_stop(&stream);
	for (int i = 0; i < 3; i++)
		nats_server_stop(&node[i]);
	if (!getenv("CAD_TEST_KEEP"))
		tmpdir_remove(dir);
}

TestSuite(delivery, .init = setup, .fini = teardown, .timeout = 180);

static void start_stream_server(int port)
{
	char d[600];
	snprintf(d, sizeof(d), "%s/stream", dir);
	cr_assert_eq(nats_server_start(&stream, d, port, NULL), 0);
}

/* The stream NODES; one that never acknowledges unless `acks`. */
static void create_stream_acking(const char *url, bool acks)
{
	struct js_client c;
	cr_assert_eq(js_client_open(&c, url), 0);
	cr_assert_eq(acks ? js_stream_create(&c, "NODES", "choria.node_metadata.>", 1)
			  : js_stream_create_without_acks(&c, "NODES", "choria.node_metadata.>"),
		     0);
	js_client_close(&c);
}

static void create_stream(const char *url)
{
	create_stream_acking(url, true);
}

static int drain_timeout = 30;
static int queue_wait_ms = 250;
static const char *adapter_extra = ""; /* more adapter options */

/* The daemon's configuration: the test's ingest server, the stream on
 * `stream_urls` (quoted, comma-separated). */
static char *daemon_conf(const char *stream_urls, int queue_len, int workers, int inflight)
{
	char *conf = NULL;
	cr_assert(
		asprintf(
			&conf,
			"drain_timeout = %d\n"
			"adapter node_data {\n"
			"  queue_len = %d\n"
			"  queue_wait_ms = %d\n"
			"  %s\n"
			"  ingest { type = \"choria\" servers = {\"%s\"} topic = \"choria.discovery\"\n"
			"           security = \"none\" workers = 2 }\n"
			"  stream { type = \"jetstream\" servers = {%s}\n"
			"           topic = \"choria.node_metadata.%%s\" workers = %d\n"
			"           max_inflight = %d ack_timeout = 2 retry_max_interval = 1 }\n"
			"}\n",
			drain_timeout, queue_len, queue_wait_ms, adapter_extra, ingest.url,
			stream_urls, workers, inflight) > 0);
	return conf;
}

static void start_daemon(const char *stream_urls, int queue_len, int workers, int inflight)
{
	char *conf = daemon_conf(stream_urls, queue_len, workers, inflight);
	pipeline_start_daemon(&daemon_p, dir, conf);
	free(conf);
}

static char *quoted(const char *url)
{
	char *q = NULL;
	cr_assert(asprintf(&q, "\"%s\"", url) > 0);
	return q;
}

/* A JetStream server with the stream, and the daemon publishing to it. */
static void start_daemon_and_stream(int queue_len, int workers, int inflight)
{
	start_stream_server(0);
	create_stream(stream.url);
	char *q = quoted(stream.url);
	start_daemon(q, queue_len, workers, inflight);
	free(q);
}

/* The daemon publishing to a port where no server is yet; returns it. */
static int start_daemon_before_its_stream(int queue_len, int workers, int inflight)
{
	int port = free_port();
	char url[64];
	snprintf(url, sizeof(url), "nats://127.0.0.1:%d", port);
	char *q = quoted(url);
	start_daemon(q, queue_len, workers, inflight);
	free(q);
	return port;
}

/* SIGTERM the daemon and wait for it to exit 0 (asserts), for 30 s at
 * most: generous for a drain_timeout of 2 s, and a daemon that waited
 * for a stream that never answers would never exit. */
static void sigterm_bounded(void)
{
	cr_assert_eq(daemon_stop(&daemon_p, SIGTERM, 30000), 0, "SIGTERM exits 0 within 30 s");
}

/* The stopped daemon's counts, which must balance (asserts). */
static struct adapter_counts balanced_counts(void)
{
	struct adapter_counts n;
	cr_assert(pipeline_counts(&daemon_p, "node_data", &n));
	pipeline_assert_balance(&daemon_p, &n);
	return n;
}

/* Stop the daemon, then check its books against the stream: published
 * equals what the stream holds, nothing twice, nothing lost. */
static struct adapter_counts finish(struct js_client *reader, uint64_t expect_received)
{
	cr_assert_eq(daemon_stop(&daemon_p, SIGTERM, 60000), 0, "SIGTERM exits 0 after draining");
	struct adapter_counts n = balanced_counts();
	if (expect_received)
		cr_assert_eq(n.received, expect_received);
	cr_assert_eq(n.lost, 0, "nothing accepted is lost");
	cr_assert_eq(n.in_flight, 0, "the drain finished everything");
	uint64_t distinct = 0;
	uint64_t stored = pipeline_stream_ids(reader, "NODES", &distinct);
	cr_assert_eq(distinct, stored, "no message is stored twice (%lu stored)",
		     (unsigned long)stored);
	cr_assert_eq(stored, n.published, "stored %lu, published %lu", (unsigned long)stored,
		     (unsigned long)n.published);
	return n;
}

/* Wait until the stream holds all n, then stop the daemon and check its
 * books with finish(): every one of them published. */
static struct adapter_counts all_stored(struct js_client *reader, uint64_t n)
{
	cr_assert(js_stream_wait_count(reader, "NODES", n, 60000), "all %lu stored",
		  (unsigned long)n);
	struct adapter_counts c = finish(reader, n);
	cr_assert_eq(c.published, n);
	return c;
}

Test(delivery, stream_server_restarted_mid_flow_loses_and_duplicates_nothing)
{
	start_daemon_and_stream(100000, 2, 64);
	struct js_client reader;
	cr_assert_eq(js_client_open(&reader, stream.url), 0);

	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 0, 500, 1);
	cr_assert(js_stream_wait_count(&reader, "NODES", 500, 30000));
	nats_server_stop(&stream);
	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 500, 500, 1);
	nats_Sleep(1500); /* publishes fail and are retried while it is down */
	cr_assert_eq(nats_server_restart(&stream), 0);
	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 1000, 500, 1);
	cr_assert(js_stream_wait_count(&reader, "NODES", 1500, 60000),
		  "all 1500 stored after the restart");

	struct adapter_counts n = finish(&reader, 1500);
	cr_assert_eq(n.published, 1500);
	cr_assert_eq(n.dropped, 0);
	cr_assert_gt(daemon_log_count(&daemon_p, "stream: disconnected"), 0,
		     "the outage is logged");
	js_client_close(&reader);
}

/* Slow metrics clients: `n` connections that each send a byte of a
 * request every 200 ms and never finish it, connecting again whenever the
 * endpoint closes one, until `stop`. */
#define SLOW_CLIENTS 300
struct slow_clients {
	int port;
	int fds[SLOW_CLIENTS];
	atomic_bool stop;
	atomic_int connects; /* connections made, all told */
	pthread_t thread;
};

static void *slow_clients_run(void *arg)
{
	struct slow_clients *sc = arg;
	for (int i = 0; i < SLOW_CLIENTS; i++)
		sc->fds[i] = -1;
	while (!atomic_load(&sc->stop)) {
		for (int i = 0; i < SLOW_CLIENTS && !atomic_load(&sc->stop); i++) {
			if (sc->fds[i] >= 0 && send(sc->fds[i], "G", 1, MSG_NOSIGNAL) != 1) {
				close(sc->fds[i]);
				sc->fds[i] = -1;
			}
			if (sc->fds[i] < 0) {
				sc->fds[i] = http_connect("127.0.0.1", sc->port, 1000);
				if (sc->fds[i] >= 0)
					atomic_fetch_add(&sc->connects, 1);
			}
		}
		nats_Sleep(200);
	}
	for (int i = 0; i < SLOW_CLIENTS; i++)
		if (sc->fds[i] >= 0)
			close(sc->fds[i]);
	return NULL;
}

Test(delivery, slow_metrics_clients_under_a_low_fd_limit_cost_no_message_across_a_restart)
{
	start_stream_server(0);
	create_stream(stream.url);
	char *q = quoted(stream.url);
	char *adapter_conf = daemon_conf(q, 100000, 2, 64);
	free(q);
	int metrics_port = free_port();
	char *conf = NULL;
	cr_assert(asprintf(&conf, "metrics_listen = \"127.0.0.1:%d\"\n%s", metrics_port,
			   adapter_conf) > 0);
	free(adapter_conf);
	pipeline_start_daemon(&daemon_p, dir, conf);
	free(conf);
	/* 128 descriptors, soft and hard, as a unit's LimitNOFILE might leave
	 * the daemon, and more slow clients than that, all the time. */
	struct rlimit low = {128, 128};
	cr_assert_eq(prlimit(daemon_p.pid, RLIMIT_NOFILE, &low, NULL), 0);
	static struct slow_clients sc;
	sc.port = metrics_port;
	cr_assert_eq(pthread_create(&sc.thread, NULL, slow_clients_run, &sc), 0);
	/* Every slow client connected once, and the refused ones again. */
	for (int waited = 0; waited < 60000 && atomic_load(&sc.connects) <= SLOW_CLIENTS;
	     waited += 50)
		nats_Sleep(50);
	cr_assert_gt(atomic_load(&sc.connects), SLOW_CLIENTS);

	struct js_client reader;
	cr_assert_eq(js_client_open(&reader, stream.url), 0);
	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 0, 300, 3);
	cr_assert(js_stream_wait_count(&reader, "NODES", 300, 30000));
	js_client_close(&reader);
	nats_server_stop(&stream);
	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 300, 300, 3);
	nats_Sleep(1500); /* publishes fail and are retried while it is down */
	cr_assert_eq(nats_server_restart(&stream), 0);
	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 600, 300, 3);
	cr_assert_eq(js_client_open(&reader, stream.url), 0);
	/* While the slow clients still press on. */
	cr_assert(js_stream_wait_count(&reader, "NODES", 900, 60000),
		  "all 900 stored after the restart:\n%s", file_read(daemon_p.log));
	cr_assert_gt(atomic_load(&sc.connects), SLOW_CLIENTS,
		     "the slow clients pressed on (%d connections)", atomic_load(&sc.connects));

	/* A scraper that sends its request at once is answered, between the
	 * slow ones that time out. */
	struct http_reply r = {0};
	int rc = -1;
	for (int attempt = 0; attempt < 600 && (rc != 0 || r.status != 200); attempt++) {
		http_reply_free(&r);
		rc = http_request(&r, "127.0.0.1", metrics_port, "GET", "/metrics", 5000);
		if (rc != 0 || r.status != 200)
			nats_Sleep(50);
	}
	cr_assert_eq(rc, 0);
	cr_assert_eq(r.status, 200);
	cr_assert_null(strstr(r.body, "\nchoria_adapterd_metrics_connections_refused 0\n"),
		       "connections over the cap were refused:\n%s", r.body);
	cr_assert_null(strstr(r.body, "\nchoria_adapterd_metrics_requests_timed_out 0\n"),
		       "slow requests timed out:\n%s", r.body);
	http_reply_free(&r);
	atomic_store(&sc.stop, true);
	pthread_join(sc.thread, NULL);
	struct adapter_counts n = finish(&reader, 900);
	cr_assert_eq(n.published, 900);
	cr_assert_eq(n.dropped, 0);
	cr_assert_eq(daemon_log_count(&daemon_p, "Too many open files"), 0,
		     "the daemon never ran out of descriptors");
	js_client_close(&reader);
}

/* The lowest descriptor number the process `pid` has free: with its limit
 * there, it can open nothing more. */
static int lowest_free_fd(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	static bool used[65536];
	memset(used, 0, sizeof(used));
	DIR *d = opendir(path);
	cr_assert_not_null(d);
	for (struct dirent *e; (e = readdir(d));) {
		int fd = atoi(e->d_name);
		if (e->d_name[0] != '.' && fd >= 0 && fd < 65536)
			used[fd] = true;
	}
	closedir(d);
	int n = 0;
	while (n < 65535 && used[n])
		n++;
	return n;
}

Test(delivery, a_reconnect_that_fails_for_want_of_descriptors_says_so)
{
	start_daemon_and_stream(100000, 1, 64);
	nats_server_stop(&stream);
	cr_assert(daemon_wait_log(&daemon_p, "stream: disconnected", 20000));
	/* Not one descriptor to spare. */
	struct rlimit none = {(rlim_t)lowest_free_fd(daemon_p.pid), 4096};
	cr_assert_eq(prlimit(daemon_p.pid, RLIMIT_NOFILE, &none, NULL), 0);
	cr_assert_eq(nats_server_restart(&stream), 0);
	cr_assert(daemon_wait_log(&daemon_p, "no file descriptor left (EMFILE)", 60000),
		  "the reconnect names the cause:\n%s", file_read(daemon_p.log));
	struct rlimit room = {4096, 4096};
	cr_assert_eq(prlimit(daemon_p.pid, RLIMIT_NOFILE, &room, NULL), 0);
	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 0, 100, 5);
	struct js_client reader;
	cr_assert_eq(js_client_open(&reader, stream.url), 0);
	all_stored(&reader, 100);
	js_client_close(&reader);
}

/* The tests above restart servers on their own ports. While one is down,
 * a server of another test program may take its port: the restart must
 * then fail, not take that server for its own (the daemon would publish
 * into the other test's stream). */
Test(delivery, a_restart_never_takes_another_server_on_the_port_for_its_own)
{
	start_stream_server(0);
	int port = stream.port;
	nats_server_stop(&stream);
	char d[600];
	snprintf(d, sizeof(d), "%s/other", dir);
	cr_assert_eq(mkdir(d, 0755), 0);
	cr_assert_eq(nats_server_start(&node[0], d, port, NULL), 0);
	cr_assert_neq(nats_server_restart(&stream), 0, "restarted onto the other server's port");
	cr_assert(nats_server_running(&node[0]));
}

Test(delivery, a_lost_connection_is_reported_unreachable_only_after_an_attempt_failed)
{
	start_daemon_and_stream(1000, 1, 64);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	nats_server_stop(&stream);
	cr_assert(daemon_wait_log(&daemon_p, "stream: cannot connect to", 10000));
	double after = seconds_since(&t0);
	/* The first reconnect is tried 250 ms after the loss. */
	cr_assert_geq(after, 0.2, "reported unreachable %.3f s after the loss, before any attempt",
		      after);
	cr_assert_gt(daemon_log_count(&daemon_p, "yet (1 attempt)"), 0, "one attempt had failed");
	cr_assert_eq(nats_server_restart(&stream), 0);
	for (int i = 0; i < 1000 && daemon_log_count(&daemon_p, "stream: connected") < 2; i++)
		nats_Sleep(20);
	cr_assert_eq(daemon_log_count(&daemon_p, "stream: connected"), 2, "back after the restart");
}

Test(delivery, stream_server_started_after_the_daemon_gets_everything)
{
	int port = start_daemon_before_its_stream(10000, 2, 64);
	cr_assert(daemon_wait_log(&daemon_p, "retrying in the background", 2000),
		  "the daemon says it keeps trying");

	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 0, 200, 2);
	nats_Sleep(1000);
	start_stream_server(port);
	create_stream(stream.url);
	struct js_client reader;
	cr_assert_eq(js_client_open(&reader, stream.url), 0);
	all_stored(&reader, 200);
	cr_assert_gt(daemon_log_count(&daemon_p, "stream: connected"), 0,
		     "the late connection is logged");
	js_client_close(&reader);
}

Test(delivery, a_stream_created_while_the_daemon_runs_gets_everything_and_the_wait_is_explained)
{
	/* The server answers each publish "no responders" until a stream
	 * captures the subject: the daemon says so, and keeps trying. */
	start_stream_server(0);
	char *q = quoted(stream.url);
	start_daemon(q, 10000, 2, 64);
	free(q);
	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 0, 200, 8);
	cr_assert(daemon_wait_log(&daemon_p,
				  "no JetStream stream answers on choria.node_metadata.node-",
				  10000),
		  "the daemon names the subject no stream captures");
	create_stream(stream.url);
	struct js_client reader;
	cr_assert_eq(js_client_open(&reader, stream.url), 0);
	struct adapter_counts n = all_stored(&reader, 200);
	cr_assert_gt(n.retries, 0, "the refused publishes were sent again");
	js_client_close(&reader);
}

Test(delivery, publishes_a_stopped_server_leaves_unanswered_are_sent_again_and_stored_once)
{
	/* ack_timeout is 2 s. The stopped server answers nothing; once it
	 * runs again it stores what it had read, and the resends too, which
	 * the duplicate window turns away. */
	start_daemon_and_stream(10000, 2, 64);
	struct js_client reader;
	cr_assert_eq(js_client_open(&reader, stream.url), 0);
	cr_assert_eq(kill(stream.pid, SIGSTOP), 0);
	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 0, 100, 9);
	bool warned = daemon_wait_log(&daemon_p, "publishes within 2000 ms; retrying", 10000);
	/* Past the first backoff, every one of them is sent again. */
	struct adapter_counts sent = {0};
	for (int waited = 0; waited < 20000 && sent.retries < 100; waited += 50) {
		kill(daemon_p.pid, SIGUSR1);
		nats_Sleep(50);
		pipeline_counts(&daemon_p, "node_data", &sent);
	}
	cr_assert_eq(kill(stream.pid, SIGCONT), 0);
	cr_assert(warned, "the daemon says why it publishes again");
	cr_assert_geq(sent.retries, 100, "each unanswered publish was sent again while unanswered");
	struct adapter_counts n = all_stored(&reader, 100);
	cr_assert_geq(n.retries, 100, "each unanswered publish was sent again (%lu retries)",
		      (unsigned long)n.retries);
	js_client_close(&reader);
}

Test(delivery, unanswered_publishes_are_sent_again_while_messages_keep_coming)
{
	/* Messages come every 20 ms, so no stream worker is ever idle, and
	 * the window (2 x 1024) never fills: the unanswered publishes are
	 * sent again all the same, once ack_timeout (2 s) has passed. */
	start_stream_server(0);
	create_stream_acking(stream.url, false);
	char *q = quoted(stream.url);
	start_daemon(q, 10000, 2, 1024);
	free(q);
	struct adapter_counts n = {0};
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* Four every 20 ms at most: the 2048 of the window take 10 s. */
	for (int i = 0; seconds_since(&t0) < 9.0 && n.retries == 0; i++) {
		pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 4 * i, 4, 10);
		nats_Sleep(20);
		if (seconds_since(&t0) > 2.0 && i % 5 == 0) {
			kill(daemon_p.pid, SIGUSR1);
			pipeline_counts(&daemon_p, "node_data", &n);
		}
	}
	cr_assert_gt(n.retries, 0, "no resend in %.1f s of steady traffic (%lu received)",
		     seconds_since(&t0), (unsigned long)n.received);
	cr_assert_eq(n.published, 0, "nothing is acknowledged");
}

Test(delivery, a_stream_server_that_hangs_at_start_fails_the_start_with_a_timeout)
{
	/* It accepts the connection but never completes the handshake. The
	 * NATS client cannot retry that in the background (it gives the
	 * connection up), so the start fails with status 3 and says why;
	 * systemd starts the daemon again. */
	start_stream_server(0);
	cr_assert_eq(kill(stream.pid, SIGSTOP), 0);
	char *q = quoted(stream.url);
	char *conf = daemon_conf(q, 1000, 2, 64);
	free(q);
	cr_assert_eq(daemon_start(&daemon_p, dir, conf), 0);
	free(conf);
	int status = daemon_wait_exit(&daemon_p, 30000);
	kill(stream.pid, SIGCONT);
	char *log = file_read(daemon_p.log);
	cr_assert_eq(status, 3, "status %d; log:\n%s", status, log);
	char want[160];
	snprintf(want, sizeof(want), "stream: cannot connect to %s: Timeout", stream.url);
	cr_assert_not_null(strstr(log, want), "the log says why:\n%s", log);
	free(log);
}

Test(delivery, a_full_queue_drops_exactly_what_is_not_delivered)
{
	int port = start_daemon_before_its_stream(10, 1, 5);

	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 0, 300, 3);
	cr_assert(daemon_wait_log(&daemon_p, "the queue is full", 5000), "the drop is logged");
	start_stream_server(port);
	create_stream(stream.url);
	struct js_client reader;
	cr_assert_eq(js_client_open(&reader, stream.url), 0);
	/* Whatever was accepted is now delivered: wait until the daemon has
	 * settled all 300, each published or dropped. */
	pipeline_counts_once_settled(&daemon_p, "node_data", 300, 60000);
	struct adapter_counts n = finish(&reader, 300);
	cr_assert_gt(n.dropped, 0);
	cr_assert_eq(n.dropped, 300 - n.published, "dropped %lu, published %lu",
		     (unsigned long)n.dropped, (unsigned long)n.published);
	cr_assert_geq(n.published, 10, "the queue's worth and the window were kept");
	js_client_close(&reader);
}

/* The stream's server stops answering for a second (SIGSTOP) while a
 * burst comes in through a queue of 10: returns how many were dropped. */
static uint64_t burst_through_a_paused_stream(int wait_ms)
{
	queue_wait_ms = wait_ms;
	start_daemon_and_stream(10, 1, 5);
	struct js_client reader;
	cr_assert_eq(js_client_open(&reader, stream.url), 0);
	/* Fewer than the queue holds: nothing can be dropped yet. */
	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 0, 5, 1);
	cr_assert(js_stream_wait_count(&reader, "NODES", 5, 30000));

	cr_assert_eq(kill(stream.pid, SIGSTOP), 0);
	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 5, 300, 3);
	nats_Sleep(1000);
	cr_assert_eq(kill(stream.pid, SIGCONT), 0);
	pipeline_counts_once_settled(&daemon_p, "node_data", 305, 60000);
	struct adapter_counts n = finish(&reader, 305);
	cr_assert_eq(n.dropped, 305 - n.published);
	js_client_close(&reader);
	return n.dropped;
}

Test(delivery, a_stream_that_pauses_for_less_than_queue_wait_ms_loses_nothing)
{
	cr_assert_eq(burst_through_a_paused_stream(5000), 0,
		     "the ingest waited for the stream instead of dropping");
}

Test(delivery, without_queue_wait_ms_the_same_pause_drops)
{
	cr_assert_gt(burst_through_a_paused_stream(0), 0,
		     "the pause does fill the queue: the test above tests something");
}

Test(delivery, sigterm_right_after_a_burst_delivers_every_accepted_message)
{
	start_daemon_and_stream(20000, 4, 256);
	struct js_client reader;
	cr_assert_eq(js_client_open(&reader, stream.url), 0);

	/* The server has every message when SIGTERM comes, though the
	 * daemon may not have read them all yet: the ingest's drain hands
	 * over what reached it, the stream side publishes it. */
	pipeline_publish_burst(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 0, 5000, 4);
	struct adapter_counts n = finish(&reader, 5000);
	cr_assert_eq(n.published, 5000);
	cr_assert_eq(n.dropped, 0, "a queue of 20000 holds a burst of 5000");
	js_client_close(&reader);
}

Test(delivery, a_full_window_refills_on_acknowledgements_not_on_timers)
{
	/* Two workers of two publishes each: a window of 4, full nearly all
	 * the time. Acknowledgements wake the waiting workers; had they to
	 * wait for their 50 ms timer instead, each worker would send two a
	 * timer at most, and a timed wait never ends early: 2000 messages
	 * would take 25 s at least. The bound sits below that. */
	start_daemon_and_stream(10000, 2, 2);
	struct js_client reader;
	cr_assert_eq(js_client_open(&reader, stream.url), 0);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 0, 2000, 5);
	cr_assert(js_stream_wait_count(&reader, "NODES", 2000, 60000));
	double s = seconds_since(&t0);
	cr_assert_lt(s, 20.0, "2000 messages through a window of 4 took %.1f s", s);
	struct adapter_counts n = finish(&reader, 2000);
	cr_assert_eq(n.published, 2000);
	cr_assert_eq(n.dropped, 0);
	js_client_close(&reader);
}

Test(delivery, a_frozen_stream_is_reported_stalled_until_it_answers_again)
{
	/* The server is alive and silent (SIGSTOP): its connection stays up,
	 * but nothing is acknowledged, and /healthz must say so. */
	start_stream_server(0);
	create_stream(stream.url);
	char *q = quoted(stream.url);
	char *adapter_conf = daemon_conf(q, 10000, 2, 64);
	free(q);
	int port = free_port();
	char *conf = NULL;
	cr_assert(asprintf(&conf, "metrics_listen = \"127.0.0.1:%d\"\n%s", port, adapter_conf) > 0);
	free(adapter_conf);
	pipeline_start_daemon(&daemon_p, dir, conf);
	free(conf);
	struct js_client reader;
	cr_assert_eq(js_client_open(&reader, stream.url), 0);
	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 0, 10, 1);
	cr_assert(js_stream_wait_count(&reader, "NODES", 10, 30000));
	cr_assert(pipeline_health_within(port, 200, NULL, 30000, NULL, NULL, 0),
		  "healthy while the stream answers");

	cr_assert_eq(kill(stream.pid, SIGSTOP), 0);
	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 10, 10, 1);
	bool stalled = pipeline_health_within(
		port, 503, "\"adapter node_data: stream acknowledgements disconnected\"", 60000,
		NULL, NULL, 0);
	int gauge = pipeline_connection_up(port, "stream acknowledgements");
	bool logged =
		daemon_wait_log(&daemon_p,
				"stream acknowledgements: 10 publishes held and none answered",
				10000);
	cr_assert_eq(kill(stream.pid, SIGCONT), 0);
	cr_assert(stalled, "/healthz reports the stall:\n%s", file_read(daemon_p.log));
	cr_assert_eq(gauge, 0, "the gauge reports the stall");
	cr_assert(logged, "the log says so:\n%s", file_read(daemon_p.log));

	cr_assert(pipeline_health_within(port, 200, NULL, 60000, NULL, NULL, 0),
		  "healthy again once answered");
	cr_assert_eq(pipeline_connection_up(port, "stream acknowledgements"), 1);
	cr_assert(daemon_wait_log(&daemon_p, "stream acknowledgements: connected", 10000));
	cr_assert(js_stream_wait_count(&reader, "NODES", 20, 60000));
	js_client_close(&reader);
}

Test(delivery, large_messages_for_a_frozen_stream_stay_within_max_bytes)
{
	/* 300 messages of 128 KiB for a stream that answers nothing: the
	 * queue (10000) and the window (64) would hold them all, about 80 MB
	 * with the envelopes; max_bytes = 4 MiB holds what fits and drops
	 * the newest. ASan's quarantine would keep what is dropped and
	 * freed, so the daemon runs without it. */
	daemon_free_at_once();
	adapter_extra = "max_bytes = 4194304";
	start_daemon_and_stream(10000, 1, 64);
	struct js_client reader;
	cr_assert_eq(js_client_open(&reader, stream.url), 0);
	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 0, 10, 5);
	cr_assert(js_stream_wait_count(&reader, "NODES", 10, 30000));
	long before = daemon_rss_kib(&daemon_p);

	cr_assert_eq(kill(stream.pid, SIGSTOP), 0);
	static char big[128 * 1024];
	memset(big, 'x', sizeof(big) - 1);
	for (int i = 0; i < 300; i++) {
		char sender[64], id[33];
		snprintf(sender, sizeof(sender), "big-%d.example.net", i);
		pipeline_request_id(id, 6, i);
		struct choria_msg_spec m = choria_msg_defaults(CHORIA_MSG_REQUEST);
		m.sender = sender;
		m.request_id = id;
		m.body = big;
		pipeline_publish_spec(&fleet, "choria.discovery", &m);
	}
	cr_assert_eq(natsConnection_FlushTimeout(fleet.nc, 30000), NATS_OK);
	struct adapter_counts n =
		pipeline_counts_once_received(&daemon_p, "node_data", 310, 120000);
	long after = daemon_rss_kib(&daemon_p);
	bool logged = daemon_wait_log(&daemon_p, "the adapter holds max_bytes already", 10000);
	cr_assert_eq(kill(stream.pid, SIGCONT), 0);

	cr_log_info("RSS %ld KiB before, %ld KiB after; %lu dropped", before, after,
		    (unsigned long)n.dropped);
	cr_assert(logged, "the drop says why");
	cr_assert_gt(n.dropped, 200, "what exceeds the budget is dropped (%lu dropped)",
		     (unsigned long)n.dropped);
	cr_assert_lt(n.dropped, 300, "what fits is kept");
	/* Twice the budget (the message, then its envelope in the window)
	 * and a margin for the allocator and the NATS client's buffers. Not
	 * under ThreadSanitizer, whose shadow memory grows with every byte
	 * the daemon touches, freed or not: the other builds check it. */
#ifndef __SANITIZE_THREAD__
	cr_assert_lt(after - before, 2 * 4096 + 16 * 1024,
		     "RSS grew from %ld to %ld KiB with a budget of 4 MiB", before, after);
#endif
	/* What was kept is delivered once the stream answers again. */
	cr_assert(js_stream_wait_count(&reader, "NODES", 310 - n.dropped, 60000));
	js_client_close(&reader);
}

Test(delivery, an_absent_stream_side_cannot_hold_the_shutdown_past_the_drain_timeout)
{
	drain_timeout = 2;
	start_daemon_before_its_stream(20, 2, 4);
	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 0, 100, 6);
	cr_assert(daemon_wait_log(&daemon_p, "the queue is full", 5000));

	sigterm_bounded();

	struct adapter_counts n = balanced_counts();
	cr_assert_eq(n.received, 100);
	cr_assert_eq(n.published, 0);
	cr_assert_eq(n.in_flight, 0);
	cr_assert_eq(n.lost + n.dropped, 100, "every message is accounted for");
	cr_assert_gt(n.lost, 0, "what was accepted is reported lost at shutdown");
	cr_assert_gt(daemon_log_count(&daemon_p, "could not be delivered before the drain timeout"),
		     0);
}

Test(delivery, sigterm_while_the_ingest_waits_for_a_paused_stream_stops_in_time)
{
	drain_timeout = 2;
	queue_wait_ms = 5000;
	start_daemon_and_stream(10, 1, 5);
	cr_assert_eq(kill(stream.pid, SIGSTOP), 0);
	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 0, 300, 7);
	nats_Sleep(500); /* the queue is full and a subscription waits */

	/* The longest wait (5 s) fits in the ingest's drain, then drain_timeout. */
	sigterm_bounded();
	kill(stream.pid, SIGCONT);
	struct adapter_counts n = balanced_counts();
	cr_assert_eq(n.received, 300);
	cr_assert_eq(n.lost + n.dropped + n.published, 300, "every message is accounted for");
	cr_assert_eq(daemon_log_count(&daemon_p, "did not confirm the end of the subscription"), 0,
		     "the waiting subscription ended in time");
}

/* Three clustered JetStream servers and a stream with three replicas:
 * killing the stream's leader mid-flow loses nothing and stores nothing
 * twice. */
Test(delivery, killing_the_stream_leader_of_a_cluster_loses_nothing)
{
	int port[3], route[3];
	for (int i = 0; i < 3; i++) {
		port[i] = free_port();
		route[i] = free_port();
	}
	char urls[256], quoted_urls[300];
	snprintf(urls, sizeof(urls), "nats://127.0.0.1:%d,nats://127.0.0.1:%d,nats://127.0.0.1:%d",
		 port[0], port[1], port[2]);
	snprintf(quoted_urls, sizeof(quoted_urls),
		 "\"nats://127.0.0.1:%d\", \"nats://127.0.0.1:%d\", \"nats://127.0.0.1:%d\"",
		 port[0], port[1], port[2]);
	for (int i = 0; i < 3; i++) {
		char d[600], conf[1024];
		snprintf(d, sizeof(d), "%s/n%d", dir, i + 1);
		cr_assert_eq(mkdir(d, 0755), 0);
		snprintf(conf, sizeof(conf),
			 "server_name: n%d\n"
			 "cluster {\n  name: cad\n  listen: 127.0.0.1:%d\n"
			 "  routes: [nats-route://127.0.0.1:%d, nats-route://127.0.0.1:%d]\n}\n",
			 i + 1, route[i], route[(i + 1) % 3], route[(i + 2) % 3]);
		cr_assert_eq(nats_server_start(&node[i], d, port[i], conf), 0);
	}
	struct js_client reader;
	cr_assert_eq(js_client_open(&reader, urls), 0);
	cr_assert_eq(js_stream_create(&reader, "NODES", "choria.node_metadata.>", 3), 0);
	start_daemon(quoted_urls, 100000, 3, 64);

	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 0, 300, 5);
	cr_assert(js_stream_wait_count(&reader, "NODES", 300, 30000));

	jsStreamInfo *si = NULL;
	jsErrCode code = 0;
	cr_assert_eq(js_GetStreamInfo(&si, reader.js, "NODES", NULL, &code), NATS_OK);
	cr_assert(si->Cluster && si->Cluster->Leader, "the stream has a leader");
	int leader = -1;
	sscanf(si->Cluster->Leader, "n%d", &leader);
	jsStreamInfo_Destroy(si);
	cr_assert(leader >= 1 && leader <= 3);
	nats_server_kill(&node[leader - 1]);

	pipeline_publish(&fleet, "choria.discovery", CHORIA_MSG_REQUEST, 300, 300, 5);
	cr_assert(js_stream_wait_count(&reader, "NODES", 600, 90000), "a new leader takes all 600");
	struct adapter_counts n = finish(&reader, 600);
	cr_assert_eq(n.published, 600);
	js_client_close(&reader);
}
