/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cad-bench: how close choria-adapterd comes to what the machine can do.
 *
 * One run starts a nats-server with JetStream, builds the messages once,
 * and measures over the same messages and server:
 *   raw      a relay that republishes bytes unchanged (cad-bench-relay)
 *   none     the daemon, security = none
 *   verify   the daemon, security = verify
 *   v2verify the daemon, security = verify, on Choria protocol v2
 *            registration (ed25519, server tokens from a chain issuer)
 * plus the RSA-2048 and ed25519 verifications one core does per second.
 * For each: the rate at which messages land in the stream, its ratio to
 * raw (the relay's runs are on v1's messages), latency at a fixed
 * moderate rate, the daemon's CPU per 100k messages and its peak memory,
 * and loss. Each figure is the median of BENCH_REPEATS runs; the
 * ratio to raw is the median of the ratios within each repeat, which are
 * printed too. Under the table, the targets against those medians,
 * each beside the relay's own figure.
 *
 * Environment: BENCH_MESSAGES (200000), BENCH_REPEATS (3), BENCH_RATE
 * (10000 msg/s for latency), BENCH_LATENCY_SECONDS (5), BENCH_MODES
 * ("raw,none,verify,v2verify,scraped"; scraped is none with /metrics
 * fetched every BENCH_SCRAPE_MS, default 10), BENCH_WINDOW (2000 messages
 * published but not yet republished, for the throughput runs; 0 publishes
 * everything at once),
 * BENCH_KEEP (set: keep the temporary folder, with the server's and the
 * daemons' logs, and print where it is), BENCH_DAEMON_PRELOAD (LD_PRELOAD
 * for the daemon alone: another allocator), BENCH_RELAY_MSG_ID (set: the
 * relay gives each publish a Nats-Msg-Id). "lost" is the total over all
 * runs.
 *
 * Where the kafka module is built, BENCH_MODES may also name `kafka`: the
 * daemon with security = none producing to librdkafka's mock cluster in
 * this process (kafka_sink.c), a fresh topic per run, with
 * BENCH_KAFKA_MAX_INFLIGHT (10000) records per worker awaiting Kafka's
 * report. Its throughput, CPU and memory are measured like the others'
 * (landed means stored in the topic); its latency is not.
 *
 * Where the http module is built, BENCH_MODES may also name `http`: the
 * daemon with security = none sending to an HTTP server in this process
 * that answers 204 (http_204.c), BENCH_HTTP_BATCH_MAX (1) messages a
 * request, BENCH_HTTP_MAX_INFLIGHT (16) requests in flight per worker.
 * Landed means received by that server; no latency run either.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_certs.h"
#include "bench_v2.h"
#include "corpus.h"
#include "daemon_proc.h"
#include "http_get.h"
#include "js_reader.h"
#ifdef CAD_BENCH_HTTP
#include "http_204.h"
#endif
#ifdef CAD_BENCH_KAFKA
#include "kafka_sink.h"
#endif
#include "nats_server.h"
#include "proc_stats.h"
#include "targets.h"
#include "tmpdir.h"

#define IN_SUBJECT "choria.bench"
#define STREAM "BENCH"
#define MAX_REPEATS 15

