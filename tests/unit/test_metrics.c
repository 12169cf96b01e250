/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The metrics endpoint without modules: `metrics_listen` parsing, the
 * exposition text byte for byte and through the Prometheus parser, the
 * health verdict, and the HTTP server's answers to each path and method.
 * Adapters are built by hand and counted through the host's own calls.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "adapter.h"
#include "build_config.h"
#include "daemon_proc.h"
#include "host.h"
#include "http_get.h"
#include "metrics.h"
#include "adapters.h"
#include "nats_server.h"
#include "prom_check.h"
#include "queue.h"
#include "tmpdir.h"

static char dir[512];

static void setup(void)
{
	cr_assert_eq(tmpdir_make(dir, sizeof(dir)), 0);
}

static void teardown(void)
{
	tmpdir_remove(dir);
}

TestSuite(metrics, .init = setup, .fini = teardown, .timeout = 30);

/* ------------------------------------------------------------ helpers */

static struct adapter *fake_adapter(const char *name, const char *identity, size_t queue_len)
{
	struct adapter *a = calloc(1, sizeof(*a));
	cr_assert_not_null(a);
	pthread_mutex_init(&a->conns_lock, NULL);
	a->stats = adapter_stats_new();
	cr_assert_not_null(a->stats);
	a->name = strdup(name);
	a->identity = identity ? strdup(identity) : NULL;
	cr_assert_eq(queue_new(&a->queue, queue_len), 0);
	struct cad_context *ctx[] = {&a->ingest, &a->stream};
	for (int i = 0; i < 2; i++) {
		ctx[i]->adapter = a;
		snprintf(ctx[i]->prefix, sizeof(ctx[i]->prefix), "adapter %s: %s: ", name,
			 i ? "stream" : "ingest");
	}
	return a;
}

static void queue_messages(struct adapter *a, int n)
{
	for (int i = 0; i < n; i++) {
		struct cad_msg *m = host_msg_new("s", 1, "r", 1, 0, "b", 1);
		cr_assert_eq(queue_push(a->queue, m), 0);
	}
}

/* The counts every rendering test starts from. */
static struct adapter *counted_adapter(void)
{
	struct adapter *a = fake_adapter("node_data", "adapter.test", 4);
	struct adapter_stats *st = a->stats;
	atomic_store(&st->received, 13);
	atomic_store(&st->received_bytes, 1300);
	atomic_store(&st->published, 5);
	atomic_store(&st->published_bytes, 500);
	atomic_store(&st->retries, 2);
	/* In flight: 9 accepted - 5 published - 1 lost = 3, as queued 2 + held 1. */
	atomic_store(&st->accepted, 9);
	counters_add(&st->rejected, "not_json", 3);
	counters_add(&st->rejected, "bad_message", 1);
	counters_add(&st->dropped, "queue_full", 2);
	counters_add(&st->lost, "too_large", 1);
	/* 0.4 ms, exactly 1 ms (a bound includes its own value), 3 ms, 2 s
	 * and 400 s, past the last bound. */
	const uint64_t ns[] = {400000, 1000000, 3000000, 2000000000, 400000000000};
	for (size_t i = 0; i < sizeof(ns) / sizeof(*ns); i++)
		adapter_stats_time(st, ns[i]);
	queue_messages(a, 2);
	host_services.conn_state(&a->ingest, "ingest 1", true);
	host_services.conn_state(&a->stream, "stream 1", false);
	return a;
}

static char *render(struct adapter **as, size_t n)
{
	char *text = NULL;
	size_t len = 0;
	cr_assert_eq(metrics_render(&text, &len, as, n, NULL, NULL, "9.8.7"), 0);
	cr_assert_eq(strlen(text), len);
	return text;
}

static char *checked(const char *text)
{
	char *errors = NULL;
	char *listing = prom_check(dir, text, &errors);
	cr_assert_not_null(listing, "the checker refused the text:\n%s\n%s",
			   errors ? errors : "(no output: is python3-prometheus-client installed?)",
			   text);
	return listing;
}

/* ------------------------------------------------------ metrics_listen */

Test(metrics, listen_addresses_that_parse)
{
	struct sockaddr_storage sa;
	socklen_t len = 0;
	const char *why = NULL;
	cr_assert(metrics_listen_parse(&sa, &len, "127.0.0.1:8222", &why));
	struct sockaddr_in *v4 = (struct sockaddr_in *)&sa;
	cr_assert_eq(sa.ss_family, AF_INET);
	cr_assert_eq(len, sizeof(struct sockaddr_in));
	cr_assert_eq(ntohs(v4->sin_port), 8222);
	cr_assert_eq(ntohl(v4->sin_addr.s_addr), 0x7f000001);

	cr_assert(metrics_listen_parse(&sa, &len, "[::1]:65535", &why));
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&sa;
	cr_assert_eq(sa.ss_family, AF_INET6);
	cr_assert_eq(len, sizeof(struct sockaddr_in6));
	cr_assert_eq(ntohs(v6->sin6_port), 65535);
	cr_assert(IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr));

	cr_assert(metrics_listen_parse(NULL, NULL, "0.0.0.0:1", &why));
	cr_assert(metrics_listen_parse(NULL, NULL, "[::]:9100", &why));
	cr_assert(metrics_listen_parse(NULL, NULL, "[fe80::1:2]:9100", &why));
}

/* A reload compares the addresses bound, not the text. */
Test(metrics, listen_addresses_compare_as_socket_addresses)
{
	cr_assert(metrics_listen_same("[::1]:8222", "[0:0:0:0:0:0:0:1]:8222"));
	cr_assert(metrics_listen_same("[fe80::1:2]:9100", "[FE80:0::1:2]:9100"));
	cr_assert(metrics_listen_same("", ""));
	cr_assert_not(metrics_listen_same("0.0.0.0:8222", "127.0.0.1:8222"));
	cr_assert_not(metrics_listen_same("127.0.0.1:8222", "127.0.0.1:8223"));
	cr_assert_not(metrics_listen_same("127.0.0.1:8222", ""));
	cr_assert_not(metrics_listen_same("[::1]:8222", "[::2]:8222"));

	cr_assert(metrics_listen_same_port("0.0.0.0:8222", "127.0.0.1:8222"));
	cr_assert(metrics_listen_same_port("[::]:8222", "[::1]:8222"));
	cr_assert_not(metrics_listen_same_port("0.0.0.0:8222", "[::]:8222"),
		      "[::] is bound IPv6 only");
	cr_assert_not(metrics_listen_same_port("0.0.0.0:8222", "0.0.0.0:8223"));
}

