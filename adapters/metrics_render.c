/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The exposition text and the health verdict. Metric names and the labels
 * name, role and identity are those of the Go adapter, so that dashboards
 * built for it keep working; the rest are ours and documented in
 * choria-adapterd(8).
 *
 * Concurrency & locking: runs on the metrics server's thread while module
 * threads count. Counters are read with relaxed loads, one at a time, so a
 * scrape is not a snapshot: two related values may be a few messages
 * apart. Connection states are copied under `conns_lock`.
 */
#include "adapter.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

/* ------------------------------------------------------------ buffer */

struct text {
	char *p;
	size_t len, cap;
	bool failed;
	const char *identity; /* every series' label; NULL: each adapter's own */
};

static void text_reserve(struct text *t, size_t more)
{
	if (t->failed || t->len + more + 1 <= t->cap)
		return;
	size_t cap = t->cap ? t->cap : 4096;
	while (cap < t->len + more + 1)
		cap *= 2;
	char *p = realloc(t->p, cap);
	if (!p) {
		t->failed = true;
		return;
	}
	t->p = p;
	t->cap = cap;
}

static void text_add(struct text *t, const char *s, size_t n)
{
	text_reserve(t, n);
	if (t->failed)
		return;
	memcpy(t->p + t->len, s, n);
	t->len += n;
	t->p[t->len] = '\0';
}

static void text_str(struct text *t, const char *s)
{
	text_add(t, s, strlen(s));
}