static char dir[512];
static struct nats_server server;
static struct js_client client;
/* The messages of the mode that runs: v1's, or v2's for v2verify. */
static struct corpus corpus, corpus_v1, corpus_v2;
static struct bench_pki pki;
static struct bench_v2_fleet fleet_v2;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long env_long(const char *name, long def)
{
	const char *v = getenv(name);
	return v && *v ? strtol(v, NULL, 10) : def;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double sum(const double *v, int n)
{
	double t = 0;
	for (int i = 0; i < n; i++)
		t += v[i];
	return t;
}

static void fresh_stream(void)
{
	jsErrCode code;
	js_DeleteStream(client.js, STREAM, NULL, &code);
	if (js_stream_create(&client, STREAM, "choria.node_metadata.>", 1) != 0) {
		fprintf(stderr, "cad-bench: cannot create the stream\n");
		exit(1);
	}
}

/* ---------------------------------------------------------- processes */

/* scraped: security = none, with /metrics fetched every BENCH_SCRAPE_MS
 * throughout, to show what counting costs under an active scraper. */
enum mode {
	MODE_RAW,
	MODE_NONE,
	MODE_VERIFY,
	MODE_V2VERIFY,
	MODE_SCRAPED,
	MODE_KAFKA,
	MODE_HTTP,
	N_MODES
};
static const char *const mode_name[] = {"raw",     "none",  "verify", "v2verify",
					"scraped", "kafka", "http"};

/* Whether the comma-separated list names the mode (whole names only:
 * "verify" is part of "v2verify"). */
static bool mode_listed(const char *modes, int m)
{
	size_t n = strlen(mode_name[m]);
	for (const char *p = modes; p && *p; p = strchr(p, ','), p = p ? p + 1 : NULL)
		if (strncmp(p, mode_name[m], n) == 0 && (p[n] == ',' || p[n] == '\0'))
			return true;
	return false;
}

/* Whether this build has the mode: kafka and http need their modules. */
static bool mode_built(int m)
{
#ifndef CAD_BENCH_KAFKA
	if (m == MODE_KAFKA)
		return false;
#endif
#ifndef CAD_BENCH_HTTP
	if (m == MODE_HTTP)
		return false;
#endif
	return m >= 0 && m < N_MODES;
}

/* Whether the mode's messages land outside NATS, counted by a sink in
 * this process: no JetStream observer, no latency run. */
static bool mode_sink(int m)
{
	return m == MODE_KAFKA || m == MODE_HTTP;
}
/* The http mode's server port. */
static int http_port = -1;
/* The kafka mode's topic for the current run. */
static char kafka_topic[64];

struct proc {
	enum mode mode;
	pid_t pid;
	struct daemon_proc daemon;
	int metrics_port;
	pthread_t scraper;
	_Atomic int scraping;
	_Atomic unsigned long scrapes, scrape_errors;
};

static long scrape_ms = 10;

static void *scrape(void *arg)
{
	struct proc *p = arg;
	while (atomic_load(&p->scraping)) {
		struct http_reply r;
		if (http_request(&r, "127.0.0.1", p->metrics_port, "GET", "/metrics", 2000) == 0 &&
		    r.status == 200)
			atomic_fetch_add(&p->scrapes, 1);
		else
			atomic_fetch_add(&p->scrape_errors, 1);
		http_reply_free(&r);
		nats_Sleep(scrape_ms);
	}
	return NULL;
}

static void start_relay(struct proc *p)
{
	char bin[600], log[600];
	snprintf(bin, sizeof(bin), "%s/tests/bench/cad-bench-relay", TOP_BUILDDIR);
	snprintf(log, sizeof(log), "%s/relay.log", dir);
	int fds[2];
	if (pipe(fds) != 0)
		exit(1);
	p->pid = fork();
	if (p->pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		dup2(fd, STDERR_FILENO);
		close_range(3, ~0U, 0);
		execl(bin, bin, server.url, IN_SUBJECT, "choria.node_metadata.raw", "2560",
		      (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	char buf[16] = "";
	if (read(fds[0], buf, sizeof(buf) - 1) <= 0) {
		fprintf(stderr, "cad-bench: the relay did not start (see %s)\n", log);
		exit(1);
	}
	close(fds[0]);
}

/* The ingest's trust: v1's CA, or for v2verify the v2 organisation. */
static void trust_of(enum mode mode, char *out, size_t len)
{
	if (mode == MODE_V2VERIFY)
		snprintf(out, len, "issuers = {\"choria=%s\"}", fleet_v2.org.pub_hex);
	else
		snprintf(out, len, "ca = \"%s\"", pki.ca_path);
}

/* The example configuration's shape: 10 + 10 workers, a queue of 1000. */
static void start_daemon(struct proc *p, const char *security)
{
	char trust[700];
	trust_of(p->mode, trust, sizeof(trust));
	char *conf = NULL, listen[64] = "";
	if (p->mode == MODE_SCRAPED) {
		p->metrics_port = free_port();
		snprintf(listen, sizeof(listen), "127.0.0.1:%d", p->metrics_port);
	}
	char *stream = NULL;
	int rc = asprintf(&stream,
			  "  stream { type = \"jetstream\" servers = {\"%s\"}\n"
			  "           topic = \"choria.node_metadata.%%s\" workers = %ld\n"
			  "           max_inflight = %ld }\n",
			  server.url, env_long("BENCH_STREAM_WORKERS", 10),
			  env_long("BENCH_MAX_INFLIGHT", 256));
#ifdef CAD_BENCH_KAFKA
	if (p->mode == MODE_KAFKA) {
		char brokers[600];
		kafka_sink_brokers(brokers, sizeof(brokers));
		free(stream);
		rc = asprintf(&stream,
			      "  stream { type = \"kafka\" brokers = {%s}\n"
			      "           topic = \"%s\" workers = %ld max_inflight = %ld }\n",
			      brokers, kafka_topic, env_long("BENCH_STREAM_WORKERS", 10),
			      env_long("BENCH_KAFKA_MAX_INFLIGHT", 10000));
	}
#endif
	if (p->mode == MODE_HTTP) {
		free(stream);
		rc = asprintf(&stream,
			      "  stream { type = \"http\" url = \"http://127.0.0.1:%d/bench\"\n"
			      "           workers = %ld batch_max = %ld max_inflight = %ld }\n",
			      http_port, env_long("BENCH_STREAM_WORKERS", 10),
			      env_long("BENCH_HTTP_BATCH_MAX", 1),
			      env_long("BENCH_HTTP_MAX_INFLIGHT", 16));
	}
	if (rc < 0 ||
	    asprintf(&conf,
		     "identity = \"bench\"\n"
		     "metrics_listen = \"%s\"\n"
		     "adapter node_data {\n"
		     "  queue_len = 1000\n"
		     "  ingest { type = \"choria\" servers = {\"%s\"} topic = \"%s\"\n"
		     "           protocol = \"request\" workers = %ld security = \"%s\" %s }\n"
		     "%s"
		     "}\n",
		     listen, server.url, IN_SUBJECT, env_long("BENCH_INGEST_WORKERS", 10), security,
		     trust, stream) < 0)
		exit(1);
	free(stream);
	char d[600];
	snprintf(d, sizeof(d), "%s/daemon-%s-%ld", dir, mode_name[p->mode], (long)time(NULL));
	mkdir(d, 0755);
	if (daemon_start_preloaded(&p->daemon, d, conf, getenv("BENCH_DAEMON_PRELOAD")) != 0 ||
	    !daemon_wait_log(&p->daemon, "running", 20000)) {
		char *log = file_read(p->daemon.log);
		fprintf(stderr, "cad-bench: the daemon did not start:\n%s\n", log ? log : "");
		exit(1);
	}
	free(conf);
	p->pid = p->daemon.pid;
	nats_Sleep(300); /* subscriptions reach the server */
	if (p->mode == MODE_SCRAPED) {
		atomic_store(&p->scraping, 1);
		pthread_create(&p->scraper, NULL, scrape, p);
	}
}

static void start_proc(struct proc *p, enum mode mode)
{
	memset(p, 0, sizeof(*p));
	p->mode = mode;
	if (mode == MODE_RAW)
		start_relay(p);
	else
		start_daemon(p, mode == MODE_VERIFY || mode == MODE_V2VERIFY ? "verify" : "none");
}

static void stop_proc(struct proc *p)
{
	if (atomic_exchange(&p->scraping, 0)) {
		pthread_join(p->scraper, NULL);
		if (!atomic_load(&p->scrapes))
			fprintf(stderr, "cad-bench: no scrape of /metrics succeeded (%lu failed)\n",
				(unsigned long)atomic_load(&p->scrape_errors));
		else
			fprintf(stderr, "  %lu scrapes of /metrics\n",
				(unsigned long)atomic_load(&p->scrapes));
	}
	kill(p->pid, SIGTERM);
	int st;
	for (int i = 0; i < 3000 && waitpid(p->pid, &st, WNOHANG) != p->pid; i++)
		nats_Sleep(10);
	kill(p->pid, SIGKILL);
	waitpid(p->pid, NULL, WNOHANG);
	p->daemon.pid = 0;
}

/* ---------------------------------------------------------- throughput */

struct result {
	double rate, cpu_per_100k, p50_ms, p99_ms, switches_per_msg;
	double p99_out_ms;           /* to the republished message leaving for the server */
	size_t acked;                /* measured messages whose acknowledgement was seen */
	long rss_kib, paced_rss_kib; /* peak in the throughput run, in the latency run */
	uint64_t lost, stalls;
};

/* Static: the subscription's last callbacks may run after its destruction
 * returns. */
static _Atomic uint64_t landed;

static void on_landed(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
	(void)nc;
	(void)sub;
	(void)closure;
	atomic_fetch_add(&landed, 1);
	natsMsg_Destroy(m);
}

static void on_sub_complete(void *closure)
{
	atomic_store((atomic_bool *)closure, true);
}

/* End an observer under a flood of messages: the connection is closed
 * first, which ends its reader, because destroying a subscription while
 * the reader still delivers to it can leave the reader with the freed
 * subscription (seen as a hang in a freed mutex). When `complete` is
 * given, wait until the subscription's handler has run for the last time. */
static void observer_close(natsConnection *obs, natsSubscription *sub, atomic_bool *complete)
{
	natsConnection_Close(obs);
	for (int i = 0; complete && i < 5000 && !atomic_load(complete); i++)
		nats_Sleep(1);
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(obs);
}

/*
 * The fleet: with a window, at most `window` messages are between their
 * publication and their republication (seen by a subscriber on the output
 * subjects), so the run measures what the relay or daemon sustains rather
 * than how much of a burst it can buffer; a window that has not moved for
 * a second is ignored, so lost messages cannot stall the run. Without a
 * window, everything is published at once.
 */
static _Atomic int sink_counting;
static uint64_t landed_count(enum mode mode);

/* In kafka mode, what landed is what the topic holds; in http mode, what
 * the server received. */
static void *sink_count_landed(void *arg)
{
	enum mode mode = *(enum mode *)arg;
	while (atomic_load(&sink_counting)) {
		uint64_t n = landed_count(mode);
		if (n != UINT64_MAX)
			atomic_store(&landed, n);
		nats_Sleep(5);
	}
	return NULL;
}

static void publish_all(enum mode mode, long window, uint64_t *stalls)
{
	natsConnection *obs = NULL;
	natsSubscription *sub = NULL;
	*stalls = 0;
	atomic_store(&landed, 0);
	pthread_t counter;
	if (mode_sink(mode) && window > 0) {
		atomic_store(&sink_counting, 1);
		pthread_create(&counter, NULL, sink_count_landed, &mode);
	}
	if (window > 0 && !mode_sink(mode)) {
		natsConnection_ConnectTo(&obs, server.url);
		natsConnection_Subscribe(&sub, obs, "choria.node_metadata.>", on_landed, NULL);
		natsSubscription_SetPendingLimits(sub, -1, -1);
		natsConnection_Flush(obs);
	}
	/* Messages written off after a stall: they count as landed. */
	uint64_t forgiven = 0;
	for (size_t i = 0; i < corpus.n; i++) {
		if (window > 0 && i >= atomic_load(&landed) + forgiven + (uint64_t)window) {
			natsConnection_Flush(client.nc);
			double since = now_s();
			uint64_t seen = atomic_load(&landed);
			while (i >= atomic_load(&landed) + forgiven + (uint64_t)window) {
				nats_Sleep(1);
				if (atomic_load(&landed) != seen) {
					seen = atomic_load(&landed);
					since = now_s();
				} else if (now_s() - since > 1.0) {
					(*stalls)++;
					forgiven = i - atomic_load(&landed);
					break;
				}
			}
		}
		natsConnection_Publish(client.nc, IN_SUBJECT, corpus.wire[i], (int)corpus.len[i]);
	}
	natsConnection_FlushTimeout(client.nc, 60000);
	if (obs)
		observer_close(obs, sub, NULL);
	if (atomic_exchange(&sink_counting, 0))
		pthread_join(counter, NULL);
}

/* Messages landed so far: in the stream, or in kafka mode the topic. */
static uint64_t landed_count(enum mode mode)
{
#ifdef CAD_BENCH_KAFKA
	if (mode == MODE_KAFKA)
		return kafka_sink_count();
#endif
#ifdef CAD_BENCH_HTTP
	if (mode == MODE_HTTP)
		return http_204_count();
#endif
	return js_stream_count(&client, STREAM);
}

static void throughput(enum mode mode, long window, struct result *r)
{
	fresh_stream();
#ifdef CAD_BENCH_HTTP
	if (mode == MODE_HTTP)
		http_204_reset();
#endif
#ifdef CAD_BENCH_KAFKA
	if (mode == MODE_KAFKA && kafka_sink_topic(kafka_topic, sizeof(kafka_topic)) != 0) {
		fprintf(stderr, "cad-bench: cannot create a Kafka topic\n");
		exit(1);
	}
#endif
	struct proc p;
	start_proc(&p, mode);
	double cpu0 = proc_cpu_seconds(p.pid);
	long sw0 = proc_context_switches(p.pid);
	double t0 = now_s();
	publish_all(mode, window, &r->stalls);
	uint64_t n = 0, last = 0;
	double t_last = now_s(), t_done = 0;
	for (;;) {
		n = landed_count(mode);
		double t = now_s();
		if (n != UINT64_MAX && n >= corpus.n) {
			t_done = t;
			break;
		}
		if (n != last) {
			last = n;
			t_last = t;
		} else if (t - t_last > 10) {
			break; /* no progress: the rest is lost */
		}
		nats_Sleep(20);
	}
	if (!t_done)
		t_done = t_last;
	double cpu1 = proc_cpu_seconds(p.pid);
	long sw1 = proc_context_switches(p.pid);
	r->rss_kib = proc_peak_rss_kib(p.pid);
	r->switches_per_msg = (double)(sw1 - sw0) / (double)corpus.n;
	r->rate = (double)(n == UINT64_MAX ? last : n) / (t_done - t0);
	r->cpu_per_100k = (cpu1 - cpu0) * 100000.0 / (double)corpus.n;
	r->lost = corpus.n - (n == UINT64_MAX ? last : n);
	stop_proc(&p);
}

/* ---------------------------------------------------------- latency */

struct latency {
	double *sent;  /* publish time of message first + i */
	double *delay; /* arrival - sent, per arrival */
	_Atomic size_t arrived;
	size_t first; /* the corpus index of the first measured message */
	size_t count;
	enum mode mode;
	double *acked; /* when JetStream acknowledged stream sequence s, by s */
	size_t max_seq;
};

/*
 * Which corpus message a republished envelope carries. The daemon's
 * Nats-Msg-Id header starts with the request id, which numbers the corpus;
 * reading it costs a microsecond, where parsing the 5 KB envelope with
 * jansson took about 100: at 10000 msg/s that was a core of the two,
 * and a backlog in this observer that counted as the daemon's latency.
 * The envelope is parsed only if the header is missing.
 */
static int64_t envelope_index(natsMsg *m)
{
	const char *id = NULL;
	if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) == NATS_OK && id) {
		const char *colon = strchr(id, ':');
		return corpus_index_of_request_id(id, colon ? (size_t)(colon - id) : strlen(id));
	}
	int64_t i = -1;
	json_t *env = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
	json_t *rid = json_object_get(env, "requestid");
	if (json_is_string(rid))
		i = corpus_index_of_request_id(json_string_value(rid), json_string_length(rid));
	json_decref(env);
	return i;
}

static void on_stored(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
	(void)nc;
	(void)sub;
	struct latency *l = closure;
	double t = now_s();
	int64_t i = -1;
	if (l->mode == MODE_RAW) {
		i = corpus_find(&corpus, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
	} else {
		i = envelope_index(m);
	}
	i -= (int64_t)l->first; /* the warm-up's messages are not measured */
	if (i >= 0 && (size_t)i < l->count && l->sent[i] > 0) {
		size_t k = atomic_fetch_add(&l->arrived, 1);
		if (k < l->count)
			l->delay[k] = t - l->sent[i];
	}
	natsMsg_Destroy(m);
}

/*
 * A JetStream acknowledgement, seen by an observer subscribed to the
 * acknowledgements' subjects (the relay's and the daemon's reply inboxes):
 * it gets each one when the relay or the daemon does. An acknowledgement
 * names a stream sequence, not a message; latency_by_ack() reads the
 * stream afterwards to tell which message each sequence holds. A repeated
 * acknowledgement (a retried publish) keeps the first time.
 */
static void on_ack(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
	(void)nc;
	(void)sub;
	struct latency *l = closure;
	double t = now_s();
	json_t *ack = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
	json_t *stream = json_object_get(ack, "stream"), *seq = json_object_get(ack, "seq");
	if (json_is_string(stream) && strcmp(json_string_value(stream), STREAM) == 0 &&
	    json_is_integer(seq) && !json_object_get(ack, "error")) {
		json_int_t k = json_integer_value(seq);
		if (k > 0 && (size_t)k <= l->max_seq && l->acked[k] == 0)
			l->acked[k] = t;
	}
	json_decref(ack);
	natsMsg_Destroy(m);
}

/* Publish-to-acknowledgement delays of the measured messages into
 * l->delay, from the acknowledgement times by sequence; their count. */
static size_t latency_by_ack(struct latency *l)
{
	size_t got = 0;
	for (size_t k = 1; k <= l->max_seq && got < l->count; k++) {
		if (l->acked[k] == 0)
			continue;
		natsMsg *m = js_stream_get(&client, STREAM, k);
		if (!m)
			continue;
		int64_t i = l->mode == MODE_RAW ? corpus_find(&corpus, natsMsg_GetData(m),
							      (size_t)natsMsg_GetDataLength(m))
						: envelope_index(m);
		natsMsg_Destroy(m);
		i -= (int64_t)l->first;
		if (i >= 0 && (size_t)i < l->count && l->sent[i] > 0)
			l->delay[got++] = l->acked[k] - l->sent[i];
	}
	return got;
}

/* Publish corpus messages [first, first + count) at `rate` a second, in
 * 1 ms slots, sleeping between slots (a fleet generator that spins would
 * take a core from what it measures); their send times go to sent[]. */
static void pace(size_t first, size_t count, long rate, double *sent)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	size_t per_ms = (size_t)(rate / 1000 > 0 ? rate / 1000 : 1);
	for (size_t i = 0; i < count;) {
		long long due = (long long)t0.tv_nsec + (long long)(i / per_ms) * 1000000LL;
		struct timespec at = {t0.tv_sec + (time_t)(due / 1000000000LL),
				      (long)(due % 1000000000LL)};
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR)
			;
		for (size_t k = 0; k < per_ms && i < count; k++, i++) {
			if (sent)
				sent[i] = now_s();
			natsConnection_Publish(client.nc, IN_SUBJECT, corpus.wire[first + i],
					       (int)corpus.len[first + i]);
		}
		natsConnection_Flush(client.nc);
	}
}

static void latency(enum mode mode, long rate, long seconds, struct result *r)
{
	fresh_stream();
	struct proc p;
	start_proc(&p, mode);
	struct latency l = {.mode = mode, .first = pki.n_nodes}; /* one from each sender */
	if (l.first > corpus.n / 2)
		l.first = corpus.n / 2;
	l.count = (size_t)(rate * seconds);
	if (l.count > corpus.n - l.first)
		l.count = corpus.n - l.first;
	l.sent = calloc(l.count, sizeof(double));
	l.delay = calloc(l.count, sizeof(double));
	l.max_seq = l.first + l.count + 1000; /* room for a few retried publishes */
	l.acked = calloc(l.max_seq + 1, sizeof(double));
	natsConnection *obs = NULL;
	natsSubscription *sub = NULL, *acks = NULL;
	natsConnection_ConnectTo(&obs, server.url);
	natsConnection_Subscribe(&sub, obs, "choria.node_metadata.>", on_stored, &l);
	natsSubscription_SetPendingLimits(sub, -1, -1);
	natsConnection_Subscribe(&acks, obs, "_INBOX.>", on_ack, &l);
	natsSubscription_SetPendingLimits(acks, -1, -1);
	/* The handlers write into `l`: they must have run for the last time
	 * before `l` goes away. */
	atomic_bool complete = false, acks_complete = false;
	natsSubscription_SetOnCompleteCB(sub, on_sub_complete, &complete);
	natsSubscription_SetOnCompleteCB(acks, on_sub_complete, &acks_complete);
	natsConnection_Flush(obs);

	/* Warm-up: one message from each sender at the same pace, not
	 * measured, so that what follows is the steady state (in verify mode
	 * the first message of each signer pays its certificate checks). */
	pace(0, l.first, rate, NULL);
	nats_Sleep(500);
	pace(l.first, l.count, rate, l.sent);
	for (int i = 0; i < 1000 && atomic_load(&l.arrived) < l.count; i++)
		nats_Sleep(10);
	/* The last acknowledgements follow the last arrivals. */
	nats_Sleep(200);
	size_t got = atomic_load(&l.arrived);
	r->paced_rss_kib = proc_peak_rss_kib(p.pid);
	observer_close(obs, sub, &complete);
	for (int i = 0; i < 5000 && !atomic_load(&acks_complete); i++)
		nats_Sleep(1);
	natsSubscription_Destroy(acks);
	stop_proc(&p);
	if (got > l.count)
		got = l.count;
	qsort(l.delay, got, sizeof(double), cmp_double);
	r->p99_out_ms = got ? l.delay[(size_t)((double)got * 0.99)] * 1000 : -1;
	got = latency_by_ack(&l);
	qsort(l.delay, got, sizeof(double), cmp_double);
	r->p50_ms = got ? l.delay[got / 2] * 1000 : -1;
	r->p99_ms = got ? l.delay[(size_t)((double)got * 0.99)] * 1000 : -1;
	r->acked = got;
	free(l.sent);
	free(l.delay);
	free(l.acked);
}

/* ---------------------------------------------------------- crypto limit */

static double verify_limit(void)
{
	const char *msg = corpus.wire[0];
	size_t len = corpus.len[0];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char sig[512];
	size_t siglen = sizeof(sig);
	EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pki.node_key);
	EVP_DigestSign(md, sig, &siglen, (const unsigned char *)msg, len);
	long done = 0;
	double t0 = now_s(), t;
	do {
		for (int k = 0; k < 100; k++) {
			EVP_MD_CTX_reset(md);
			EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pki.node_key);
			if (EVP_DigestVerify(md, sig, siglen, (const unsigned char *)msg, len) == 1)
				done++;
		}
		t = now_s();
	} while (t - t0 < 2.0);
	EVP_MD_CTX_free(md);
	return (double)done / (t - t0);
}