/* Each text is refused, with a reason that contains `why`. */
struct refusal {
	const char *text, *why;
};

static void expect_refused(const struct refusal *bad, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *why = NULL;
		cr_expect_not(metrics_listen_parse(NULL, NULL, bad[i].text, &why), "'%s' parsed",
			      bad[i].text);
		cr_expect(why && strstr(why, bad[i].why), "'%s': '%s', expected '%s'", bad[i].text,
			  why ? why : "(none)", bad[i].why);
	}
}

Test(metrics, listen_addresses_that_do_not)
{
	static const struct refusal bad[] = {
		{"8222", "expected IPV4:PORT or [IPV6]:PORT"},
		{"127.0.0.1", "expected IPV4:PORT or [IPV6]:PORT"},
		{"127.0.0.1:", "the port must be a number from 1 to 65535"},
		{"127.0.0.1:0", "the port must be a number from 1 to 65535"},
		{"127.0.0.1:65536", "the port must be a number from 1 to 65535"},
		{"127.0.0.1:+80", "the port must be a number from 1 to 65535"},
		{"127.0.0.1:80x", "the port must be a number from 1 to 65535"},
		{"127.0.0.1:http", "the port must be a number from 1 to 65535"},
		{"127.0.0.1:008222", "the port must be a number from 1 to 65535"},
		{"localhost:8222", "is not a numeric IPv4 address"},
		{"256.0.0.1:8222", "is not a numeric IPv4 address"},
		{":8222", "is not a numeric IPv4 address"},
		{"::1:8222", "an IPv6 address goes in brackets"},
		{"[::1]8222", "expected IPV4:PORT or [IPV6]:PORT"},
		{"[::1", "expected IPV4:PORT or [IPV6]:PORT"},
		{"[127.0.0.1]:80", "is not a numeric IPv6 address"},
		{"[]:80", "is not a numeric IPv6 address"},
	};
	expect_refused(bad, sizeof(bad) / sizeof(*bad));
}

/* What libevent's parser takes and metrics_listen still refuses: no port
 * (libevent reads port 0), a port read with atoi(), an unbracketed IPv6
 * address, an IPv4 address read with sscanf(). */
Test(metrics, listen_refuses_what_libevent_alone_would_take)
{
	static const struct refusal bad[] = {
		{"[::1]", "expected IPV4:PORT or [IPV6]:PORT"},
		{"::1", "an IPv6 address goes in brackets"},
		{"fe80::1:2", "an IPv6 address goes in brackets"},
		{"[::1]:", "the port must be a number from 1 to 65535"},
		{"[::1]:0", "the port must be a number from 1 to 65535"},
		{"[::1]:80x", "the port must be a number from 1 to 65535"},
		{"[::1]: 80", "the port must be a number from 1 to 65535"},
		{"[::1]:-1", "the port must be a number from 1 to 65535"},
		{"[::1]:99999", "the port must be a number from 1 to 65535"},
		{"127.0.0.1: 80", "the port must be a number from 1 to 65535"},
		{"[::1]x]:80", "expected IPV4:PORT or [IPV6]:PORT"},
		{"[::1]]:80", "expected IPV4:PORT or [IPV6]:PORT"},
		{" 127.0.0.1:80", "is not a numeric IPv4 address"},
		{"+127.0.0.1:80", "is not a numeric IPv4 address"},
		{"0127.0.0.1:80", "is not a numeric IPv4 address"},
		{"127.0.0.01:80", "is not a numeric IPv4 address"},
		{"127.0.0:80", "is not a numeric IPv4 address"},
		{"127.0.0.1.1:80", "is not a numeric IPv4 address"},
		{"my-host.example:80", "is not a numeric IPv4 address"},
		{"[localhost]:80", "is not a numeric IPv6 address"},
		{"[ ::1]:80", "is not a numeric IPv6 address"},
		{"", "expected IPV4:PORT or [IPV6]:PORT"},
		{":", "the port must be a number from 1 to 65535"},
	};
	expect_refused(bad, sizeof(bad) / sizeof(*bad));
}

Test(metrics, listen_takes_what_libevent_reads_exactly)
{
	struct sockaddr_storage sa;
	socklen_t len = 0;
	const char *why = NULL;
	cr_assert(metrics_listen_parse(&sa, &len, "[::ffff:127.0.0.1]:9100", &why), "%s", why);
	cr_assert_eq(sa.ss_family, AF_INET6);
	cr_assert_eq(ntohs(((struct sockaddr_in6 *)&sa)->sin6_port), 9100);
	cr_assert(metrics_listen_parse(&sa, &len, "10.0.0.1:9100", &why), "%s", why);
	cr_assert_eq(ntohl(((struct sockaddr_in *)&sa)->sin_addr.s_addr), 0x0a000001);
	cr_assert(metrics_listen_parse(&sa, &len, "255.255.255.255:1", &why), "%s", why);
	cr_assert(metrics_listen_parse(&sa, &len, "[fe80::1%lo]:9100", &why), "a scope: %s", why);
	cr_assert_eq(len, sizeof(struct sockaddr_in6));
}

/* --------------------------------------------------------- exposition */