static void text_printf(struct text *t, const char *fmt, ...) CAD_PRINTF(2, 3);
static void text_printf(struct text *t, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		t->failed = true;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		text_add(t, small, (size_t)n);
		return;
	}
	text_reserve(t, (size_t)n);
	if (t->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(t->p + t->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	t->len += (size_t)n;
}

static int text_finish(struct text *t, char **out, size_t *len)
{
	text_reserve(t, 0);
	if (t->failed) {
		free(t->p);
		return -ENOMEM;
	}
	*out = t->p;
	*len = t->len;
	return 0;
}

/* -------------------------------------------------------- exposition */

/* A label value: backslash, double quote and line feed are escaped; the
 * format allows any other UTF-8. */
static void label_value(struct text *t, const char *v)
{
	for (const char *p = v; *p; p++) {
		if (*p == '\\')
			text_str(t, "\\\\");
		else if (*p == '"')
			text_str(t, "\\\"");
		else if (*p == '\n')
			text_str(t, "\\n");
		else
			text_add(t, p, 1);
	}
}

static void family(struct text *t, const char *name, const char *type, const char *help)
{
	text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample's name and labels: name, then role and one extra label when
 * given, then identity. */
struct series {
	const char *metric;
	const char *role;
	const char *key, *value;
};

static void series_head(struct text *t, const struct adapter *a, const struct series *s)
{
	text_str(t, s->metric);
	text_str(t, "{name=\"");
	label_value(t, a->name);
	if (s->role) {
		text_str(t, "\",role=\"");
		text_str(t, s->role);
	}
	if (s->key) {
		text_printf(t, "\",%s=\"", s->key);
		label_value(t, s->value);
	}
	text_str(t, "\",identity=\"");
	const char *identity = t->identity ? t->identity : a->identity;
	label_value(t, identity ? identity : "");
	text_str(t, "\"} ");
}

static void sample(struct text *t, const struct adapter *a, const struct series *s, uint64_t v)
{
	series_head(t, a, s);
	text_printf(t, "%" PRIu64 "\n", v);
}

static uint64_t load(_Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

struct by_reason {
	struct text *t;
	const struct adapter *a;
	const char *metric;
};

static void reason_sample(const char *label, uint64_t value, void *arg)
{
	struct by_reason *r = arg;
	struct series s = {.metric = r->metric, .key = "reason", .value = label};
	sample(r->t, r->a, &s, value);
}

static void reason_samples(struct text *t, const struct adapter *a, const char *metric,
			   struct counter_set *set)
{
	struct by_reason r = {t, a, metric};
	counters_each(set, reason_sample, &r);
}

/* One histogram per adapter: cumulative buckets, then the sum in seconds
 * written exactly from nanoseconds, then the count, which is the +Inf
 * bucket so that the two always agree. */
static void time_histogram(struct text *t, struct adapter *a)
{
	uint64_t cum = 0;
	char le[16];
	for (size_t b = 0; b <= ADAPTER_TIME_BUCKETS; b++) {
		cum += load(&a->stats->time_hist[b]);
		snprintf(le, sizeof(le), "%s",
			 b < ADAPTER_TIME_BUCKETS ? adapter_time_buckets[b].le : "+Inf");
		struct series s = {"choria_adapter_time_bucket", "output", "le", le};
		sample(t, a, &s, cum);
	}
	uint64_t ns = load(&a->stats->time_sum_ns);
	struct series sum = {"choria_adapter_time_sum", "output", NULL, NULL};
	series_head(t, a, &sum);
	text_printf(t, "%" PRIu64 ".%09" PRIu64 "\n", ns / 1000000000u, ns % 1000000000u);
	struct series count = {"choria_adapter_time_count", "output", NULL, NULL};
	sample(t, a, &count, cum);
}

struct conn_copy {
	char name[sizeof(((struct conn_state *)0)->name)];
	bool input;
	bool up;
};

/* The adapter's connections, malloc'd; NULL with *n = 0 when it has
 * none, and *short_of_memory set when they could not be copied. */
static struct conn_copy *copy_conns(struct adapter *a, size_t *n_out, bool *short_of_memory)
{
	pthread_mutex_lock(&a->conns_lock);
	size_t n = a->n_conns;
	struct conn_copy *c = n ? malloc(n * sizeof(*c)) : NULL;
	*short_of_memory = n && !c;
	if (!c)
		n = 0;
	for (size_t i = 0; i < n; i++) {
		memcpy(c[i].name, a->conns[i].name, sizeof(c[i].name));
		c[i].input = a->conns[i].ctx == &a->ingest;
		c[i].up = a->conns[i].up;
	}
	pthread_mutex_unlock(&a->conns_lock);
	*n_out = n;
	return c;
}

#define EACH(i) for (size_t i = 0; i < n; i++)

/* A series of the daemon's own, with the identity label and, when given,
 * one more before it. */
static void own_sample(struct text *t, const char *metric, const char *key, const char *value,
		       const char *identity, uint64_t v)
{
	text_str(t, metric);
	text_str(t, "{");
	if (key) {
		text_printf(t, "%s=\"", key);
		label_value(t, value);
		text_str(t, "\",");
	}
	text_str(t, "identity=\"");
	label_value(t, identity ? identity : "");
	text_printf(t, "\"} %" PRIu64 "\n", v);
}

/* The configuration's series, named and meant as Prometheus' own. */
static void config_series(struct text *t, const struct config_status *c, const char *identity)
{
	family(t, "choria_adapterd_config_last_reload_successful", "gauge",
	       "Whether the last configuration load, at start or on SIGHUP, succeeded");
	own_sample(t, "choria_adapterd_config_last_reload_successful", NULL, NULL, identity,
		   c->last_ok);
	family(t, "choria_adapterd_config_last_reload_success_timestamp_seconds", "gauge",
	       "When the running configuration was loaded, in Unix seconds");
	own_sample(t, "choria_adapterd_config_last_reload_success_timestamp_seconds", NULL, NULL,
		   identity, (uint64_t)c->success_unix_s);
	family(t, "choria_adapterd_config_reloads_total", "counter",
	       "Configuration reloads performed on SIGHUP, by result");
	own_sample(t, "choria_adapterd_config_reloads_total", "result", "success", identity,
		   c->reloads_ok);
	own_sample(t, "choria_adapterd_config_reloads_total", "result", "failure", identity,
		   c->reloads_failed);
}

int metrics_render(char **out, size_t *len, struct adapter *const *as, size_t n,
		   const char *identity, const struct config_status *config, const char *version)
{
	struct text t = {.identity = identity};

	family(&t, "choria_adapterd_build_info", "gauge",
	       "The running choria-adapterd version, always 1");
	text_str(&t, "choria_adapterd_build_info{version=\"");
	label_value(&t, version);
	text_str(&t, "\"} 1\n");
	if (config)
		config_series(&t, config, identity);

	family(&t, "choria_adapter_received_msgs", "counter",
	       "Messages received by the ingest, good or bad");
	EACH (i) {
		struct series s = {"choria_adapter_received_msgs", "input", NULL, NULL};
		sample(&t, as[i], &s, load(&as[i]->stats->received));
	}

	family(&t, "choria_adapter_published_msgs", "counter", "Messages the stream acknowledged");
	EACH (i) {
		struct series s = {"choria_adapter_published_msgs", "output", NULL, NULL};
		sample(&t, as[i], &s, load(&as[i]->stats->published));
	}

	family(&t, "choria_adapter_errors", "counter",
	       "Messages that could not be handled: input, rejected or dropped; output, lost");
	EACH (i) {
		struct adapter_stats *st = as[i]->stats;
		struct series in = {"choria_adapter_errors", "input", NULL, NULL};
		sample(&t, as[i], &in,
		       counters_total(&st->rejected) + counters_total(&st->dropped));
		struct series o = {"choria_adapter_errors", "output", NULL, NULL};
		sample(&t, as[i], &o, counters_total(&st->lost));
	}

	family(&t, "choria_adapter_bytes", "counter",
	       "Bytes received (input, as on the wire) and published (output, message bodies)");
	EACH (i) {
		struct series in = {"choria_adapter_bytes", "input", NULL, NULL};
		sample(&t, as[i], &in, load(&as[i]->stats->received_bytes));
		struct series o = {"choria_adapter_bytes", "output", NULL, NULL};
		sample(&t, as[i], &o, load(&as[i]->stats->published_bytes));
	}

	family(&t, "choria_adapter_time", "histogram",
	       "Seconds from the receipt of a message to its acknowledgement by the stream");
	EACH (i)
		time_histogram(&t, as[i]);

	family(&t, "choria_adapter_queue_length", "gauge", "Messages waiting in the queue");
	EACH (i) {
		struct series s = {"choria_adapter_queue_length", NULL, NULL, NULL};
		sample(&t, as[i], &s, queue_length(as[i]->queue));
	}

	family(&t, "choria_adapter_queue_capacity", "gauge",
	       "Messages the queue can hold (queue_len)");
	EACH (i) {
		struct series s = {"choria_adapter_queue_capacity", NULL, NULL, NULL};
		sample(&t, as[i], &s, queue_capacity(as[i]->queue));
	}

	family(&t, "choria_adapter_in_flight_msgs", "gauge",
	       "Messages queued or held by the stream, not yet acknowledged");
	EACH (i) {
		struct series s = {"choria_adapter_in_flight_msgs", NULL, NULL, NULL};
		sample(&t, as[i], &s, adapter_in_flight(as[i]));
	}

	family(&t, "choria_adapter_rejected_msgs", "counter",
	       "Messages rejected before the queue, by reason");
	EACH (i)
		reason_samples(&t, as[i], "choria_adapter_rejected_msgs", &as[i]->stats->rejected);

	family(&t, "choria_adapter_dropped_msgs", "counter",
	       "Messages the queue refused, by reason");
	EACH (i)
		reason_samples(&t, as[i], "choria_adapter_dropped_msgs", &as[i]->stats->dropped);

	family(&t, "choria_adapter_lost_msgs", "counter",
	       "Messages accepted into the queue but never acknowledged, by reason");
	EACH (i)
		reason_samples(&t, as[i], "choria_adapter_lost_msgs", &as[i]->stats->lost);

	family(&t, "choria_adapter_publish_retries", "counter",
	       "Publishes sent again after a failure or a missing acknowledgement");
	EACH (i) {
		struct series s = {"choria_adapter_publish_retries", NULL, NULL, NULL};
		sample(&t, as[i], &s, load(&as[i]->stats->retries));
	}

	family(&t, "choria_adapter_connection_up", "gauge",
	       "1 when the module's connection to its server is up, else 0");
	EACH (i) {
		size_t k;
		bool no_memory;
		struct conn_copy *c = copy_conns(as[i], &k, &no_memory);
		for (size_t j = 0; j < k; j++) {
			struct series s = {"choria_adapter_connection_up",
					   c[j].input ? "input" : "output", "connection",
					   c[j].name};
			sample(&t, as[i], &s, c[j].up);
		}
		free(c);
	}
	return text_finish(&t, out, len);
}

/* ------------------------------------------------------------ health */

static void json_string(struct text *t, const char *s)
{
	text_str(t, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			text_printf(t, "\\%c", *p);
		else if (*p < 0x20)
			text_printf(t, "\\u%04x", *p);
		else
			text_add(t, (const char *)p, 1);
	}
	text_str(t, "\"");
}

static void reason(struct text *t, size_t *count, const char *fmt, ...) CAD_PRINTF(3, 4);
static void reason(struct text *t, size_t *count, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	text_str(t, (*count)++ ? "," : "");
	json_string(t, line);
}

/* ,"config":{...}: how the last reload went. A failed one leaves the
 * running configuration in place, so it does not make the daemon
 * unhealthy. */
static void config_member(struct text *t, const struct config_status *c)
{
	text_printf(t, ",\"config\":{\"last_reload_successful\":%s,\"error\":",
		    c->last_ok ? "true" : "false");
	if (c->last_ok)
		text_str(t, "null");
	else
		json_string(t, c->error);
	text_str(t, "}");
}

int metrics_health(char **out, size_t *len, bool *healthy, struct adapter *const *as, size_t n,
		   const struct config_status *config, enum metrics_phase phase)
{
	struct text reasons_text = {0};
	size_t count = 0;
	if (phase == METRICS_STARTING)
		reason(&reasons_text, &count, "starting");
	else if (phase == METRICS_STOPPING)
		reason(&reasons_text, &count, "stopping");
	/* A reload whose only adapter did not start leaves none. */
	if (n == 0)
		reason(&reasons_text, &count, "no adapter runs");
	EACH (i) {
		size_t k;
		bool no_memory;
		struct conn_copy *c = copy_conns(as[i], &k, &no_memory);
		for (size_t j = 0; j < k; j++)
			if (!c[j].up)
				reason(&reasons_text, &count, "adapter %s: %s disconnected",
				       as[i]->name, c[j].name);
		free(c);
		/* Not knowing is not healthy. */
		if (no_memory)
			reason(&reasons_text, &count,
			       "adapter %s: connection states unknown (out of memory)",
			       as[i]->name);
		size_t queued = queue_length(as[i]->queue), cap = queue_capacity(as[i]->queue);
		if (queued >= cap)
			reason(&reasons_text, &count, "adapter %s: queue full (%zu of %zu)",
			       as[i]->name, queued, cap);
	}

	struct text t = {0};
	if (count == 0) {
		text_str(&t, "{\"status\":\"healthy\"");
	} else {
		text_str(&t, "{\"status\":\"unhealthy\",\"reasons\":[");
		text_add(&t, reasons_text.p, reasons_text.len);
		text_str(&t, "]");
	}
	if (config)
		config_member(&t, config);
	text_str(&t, "}\n");
	if (reasons_text.failed)
		t.failed = true;
	free(reasons_text.p);
	*healthy = count == 0;
	return text_finish(&t, out, len);
}