/* Whether the daemon takes the mode's security = verify configuration. */
static int verify_available(enum mode mode)
{
	char conf[4096], trust[700], *out = NULL;
	trust_of(mode, trust, sizeof(trust));
	snprintf(conf, sizeof(conf),
		 "adapter a {\n ingest { type = \"choria\" topic = \"t\" security = \"verify\"\n"
		 "   %s }\n stream { type = \"jetstream\" }\n}\n",
		 trust);
	char path[700], moddir[700];
	tmpdir_write(dir, "probe.conf", conf, path, sizeof(path));
	daemon_modules_dir(moddir, sizeof(moddir), dir);
	int st = daemon_run_cmd(&out, dir, "-t", "-c", path, "-M", moddir, NULL);
	free(out);
	return st == 0;
}

int main(void)
{
	long n = env_long("BENCH_MESSAGES", 200000);
	int repeats = (int)env_long("BENCH_REPEATS", 3);
	long rate = env_long("BENCH_RATE", 10000);
	long lat_s = env_long("BENCH_LATENCY_SECONDS", 5);
	long window = env_long("BENCH_WINDOW", 2000);
	const char *modes =
		getenv("BENCH_MODES") ? getenv("BENCH_MODES") : "raw,none,verify,v2verify,scraped";
	scrape_ms = env_long("BENCH_SCRAPE_MS", 10);
	if (repeats < 1 || repeats > MAX_REPEATS)
		repeats = 3;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	signal(SIGPIPE, SIG_IGN);
	if (tmpdir_make(dir, sizeof(dir)) != 0 || nats_server_start(&server, dir, 0, NULL) != 0 ||
	    js_client_open(&client, server.url) != 0) {
		fprintf(stderr, "cad-bench: cannot start nats-server\n");
		return 1;
	}
	fprintf(stderr, "building %ld signed messages from 1000 senders on %ld cores...\n", n,
		cores);
	double tb = now_s();
	if (bench_pki_make(&pki, 1000, dir) != 0 ||
	    corpus_build(&corpus_v1, (size_t)n, &pki, (unsigned)cores) != 0) {
		fprintf(stderr, "cad-bench: cannot build the messages\n");
		return 1;
	}
	corpus = corpus_v1;
	size_t bytes = 0;
	for (size_t i = 0; i < corpus.n; i++)
		bytes += corpus.len[i];
	fprintf(stderr, "built in %.1f s, %.0f bytes per message on the wire\n", now_s() - tb,
		(double)bytes / (double)corpus.n);

	double vps = verify_limit();
	int have_verify = verify_available(MODE_VERIFY);
	/* v2: its fleet, then its messages if the daemon reads v2 */
	int have_v2 = 0;
	size_t bytes_v2 = 0, signed_v2 = 0;
	double eps = 0;
	if (mode_listed(modes, MODE_V2VERIFY)) {
		tb = now_s();
		if (bench_v2_fleet_make(&fleet_v2, 1000) != 0) {
			fprintf(stderr, "cad-bench: cannot make the v2 fleet\n");
			return 1;
		}
		have_v2 = verify_available(MODE_V2VERIFY);
		if (have_v2 &&
		    corpus_build_v2(&corpus_v2, (size_t)n, &fleet_v2, (unsigned)cores) != 0) {
			fprintf(stderr, "cad-bench: cannot build the v2 messages\n");
			return 1;
		}
		for (size_t i = 0; i < corpus_v2.n; i++)
			bytes_v2 += corpus_v2.len[i];
		if (have_v2)
			fprintf(stderr, "v2 built in %.1f s, %.0f bytes per message on the wire\n",
				now_s() - tb, (double)bytes_v2 / (double)corpus_v2.n);
		signed_v2 = bench_v2_signed_len(&fleet_v2);
		eps = bench_v2_verify_limit(signed_v2);
	}
#ifdef CAD_BENCH_KAFKA
	bool with_kafka = strstr(modes, "kafka") != NULL;
	if (with_kafka && kafka_sink_start() != 0)
		return 1;
#endif
#ifdef CAD_BENCH_HTTP
	bool with_http = strstr(modes, "http") != NULL;
	if (with_http && (http_port = http_204_start()) < 0)
		return 1;
#endif

	double rate_v[N_MODES][MAX_REPEATS], cpu_v[N_MODES][MAX_REPEATS],
		p50_v[N_MODES][MAX_REPEATS], p99_v[N_MODES][MAX_REPEATS],
		p99_out_v[N_MODES][MAX_REPEATS], rss_v[N_MODES][MAX_REPEATS],
		lost_v[N_MODES][MAX_REPEATS], sw_v[N_MODES][MAX_REPEATS],
		paced_rss_v[N_MODES][MAX_REPEATS];
	int ran[N_MODES] = {0};
	for (int r = 0; r < repeats; r++) {
		for (int m = 0; m < N_MODES; m++) {
			if (!mode_listed(modes, m) || !mode_built(m) ||
			    (m == MODE_VERIFY && !have_verify) || (m == MODE_V2VERIFY && !have_v2))
				continue;
			struct result res = {0};
			corpus = m == MODE_V2VERIFY ? corpus_v2 : corpus_v1;
			fprintf(stderr, "run %d/%d: %s\n", r + 1, repeats, mode_name[m]);
			throughput((enum mode)m, window, &res);
			if (res.stalls)
				fprintf(stderr, "  the window stalled %lu times (lost messages)\n",
					(unsigned long)res.stalls);
			if (!mode_sink(m))
				latency((enum mode)m, rate, lat_s, &res);
			if (!mode_sink(m) && res.acked < (size_t)(rate * lat_s) * 99 / 100)
				fprintf(stderr,
					"  only %zu acknowledgements of %ld messages seen\n",
					res.acked, rate * lat_s);
			rate_v[m][r] = res.rate;
			cpu_v[m][r] = res.cpu_per_100k;
			p50_v[m][r] = res.p50_ms;
			p99_v[m][r] = res.p99_ms;
			p99_out_v[m][r] = res.p99_out_ms;
			rss_v[m][r] = (double)res.rss_kib;
			paced_rss_v[m][r] = (double)res.paced_rss_kib;
			lost_v[m][r] = (double)res.lost;
			sw_v[m][r] = res.switches_per_msg;
			ran[m] = r + 1;
		}
	}

	printf("choria-adapterd benchmark: %ld messages, %.0f bytes each, %ld cores, median of %d runs, window %ld\n",
	       n, (double)bytes / (double)corpus.n, cores, repeats, window);
	printf("RSA-2048 SHA-256 verifications per second on one core: %.0f (%.1f us each)\n", vps,
	       1e6 / vps);
	if (eps > 0)
		printf("ed25519 verifications of %zu bytes per second of CPU: %.0f (%.1f us each)\n",
		       signed_v2, eps, 1e6 / eps);
	if (have_v2)
		printf("v2verify: protocol v2 registration, %.0f bytes each on the wire\n",
		       (double)bytes_v2 / (double)corpus_v2.n);
	printf("\n");
	printf("%-8s %10s %8s %9s %9s %9s %14s %14s %10s %6s %10s %12s\n", "mode", "msg/s",
	       "vs raw", "p50 ms", "p99 ms", "p99 out", "CPU s/100k", "CPU/msg vs RSA", "peak RSS",
	       "lost", "sw/msg", "paced RSS");
	/* The ratio to raw is taken within each repeat, whose runs follow one
	 * another, then its median: the machine's speed drifts between repeats
	 * more than within one. Before any median(), which sorts in place. */
	double vs_raw[N_MODES] = {0}, ratio_v[N_MODES][MAX_REPEATS], sorted[MAX_REPEATS];
	int paired[N_MODES];
	for (int m = 0; m < N_MODES; m++) {
		paired[m] = ran[MODE_RAW] < ran[m] ? ran[MODE_RAW] : ran[m];
		for (int r = 0; r < paired[m]; r++)
			ratio_v[m][r] =
				rate_v[MODE_RAW][r] > 0 ? rate_v[m][r] / rate_v[MODE_RAW][r] : 0;
		memcpy(sorted, ratio_v[m], sizeof(sorted));
		vs_raw[m] = paired[m] ? median(sorted, paired[m]) : 0;
	}
	struct bench_figures fig[N_MODES] = {0};
	for (int m = 0; m < N_MODES; m++) {
		if (!mode_built(m))
			continue;
		if (!ran[m]) {
			printf("%-8s %s\n", mode_name[m],
			       (m == MODE_VERIFY && !have_verify) ||
					       (m == MODE_V2VERIFY && mode_listed(modes, m) &&
						!have_v2)
				       ? "not available in this build"
				       : "not run");
			continue;
		}
		int k = ran[m];
		double cpu = median(cpu_v[m], k);
		fig[m] = (struct bench_figures){.ran = true,
						.vs_raw = vs_raw[m],
						.lost = sum(lost_v[m], k),
						.cpu_rsa = cpu / 100000.0 * vps,
						.rss_mib = median(rss_v[m], k) / 1024.0,
						.p99_ms = median(p99_v[m], k)};
		if (mode_sink(m)) {
			printf("%-8s %10.0f %8.2f %9s %9s %9s %14.2f %14.2f %7.1f MiB %6.0f %10.2f %12s\n",
			       mode_name[m], median(rate_v[m], k), fig[m].vs_raw, "-", "-", "-",
			       cpu, fig[m].cpu_rsa, fig[m].rss_mib, fig[m].lost, median(sw_v[m], k),
			       "-");
			continue;
		}
		printf("%-8s %10.0f %8.2f %9.2f %9.2f %9.2f %14.2f %14.2f %7.1f MiB %6.0f %10.2f %8.1f MiB\n",
		       mode_name[m], median(rate_v[m], k), fig[m].vs_raw, median(p50_v[m], k),
		       fig[m].p99_ms, median(p99_out_v[m], k), cpu, fig[m].cpu_rsa, fig[m].rss_mib,
		       fig[m].lost, median(sw_v[m], k), median(paced_rss_v[m], k) / 1024.0);
	}
	for (int m = 0; m < N_MODES; m++) {
		if (m == MODE_RAW || paired[m] < 2)
			continue;
		printf("%s vs raw, each repeat:", mode_name[m]);
		for (int r = 0; r < paired[m]; r++)
			printf(" %.2f", ratio_v[m][r]);
		printf("\n");
	}
	if (ran[MODE_V2VERIFY] && eps > 0) {
		/* cpu_v is sorted by now; its median is the same */
		printf("\nCPU per message in ed25519 verifications (%.1f us each):", 1e6 / eps);
		const int shown[] = {MODE_RAW, MODE_NONE, MODE_VERIFY, MODE_V2VERIFY};
		for (size_t k = 0; k < sizeof(shown) / sizeof(shown[0]); k++)
			if (ran[shown[k]])
				printf(" %s %.2f", mode_name[shown[k]],
				       median(cpu_v[shown[k]], ran[shown[k]]) / 100000.0 * eps);
		printf("\n(v2verify's messages are v2's, the others' v1's; vs raw is against the relay\n"
		       "on v1's)\n");
	}
	targets_print(&fig[MODE_RAW], &fig[MODE_NONE], &fig[MODE_VERIFY], rate);
	if (ran[MODE_NONE] && ran[MODE_SCRAPED]) {
		double r0 = median(rate_v[MODE_NONE], ran[MODE_NONE]);
		double r1 = median(rate_v[MODE_SCRAPED], ran[MODE_SCRAPED]);
		double c0 = median(cpu_v[MODE_NONE], ran[MODE_NONE]);
		double c1 = median(cpu_v[MODE_SCRAPED], ran[MODE_SCRAPED]);
		printf("\nscraped is none with /metrics fetched every %ld ms: %.2f of its msg/s, "
		       "%.2f of its CPU per message\n",
		       scrape_ms, r0 ? r1 / r0 : 0, c0 ? c1 / c0 : 0);
	}
	printf("\nthroughput: %s; latency: at %ld msg/s for %ld s, from the fleet's publish to\n"
	       "JetStream's acknowledgement of the republished message (p99 out: to the republished\n"
	       "message reaching the server, before it is stored); CPU, RSS and sw/msg (context\n"
	       "switches of its threads per message) are the relay's or the daemon's own; peak RSS\n"
	       "is in the throughput run, paced RSS in the latency run; lost is the total over\n"
	       "the throughput runs.\n",
	       window > 0 ? "at most BENCH_WINDOW messages between publication and republication"
			  : "every message published at once (BENCH_WINDOW=0)",
	       rate, lat_s);

#ifdef CAD_BENCH_KAFKA
	if (ran[MODE_KAFKA])
		printf("kafka: the daemon with security = none producing to librdkafka's mock cluster (three\n"
		       "brokers in the bench's process), landed meaning stored in the topic; no latency run.\n");
	if (with_kafka)
		kafka_sink_stop();
#endif
#ifdef CAD_BENCH_HTTP
	if (ran[MODE_HTTP])
		printf("http: the daemon with security = none sending %ld messages a request to an HTTP\n"
		       "server in the bench's process answering 204; no latency run.\n",
		       env_long("BENCH_HTTP_BATCH_MAX", 1));
	if (with_http)
		http_204_stop();
#endif
	js_client_close(&client);
	nats_server_stop(&server);
	corpus_free(&corpus_v1);
	if (corpus_v2.n)
		corpus_free(&corpus_v2);
	bench_v2_fleet_free(&fleet_v2);
	bench_pki_free(&pki);
	if (getenv("BENCH_KEEP"))
		fprintf(stderr, "cad-bench: kept %s\n", dir);
	else
		tmpdir_remove(dir);
	return 0;
}