static const char expected_text[] =
	"# HELP choria_adapterd_build_info The running choria-adapterd version, always 1\n"
	"# TYPE choria_adapterd_build_info gauge\n"
	"choria_adapterd_build_info{version=\"9.8.7\"} 1\n"
	"# HELP choria_adapter_received_msgs Messages received by the ingest, good or bad\n"
	"# TYPE choria_adapter_received_msgs counter\n"
	"choria_adapter_received_msgs{name=\"node_data\",role=\"input\",identity=\"adapter.test\"} 13\n"
	"# HELP choria_adapter_published_msgs Messages the stream acknowledged\n"
	"# TYPE choria_adapter_published_msgs counter\n"
	"choria_adapter_published_msgs{name=\"node_data\",role=\"output\",identity=\"adapter.test\"} 5\n"
	"# HELP choria_adapter_errors Messages that could not be handled: input, rejected or dropped; output, lost\n"
	"# TYPE choria_adapter_errors counter\n"
	"choria_adapter_errors{name=\"node_data\",role=\"input\",identity=\"adapter.test\"} 6\n"
	"choria_adapter_errors{name=\"node_data\",role=\"output\",identity=\"adapter.test\"} 1\n"
	"# HELP choria_adapter_bytes Bytes received (input, as on the wire) and published (output, message bodies)\n"
	"# TYPE choria_adapter_bytes counter\n"
	"choria_adapter_bytes{name=\"node_data\",role=\"input\",identity=\"adapter.test\"} 1300\n"
	"choria_adapter_bytes{name=\"node_data\",role=\"output\",identity=\"adapter.test\"} 500\n"
	"# HELP choria_adapter_time Seconds from the receipt of a message to its acknowledgement by the stream\n"
	"# TYPE choria_adapter_time histogram\n"
	"choria_adapter_time_bucket{name=\"node_data\",role=\"output\",le=\"0.0005\",identity=\"adapter.test\"} 1\n"
	"choria_adapter_time_bucket{name=\"node_data\",role=\"output\",le=\"0.001\",identity=\"adapter.test\"} 2\n"
	"choria_adapter_time_bucket{name=\"node_data\",role=\"output\",le=\"0.0025\",identity=\"adapter.test\"} 2\n"
	"choria_adapter_time_bucket{name=\"node_data\",role=\"output\",le=\"0.005\",identity=\"adapter.test\"} 3\n"
	"choria_adapter_time_bucket{name=\"node_data\",role=\"output\",le=\"0.01\",identity=\"adapter.test\"} 3\n"
	"choria_adapter_time_bucket{name=\"node_data\",role=\"output\",le=\"0.025\",identity=\"adapter.test\"} 3\n"
	"choria_adapter_time_bucket{name=\"node_data\",role=\"output\",le=\"0.05\",identity=\"adapter.test\"} 3\n"
	"choria_adapter_time_bucket{name=\"node_data\",role=\"output\",le=\"0.1\",identity=\"adapter.test\"} 3\n"
	"choria_adapter_time_bucket{name=\"node_data\",role=\"output\",le=\"0.25\",identity=\"adapter.test\"} 3\n"
	"choria_adapter_time_bucket{name=\"node_data\",role=\"output\",le=\"0.5\",identity=\"adapter.test\"} 3\n"
	"choria_adapter_time_bucket{name=\"node_data\",role=\"output\",le=\"1\",identity=\"adapter.test\"} 3\n"
	"choria_adapter_time_bucket{name=\"node_data\",role=\"output\",le=\"2.5\",identity=\"adapter.test\"} 4\n"
	"choria_adapter_time_bucket{name=\"node_data\",role=\"output\",le=\"5\",identity=\"adapter.test\"} 4\n"
	"choria_adapter_time_bucket{name=\"node_data\",role=\"output\",le=\"10\",identity=\"adapter.test\"} 4\n"
	"choria_adapter_time_bucket{name=\"node_data\",role=\"output\",le=\"30\",identity=\"adapter.test\"} 4\n"
	"choria_adapter_time_bucket{name=\"node_data\",role=\"output\",le=\"60\",identity=\"adapter.test\"} 4\n"
	"choria_adapter_time_bucket{name=\"node_data\",role=\"output\",le=\"300\",identity=\"adapter.test\"} 4\n"
	"choria_adapter_time_bucket{name=\"node_data\",role=\"output\",le=\"+Inf\",identity=\"adapter.test\"} 5\n"
	"choria_adapter_time_sum{name=\"node_data\",role=\"output\",identity=\"adapter.test\"} 402.004400000\n"
	"choria_adapter_time_count{name=\"node_data\",role=\"output\",identity=\"adapter.test\"} 5\n"
	"# HELP choria_adapter_queue_length Messages waiting in the queue\n"
	"# TYPE choria_adapter_queue_length gauge\n"
	"choria_adapter_queue_length{name=\"node_data\",identity=\"adapter.test\"} 2\n"
	"# HELP choria_adapter_queue_capacity Messages the queue can hold (queue_len)\n"
	"# TYPE choria_adapter_queue_capacity gauge\n"
	"choria_adapter_queue_capacity{name=\"node_data\",identity=\"adapter.test\"} 4\n"
	"# HELP choria_adapter_in_flight_msgs Messages queued or held by the stream, not yet acknowledged\n"
	"# TYPE choria_adapter_in_flight_msgs gauge\n"
	"choria_adapter_in_flight_msgs{name=\"node_data\",identity=\"adapter.test\"} 3\n"
	"# HELP choria_adapter_rejected_msgs Messages rejected before the queue, by reason\n"
	"# TYPE choria_adapter_rejected_msgs counter\n"
	"choria_adapter_rejected_msgs{name=\"node_data\",reason=\"not_json\",identity=\"adapter.test\"} 3\n"
	"choria_adapter_rejected_msgs{name=\"node_data\",reason=\"bad_message\",identity=\"adapter.test\"} 1\n"
	"# HELP choria_adapter_dropped_msgs Messages the queue refused, by reason\n"
	"# TYPE choria_adapter_dropped_msgs counter\n"
	"choria_adapter_dropped_msgs{name=\"node_data\",reason=\"queue_full\",identity=\"adapter.test\"} 2\n"
	"# HELP choria_adapter_lost_msgs Messages accepted into the queue but never acknowledged, by reason\n"
	"# TYPE choria_adapter_lost_msgs counter\n"
	"choria_adapter_lost_msgs{name=\"node_data\",reason=\"too_large\",identity=\"adapter.test\"} 1\n"
	"# HELP choria_adapter_publish_retries Publishes sent again after a failure or a missing acknowledgement\n"
	"# TYPE choria_adapter_publish_retries counter\n"
	"choria_adapter_publish_retries{name=\"node_data\",identity=\"adapter.test\"} 2\n"
	"# HELP choria_adapter_connection_up 1 when the module's connection to its server is up, else 0\n"
	"# TYPE choria_adapter_connection_up gauge\n"
	"choria_adapter_connection_up{name=\"node_data\",role=\"input\",connection=\"ingest 1\",identity=\"adapter.test\"} 1\n"
	"choria_adapter_connection_up{name=\"node_data\",role=\"output\",connection=\"stream 1\",identity=\"adapter.test\"} 0\n";

Test(metrics, exposition_text_byte_for_byte)
{
	struct adapter *a = counted_adapter();
	char *text = render(&a, 1);
	cr_assert_str_eq(text, expected_text);
	free(text);
	adapter_free(a);
}

Test(metrics, exposition_passes_the_prometheus_parser)
{
	struct adapter *as[] = {counted_adapter(), fake_adapter("idle", "adapter.test", 10)};
	char *text = render(as, 2);
	char *l = checked(text);
	double v;
	cr_assert(prom_value(
		l,
		"choria_adapter_received_msgs{identity=\"adapter.test\",name=\"node_data\",role=\"input\"}",
		&v));
	cr_assert_eq(v, 13);
	cr_assert(prom_value(
		l,
		"choria_adapter_received_msgs{identity=\"adapter.test\",name=\"idle\",role=\"input\"}",
		&v));
	cr_assert_eq(v, 0, "an adapter that saw nothing still has its series");
	cr_assert(prom_value(
		l,
		"choria_adapter_time_sum{identity=\"adapter.test\",name=\"node_data\",role=\"output\"}",
		&v));
	cr_assert_float_eq(v, 402.0044, 1e-9);
	cr_assert(prom_value(
		l,
		"choria_adapter_time_bucket{identity=\"adapter.test\",le=\"+Inf\",name=\"idle\",role=\"output\"}",
		&v));
	cr_assert_eq(v, 0);
	cr_assert_eq(prom_sum(l, "choria_adapter_rejected_msgs", "name=\"node_data\""), 4);
	cr_assert_eq(prom_sum(l, "choria_adapter_rejected_msgs", "name=\"idle\""), -1,
		     "no reason, no series");
	cr_assert(
		prom_value(l,
			   "choria_adapter_queue_capacity{identity=\"adapter.test\",name=\"idle\"}",
			   &v));
	cr_assert_eq(v, 10);
	cr_assert(prom_value(l, "choria_adapterd_build_info{version=\"9.8.7\"}", &v));
	cr_assert_eq(v, 1);
	free(l);
	free(text);
	adapter_free(as[0]);
	adapter_free(as[1]);
}

Test(metrics, label_values_are_escaped)
{
	struct adapter *a = fake_adapter("odd", "host \"one\"\\\nline two", 1);
	counters_add(&a->stats->rejected, "a\"b\\c", 7);
	char *text = render(&a, 1);
	cr_assert_not_null(
		strstr(text, "choria_adapter_rejected_msgs{name=\"odd\",reason=\"a\\\"b\\\\c\","
			     "identity=\"host \\\"one\\\"\\\\\\nline two\"} 7\n"),
		"%s", text);
	char *l = checked(text);
	cr_assert_eq(prom_sum(l, "choria_adapter_rejected_msgs", "reason=\"a\\\"b\\\\c\""), 7,
		     "the parser reads the escaped value back: %s", l);
	free(l);
	free(text);
	adapter_free(a);
}

Test(metrics, the_checker_refuses_what_is_wrong)
{
	static const char *const wrong[] = {
		/* no TYPE */
		"choria_adapter_received_msgs{name=\"a\",role=\"input\",identity=\"i\"} 1\n",
		/* a name that is not ours */
		"# HELP x y\n# TYPE x counter\nx 1\n",
		/* a label missing */
		"# HELP choria_adapter_published_msgs h\n# TYPE choria_adapter_published_msgs counter\n"
		"choria_adapter_published_msgs{name=\"a\",identity=\"i\"} 1\n",
		/* buckets that do not add up */
		"# HELP choria_adapter_time h\n# TYPE choria_adapter_time histogram\n"
		"choria_adapter_time_bucket{name=\"a\",role=\"output\",le=\"1\",identity=\"i\"} 2\n"
		"choria_adapter_time_bucket{name=\"a\",role=\"output\",le=\"+Inf\",identity=\"i\"} 1\n"
		"choria_adapter_time_sum{name=\"a\",role=\"output\",identity=\"i\"} 1\n"
		"choria_adapter_time_count{name=\"a\",role=\"output\",identity=\"i\"} 1\n",
		/* not the text format */
		"# HELP choria_adapter_bytes h\n# TYPE choria_adapter_bytes counter\n"
		"choria_adapter_bytes{name=\"a\",role=\"input\",identity=\"i\" 1\n",
	};
	for (size_t i = 0; i < sizeof(wrong) / sizeof(*wrong); i++) {
		char *errors = NULL;
		char *l = prom_check(dir, wrong[i], &errors);
		cr_expect_null(l, "accepted:\n%s", wrong[i]);
		cr_expect(errors && *errors, "a reason is given for:\n%s", wrong[i]);
		free(l);
		free(errors);
	}
}

/* ------------------------------------------------------------- health */

static char *health(struct adapter **as, size_t n, enum metrics_phase phase, bool *healthy)
{
	char *text = NULL;
	size_t len = 0;
	cr_assert_eq(metrics_health(&text, &len, healthy, as, n, NULL, phase), 0);
	return text;
}

Test(metrics, no_adapter_is_unhealthy)
{
	bool ok = true;
	char *t = health(NULL, 0, METRICS_RUNNING, &ok);
	cr_assert_not(ok);
	cr_assert_not_null(strstr(t, "\"no adapter runs\""), "%s", t);
	free(t);
}

Test(metrics, health_verdicts)
{
	struct adapter *a = fake_adapter("node_data", "x", 2);
	struct adapter *b = fake_adapter("replies", "x", 5);
	struct adapter *as[] = {a, b};
	host_services.conn_state(&a->ingest, "ingest 1", true);
	host_services.conn_state(&a->stream, "stream 1", true);
	host_services.conn_state(&b->stream, "stream 1", true);
	bool ok = false;

	char *t = health(as, 2, METRICS_RUNNING, &ok);
	cr_assert(ok);
	cr_assert_str_eq(t, "{\"status\":\"healthy\"}\n");
	free(t);

	t = health(as, 2, METRICS_STARTING, &ok);
	cr_assert_not(ok);
	cr_assert_str_eq(t, "{\"status\":\"unhealthy\",\"reasons\":[\"starting\"]}\n");
	free(t);

	host_services.conn_state(&b->stream, "stream 1", false);
	queue_messages(a, 2);
	t = health(as, 2, METRICS_STOPPING, &ok);
	cr_assert_not(ok);
	cr_assert_str_eq(t, "{\"status\":\"unhealthy\",\"reasons\":[\"stopping\","
			    "\"adapter node_data: queue full (2 of 2)\","
			    "\"adapter replies: stream 1 disconnected\"]}\n");
	free(t);

	host_services.conn_state(&b->stream, "stream 1", true);
	void *item;
	cr_assert_eq(queue_pop(a->queue, &item, 0), 0);
	host_msg_free(item);
	t = health(as, 2, METRICS_RUNNING, &ok);
	cr_assert(ok, "a queue below capacity and every connection back: %s", t);
	free(t);
	adapter_free(a);
	adapter_free(b);
}

Test(metrics, a_connection_name_too_long_for_its_field_is_one_connection)
{
	struct adapter *a = fake_adapter("node_data", "x", 2);
	const char *name = "stream 1 nats://js-cluster-node-1.prod.example.net:4222";
	host_services.conn_state(&a->stream, name, true);
	host_services.conn_state(&a->stream, name, false);
	host_services.conn_state(&a->stream, name, true);
	bool ok = false;
	char *t = health(&a, 1, METRICS_RUNNING, &ok);
	cr_assert(ok, "down then up again: %s", t);
	free(t);
	char *text = NULL;
	size_t len = 0;
	cr_assert_eq(metrics_render(&text, &len, &a, 1, NULL, NULL, "9.8.7"), 0);
	int series = 0;
	for (const char *p = text; (p = strstr(p, "choria_adapter_connection_up{")); p++)
		series++;
	cr_assert_eq(series, 1, "one series:\n%s", text);
	free(text);
	adapter_free(a);
}

/* ------------------------------------------------------------ serving */

struct served {
	struct adapter *a;
	struct metrics *m;
	int port;
	char listen[64];
};

static void serve(struct served *s)
{
	s->a = counted_adapter();
	for (int attempt = 0; attempt < 5; attempt++) {
		s->port = free_port();
		snprintf(s->listen, sizeof(s->listen), "127.0.0.1:%d", s->port);
		if (metrics_start(&s->m, s->listen, 64,
				  &(struct metrics_view){&s->a, 1, NULL, NULL, 0},
				  METRICS_STARTING) == 0)
			return;
	}
	cr_assert_fail("no port to listen on");
}

static void unserve(struct served *s)
{
	metrics_stop(s->m);
	adapter_free(s->a);
}

Test(metrics, serves_metrics_with_get_and_head)
{
	struct served s;
	serve(&s);
	struct http_reply r;
	cr_assert_eq(http_request(&r, "127.0.0.1", s.port, "GET", "/metrics", 5000), 0);
	cr_assert_eq(r.status, 200, "%s", r.head);
	char buf[128];
	cr_assert_str_eq(http_header(&r, "Content-Type", buf, sizeof(buf)), METRICS_CONTENT_TYPE);
	char *text = render(&s.a, 1);
	size_t get_len = r.body_len;
	cr_assert_eq(strlen(r.body), r.body_len);
	/* The version is the build's, not the renderer test's. */
	char *version = strstr(r.body, "version=\"" PACKAGE_VERSION "\"");
	cr_assert_not_null(version, "%s", r.body);
	const char *adapters_part = strstr(text, "\n# HELP choria_adapter_received_msgs");
	cr_assert_eq(strncmp(strstr(r.body, "\n# HELP choria_adapter_received_msgs"), adapters_part,
			     strlen(adapters_part)),
		     0, "%s", r.body);
	/* The endpoint's own series follow. */
	cr_assert_not_null(strstr(r.body, "\nchoria_adapterd_metrics_connections 1\n"), "%s",
			   r.body);
	cr_assert_not_null(strstr(r.body, "\nchoria_adapterd_metrics_connections_refused 0\n"));
	cr_assert_not_null(strstr(r.body, "\nchoria_adapterd_metrics_requests_timed_out 0\n"));
	http_reply_free(&r);

	cr_assert_eq(http_request(&r, "127.0.0.1", s.port, "HEAD", "/metrics", 5000), 0);
	cr_assert_eq(r.status, 200);
	cr_assert_eq(r.body_len, 0, "HEAD sends no body");
	cr_assert_str_eq(http_header(&r, "Content-Type", buf, sizeof(buf)), METRICS_CONTENT_TYPE);
	cr_assert_eq(atol(http_header(&r, "Content-Length", buf, sizeof(buf))), (long)get_len);
	http_reply_free(&r);
	free(text);
	unserve(&s);
}

Test(metrics, health_follows_the_phase_and_the_connections)
{
	struct served s;
	serve(&s);
	struct http_reply r;
	char buf[128];
	cr_assert_eq(http_request(&r, "127.0.0.1", s.port, "GET", "/healthz", 5000), 0);
	cr_assert_eq(r.status, 503);
	cr_assert_str_eq(http_header(&r, "Content-Type", buf, sizeof(buf)), "application/json");
	cr_assert_str_eq(r.body, "{\"status\":\"unhealthy\",\"reasons\":[\"starting\","
				 "\"adapter node_data: stream 1 disconnected\"]}\n");
	http_reply_free(&r);

	metrics_set_phase(s.m, METRICS_RUNNING);
	host_services.conn_state(&s.a->stream, "stream 1", true);
	cr_assert_eq(http_request(&r, "127.0.0.1", s.port, "GET", "/healthz", 5000), 0);
	cr_assert_eq(r.status, 200, "%s", r.body);
	cr_assert_str_eq(r.body, "{\"status\":\"healthy\"}\n");
	http_reply_free(&r);

	cr_assert_eq(http_request(&r, "127.0.0.1", s.port, "HEAD", "/healthz", 5000), 0);
	cr_assert_eq(r.status, 200);
	cr_assert_eq(r.body_len, 0);
	http_reply_free(&r);
	unserve(&s);
}

Test(metrics, other_paths_and_methods_are_refused)
{
	struct served s;
	serve(&s);
	static const struct {
		const char *method, *path;
		int status;
	} cases[] = {
		{"GET", "/", 404},
		{"GET", "/metrics/", 404},
		{"GET", "/metricsx", 404},
		{"POST", "/nope", 404},
		{"POST", "/metrics", 405},
		{"PUT", "/healthz", 405},
		{"DELETE", "/metrics", 405},
		{"OPTIONS", "/healthz", 405},
		{"GET", "/metrics?x=1", 200},
	};
	char buf[64];
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct http_reply r;
		cr_assert_eq(http_request(&r, "127.0.0.1", s.port, cases[i].method, cases[i].path,
					  5000),
			     0);
		cr_expect_eq(r.status, cases[i].status, "%s %s: %d", cases[i].method, cases[i].path,
			     r.status);
		if (cases[i].status == 405)
			cr_expect_str_eq(http_header(&r, "Allow", buf, sizeof(buf)), "GET, HEAD");
		http_reply_free(&r);
	}
	unserve(&s);
}

Test(metrics, a_body_is_ignored_up_to_4_kib_and_refused_beyond)
{
	struct served s;
	serve(&s);
	static char body[4097];
	memset(body, 'x', sizeof(body));
	struct http_reply r;
	cr_assert_eq(http_request_body(&r, "127.0.0.1", s.port, "POST", "/metrics", body, 4096,
				       5000),
		     0);
	cr_expect_eq(r.status, 405, "a small body: the method is what is wrong");
	http_reply_free(&r);
	cr_assert_eq(http_request_body(&r, "127.0.0.1", s.port, "POST", "/metrics", body,
				       sizeof(body), 5000),
		     0);
	cr_expect_eq(r.status, 413, "more than 4 KiB: refused as too large");
	http_reply_free(&r);
	cr_assert_eq(http_request(&r, "127.0.0.1", s.port, "GET", "/metrics", 5000), 0);
	cr_expect_eq(r.status, 200, "and the endpoint still serves");
	http_reply_free(&r);
	unserve(&s);
}

Test(metrics, serves_on_the_ipv6_loopback_and_there_only)
{
	struct served s = {.a = counted_adapter()};
	int rc = -1;
	for (int attempt = 0; attempt < 5 && rc != 0; attempt++) {
		s.port = free_port();
		snprintf(s.listen, sizeof(s.listen), "[::1]:%d", s.port);
		rc = metrics_start(&s.m, s.listen, 64,
				   &(struct metrics_view){&s.a, 1, NULL, NULL, 0},
				   METRICS_STARTING);
		if (rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT) {
			adapter_free(s.a);
			cr_skip_test("this host has no IPv6 loopback");
		}
	}
	cr_assert_eq(rc, 0, "%s: %s", s.listen, strerror(-rc));
	struct http_reply r;
	cr_assert_eq(http_request(&r, "::1", s.port, "GET", "/metrics", 5000), 0);
	cr_assert_eq(r.status, 200);
	cr_assert_not_null(strstr(r.body, "choria_adapter_received_msgs"));
	http_reply_free(&r);
	cr_assert_eq(http_request(&r, "127.0.0.1", s.port, "GET", "/metrics", 2000), -ECONNREFUSED,
		     "bound to [::1] alone, not to IPv4 as well");
	unserve(&s);
}

Test(metrics, a_connection_that_sends_nothing_is_closed_after_5_s)
{
	struct served s;
	serve(&s);
	int fd = http_connect("127.0.0.1", s.port, 20000);
	cr_assert_geq(fd, 0);
	/* A generous bound on the wait: a server that never closes it fails
	 * the recv with EAGAIN, not with the end of the stream. */
	struct timeval bound = {.tv_sec = 30};
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof(bound)), 0);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	char c;
	ssize_t n = recv(fd, &c, 1, 0);
	double took = seconds_since(&t0);
	close(fd);
	cr_assert_eq(n, 0, "the server closed it (recv %zd after %.1f s)", n, took);
	cr_assert_geq(took, 4.0, "not before the 5 s (%.1f s)", took);
	unserve(&s);
}

Test(metrics, a_client_that_pipelines_without_reading_is_not_buffered_without_limit)
{
	struct served s;
	serve(&s);
	int fd = http_connect("127.0.0.1", s.port, 5000);
	cr_assert_geq(fd, 0);
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	char burst[64 * (sizeof(req) - 1)];
	for (size_t i = 0; i < 64; i++)
		memcpy(burst + i * (sizeof(req) - 1), req, sizeof(req) - 1);
	/* Send until the endpoint stops taking them (half a second without
	 * progress) or 64 MB went out; never read a reply. */
	size_t sent = 0;
	struct timespec stalled;
	clock_gettime(CLOCK_MONOTONIC, &stalled);
	while (sent < 64u << 20 && seconds_since(&stalled) < 0.5) {
		ssize_t n = send(fd, burst, sizeof(burst), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			sent += (size_t)n;
			clock_gettime(CLOCK_MONOTONIC, &stalled);
		} else {
			struct timespec pause = {0, 1000000};
			nanosleep(&pause, NULL);
		}
	}
	close(fd);
	/* What the kernel's socket buffers hold, and 64 KiB in the endpoint. */
	cr_assert_lt(sent, 16u << 20, "the endpoint took %zu MB it could not answer", sent >> 20);
	struct http_reply r;
	cr_assert_eq(http_request(&r, "127.0.0.1", s.port, "GET", "/healthz", 5000), 0,
		     "and still serves others");
	http_reply_free(&r);
	unserve(&s);
}

/* Scrape until the endpoint answers (a connection just closed may still
 * count for a moment), and return the value of `series`. */
static long scrape_value(int port, const char *series)
{
	for (int attempt = 0; attempt < 200; attempt++) {
		struct http_reply r;
		if (http_request(&r, "127.0.0.1", port, "GET", "/metrics", 5000) == 0 &&
		    r.status == 200) {
			char key[128];
			snprintf(key, sizeof(key), "\n%s ", series);
			const char *p = strstr(r.body, key);
			cr_assert_not_null(p, "%s in\n%s", series, r.body);
			long v = atol(p + strlen(key));
			http_reply_free(&r);
			return v;
		}
		if (r.body || r.head)
			http_reply_free(&r);
		struct timespec pause = {0, 50000000};
		nanosleep(&pause, NULL);
	}
	cr_assert_fail("the endpoint never answered");
	return -1;
}

Test(metrics, connections_over_the_cap_are_closed_at_once_and_counted)
{
	struct served s = {.a = counted_adapter()};
	for (int attempt = 0; attempt < 5 && !s.m; attempt++) {
		s.port = free_port();
		snprintf(s.listen, sizeof(s.listen), "127.0.0.1:%d", s.port);
		if (metrics_start(&s.m, s.listen, 2, &(struct metrics_view){&s.a, 1, NULL, NULL, 0},
				  METRICS_STARTING) != 0)
			s.m = NULL;
	}
	cr_assert_not_null(s.m);
	/* Room for two: one held, seen counted beside a scraper. */
	int held[2];
	held[0] = http_connect("127.0.0.1", s.port, 5000);
	cr_assert_geq(held[0], 0);
	cr_assert_eq(send(held[0], "G", 1, MSG_NOSIGNAL), 1);
	cr_assert_eq(scrape_value(s.port, "choria_adapterd_metrics_connections"), 2);
	/* Two more, accepted in the order they connected: the second holds
	 * the last place (or, while the scraper's is still counted, is
	 * refused itself); the third finds none. */
	held[1] = http_connect("127.0.0.1", s.port, 5000);
	cr_assert_geq(held[1], 0);
	int extra = http_connect("127.0.0.1", s.port, 5000);
	cr_assert_geq(extra, 0);
	struct timeval bound = {.tv_sec = 30};
	setsockopt(extra, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof(bound));
	char c;
	ssize_t n = recv(extra, &c, 1, 0);
	close(extra);
	cr_assert_eq(n, 0, "a connection over the cap is closed, with no reply");
	for (int i = 0; i < 2; i++)
		close(held[i]);
	cr_assert_geq(scrape_value(s.port, "choria_adapterd_metrics_connections_refused"), 1);
	unserve(&s);
}

Test(metrics, a_client_that_trickles_its_request_is_closed_after_5_s)
{
	struct served s;
	serve(&s);
	int fd = http_connect("127.0.0.1", s.port, 5000);
	cr_assert_geq(fd, 0);
	cr_assert_eq(send(fd, "GET /metrics HTTP/1.1\r\n", 23, MSG_NOSIGNAL), 23);
	/* A header line every 200 ms, never the blank line that ends the
	 * request, until the endpoint closes the connection; a generous
	 * bound on the wait. */
	bool closed = false;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!closed && seconds_since(&t0) < 60) {
		if (send(fd, "X-Slow: 1\r\n", 11, MSG_NOSIGNAL) != 11)
			closed = true;
		char c;
		ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
			closed = true;
		cr_assert_leq(n, 0, "no answer comes to half a request");
		struct timespec pause = {0, 200000000};
		nanosleep(&pause, NULL);
	}
	close(fd);
	cr_assert(closed, "the trickling client was not closed in %.0f s", seconds_since(&t0));
	cr_assert_eq(scrape_value(s.port, "choria_adapterd_metrics_requests_timed_out"), 1);
	unserve(&s);
}

Test(metrics, a_port_in_use_is_an_error)
{
	struct served s;
	serve(&s);
	struct metrics *other = NULL;
	cr_assert_eq(metrics_start(&other, s.listen, 64,
				   &(struct metrics_view){&s.a, 1, NULL, NULL, 0},
				   METRICS_STARTING),
		     -EADDRINUSE);
	cr_assert_null(other);
	cr_assert_eq(metrics_start(&other, "127.0.0.1:x", 64,
				   &(struct metrics_view){&s.a, 1, NULL, NULL, 0},
				   METRICS_STARTING),
		     -EINVAL);
	/* An address this host does not have. */
	cr_assert_eq(metrics_start(&other, "192.0.2.1:9100", 64,
				   &(struct metrics_view){&s.a, 1, NULL, NULL, 0},
				   METRICS_STARTING),
		     -EADDRNOTAVAIL);
	unserve(&s);
}

Test(metrics, stopping_closes_the_port)
{
	struct served s;
	serve(&s);
	int port = s.port;
	unserve(&s);
	struct http_reply r;
	cr_assert_eq(http_request(&r, "127.0.0.1", port, "GET", "/metrics", 2000), -ECONNREFUSED);
}

/* ------------------------------------------------------ configuration */

static const struct config_status failed_reload = {
	.last_ok = false,
	.success_unix_s = 1765000000,
	.reloads_ok = 3,
	.reloads_failed = 2,
	.error = "adapter \"x\" cannot be created",
};

Test(metrics, configuration_series_byte_for_byte)
{
	char *text = NULL;
	size_t len = 0;
	cr_assert_eq(metrics_render(&text, &len, NULL, 0, "id.test", &failed_reload, "9.8.7"), 0);
	cr_assert_str_eq(
		text,
		"# HELP choria_adapterd_build_info The running choria-adapterd version, always 1\n"
		"# TYPE choria_adapterd_build_info gauge\n"
		"choria_adapterd_build_info{version=\"9.8.7\"} 1\n"
		"# HELP choria_adapterd_config_last_reload_successful Whether the last configuration load, at start or on SIGHUP, succeeded\n"
		"# TYPE choria_adapterd_config_last_reload_successful gauge\n"
		"choria_adapterd_config_last_reload_successful{identity=\"id.test\"} 0\n"
		"# HELP choria_adapterd_config_last_reload_success_timestamp_seconds When the running configuration was loaded, in Unix seconds\n"
		"# TYPE choria_adapterd_config_last_reload_success_timestamp_seconds gauge\n"
		"choria_adapterd_config_last_reload_success_timestamp_seconds{identity=\"id.test\"} 1765000000\n"
		"# HELP choria_adapterd_config_reloads_total Configuration reloads performed on SIGHUP, by result\n"
		"# TYPE choria_adapterd_config_reloads_total counter\n"
		"choria_adapterd_config_reloads_total{result=\"success\",identity=\"id.test\"} 3\n"
		"choria_adapterd_config_reloads_total{result=\"failure\",identity=\"id.test\"} 2\n"
		"# HELP choria_adapter_received_msgs Messages received by the ingest, good or bad\n"
		"# TYPE choria_adapter_received_msgs counter\n"
		"# HELP choria_adapter_published_msgs Messages the stream acknowledged\n"
		"# TYPE choria_adapter_published_msgs counter\n"
		"# HELP choria_adapter_errors Messages that could not be handled: input, rejected or dropped; output, lost\n"
		"# TYPE choria_adapter_errors counter\n"
		"# HELP choria_adapter_bytes Bytes received (input, as on the wire) and published (output, message bodies)\n"
		"# TYPE choria_adapter_bytes counter\n"
		"# HELP choria_adapter_time Seconds from the receipt of a message to its acknowledgement by the stream\n"
		"# TYPE choria_adapter_time histogram\n"
		"# HELP choria_adapter_queue_length Messages waiting in the queue\n"
		"# TYPE choria_adapter_queue_length gauge\n"
		"# HELP choria_adapter_queue_capacity Messages the queue can hold (queue_len)\n"
		"# TYPE choria_adapter_queue_capacity gauge\n"
		"# HELP choria_adapter_in_flight_msgs Messages queued or held by the stream, not yet acknowledged\n"
		"# TYPE choria_adapter_in_flight_msgs gauge\n"
		"# HELP choria_adapter_rejected_msgs Messages rejected before the queue, by reason\n"
		"# TYPE choria_adapter_rejected_msgs counter\n"
		"# HELP choria_adapter_dropped_msgs Messages the queue refused, by reason\n"
		"# TYPE choria_adapter_dropped_msgs counter\n"
		"# HELP choria_adapter_lost_msgs Messages accepted into the queue but never acknowledged, by reason\n"
		"# TYPE choria_adapter_lost_msgs counter\n"
		"# HELP choria_adapter_publish_retries Publishes sent again after a failure or a missing acknowledgement\n"
		"# TYPE choria_adapter_publish_retries counter\n"
		"# HELP choria_adapter_connection_up 1 when the module's connection to its server is up, else 0\n"
		"# TYPE choria_adapter_connection_up gauge\n");
	free(text);
}

Test(metrics, configuration_series_pass_the_prometheus_parser_with_one_identity)
{
	/* The adapters were made under another identity: the daemon's
	 * current one labels every series. */
	struct adapter *a = counted_adapter();
	struct config_status ok = {.last_ok = true, .success_unix_s = 1765000001};
	char *text = NULL;
	size_t len = 0;
	cr_assert_eq(metrics_render(&text, &len, &a, 1, "new.id", &ok, "9.8.7"), 0);
	cr_assert_null(strstr(text, "adapter.test"), "%s", text);
	char *l = checked(text);
	double v;
	cr_assert(prom_value(l,
			     "choria_adapterd_config_last_reload_successful{identity=\"new.id\"}",
			     &v));
	cr_assert_eq(v, 1);
	cr_assert(prom_value(
		l,
		"choria_adapterd_config_last_reload_success_timestamp_seconds{identity=\"new.id\"}",
		&v));
	cr_assert_eq(v, 1765000001);
	cr_assert(
		prom_value(
			l,
			"choria_adapterd_config_reloads_total{identity=\"new.id\",result=\"failure\"}",
			&v),
		"%s", l);
	cr_assert_eq(v, 0);
	cr_assert(prom_value(
		l,
		"choria_adapter_received_msgs{identity=\"new.id\",name=\"node_data\",role=\"input\"}",
		&v));
	cr_assert_eq(v, 13);
	free(l);
	free(text);
	adapter_free(a);
}

Test(metrics, health_says_how_the_last_reload_went_and_stays_healthy)
{
	struct adapter *a = fake_adapter("node_data", "x", 2);
	bool ok = false;
	char *text = NULL;
	size_t len = 0;
	cr_assert_eq(metrics_health(&text, &len, &ok, &a, 1, &failed_reload, METRICS_RUNNING), 0);
	cr_assert(ok, "a failed reload leaves the running configuration: %s", text);
	cr_assert_str_eq(text,
			 "{\"status\":\"healthy\",\"config\":{\"last_reload_successful\":false,"
			 "\"error\":\"adapter \\\"x\\\" cannot be created\"}}\n");
	free(text);
	struct config_status good = {.last_ok = true};
	cr_assert_eq(metrics_health(&text, &len, &ok, &a, 1, &good, METRICS_STARTING), 0);
	cr_assert_not(ok);
	cr_assert_str_eq(text, "{\"status\":\"unhealthy\",\"reasons\":[\"starting\"],"
			       "\"config\":{\"last_reload_successful\":true,\"error\":null}}\n");
	free(text);
	adapter_free(a);
}

/* Two instances of one adapter share its counters: both count into one
 * set, which outlives the first. */
Test(metrics, a_successor_shares_and_keeps_its_predecessors_counters)
{
	struct adapter *old = fake_adapter("node_data", "x", 2);
	struct adapter *successor = fake_adapter("node_data", "x", 2);
	adapter_stats_unref(successor->stats);
	successor->stats = adapter_stats_ref(old->stats);
	atomic_fetch_add(&old->stats->received, 5);
	atomic_fetch_add(&successor->stats->received, 2);
	adapter_free(old);
	char *text = render(&successor, 1);
	cr_assert_not_null(
		strstr(text,
		       "choria_adapter_received_msgs{name=\"node_data\",role=\"input\",identity=\"x\"} 7\n"),
		"%s", text);
	free(text);
	adapter_free(successor);
}

/* An adapter being removed keeps its series until its drain ends, but
 * the connections it is closing do not make the daemon unhealthy. */
Test(metrics, a_draining_adapter_is_shown_and_not_judged)
{
	struct adapter *as[] = {fake_adapter("kept", "x", 4), fake_adapter("removed", "x", 4)};
	host_services.conn_state(&as[0]->ingest, "ingest 1", true);
	host_services.conn_state(&as[1]->ingest, "ingest 1", false);
	struct metrics *m = NULL;
	char listen[64];
	int port = 0;
	for (int attempt = 0; attempt < 5 && !m; attempt++) {
		port = free_port();
		snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
		if (metrics_start(&m, listen, 64, &(struct metrics_view){as, 2, "x", NULL, 1},
				  METRICS_STARTING) != 0)
			m = NULL;
	}
	cr_assert_not_null(m);
	metrics_set_phase(m, METRICS_RUNNING);
	struct http_reply r;
	cr_assert_eq(http_request(&r, "127.0.0.1", port, "GET", "/healthz", 5000), 0);
	cr_assert_eq(r.status, 200, "%s", r.body);
	http_reply_free(&r);
	cr_assert_eq(http_request(&r, "127.0.0.1", port, "GET", "/metrics", 5000), 0);
	cr_assert_not_null(strstr(r.body, "name=\"removed\""), "%s", r.body);
	http_reply_free(&r);

	/* Its drain ended: gone from the view, and from the text. */
	metrics_set_view(m, &(struct metrics_view){as, 1, "x", NULL, 0});
	adapter_free(as[1]);
	cr_assert_eq(http_request(&r, "127.0.0.1", port, "GET", "/metrics", 5000), 0);
	cr_assert_null(strstr(r.body, "name=\"removed\""), "%s", r.body);
	http_reply_free(&r);
	metrics_stop(m);
	adapter_free(as[0]);
}
