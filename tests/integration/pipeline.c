/* SPDX-License-Identifier: Apache-2.0 */
#include "pipeline.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_get.h"
#include "tmpdir.h"

bool pipeline_counts(struct daemon_proc *d, const char *adapter, struct adapter_counts *out)
{
	char *log = file_read(d->log);
	char key[128];
	snprintf(key, sizeof(key), "adapter %s: received=", adapter);
	const char *last = NULL;
	for (const char *p = log; p && (p = strstr(p, key)); p++)
		last = p;
	bool ok = false;
	if (last) {
		memset(out, 0, sizeof(*out));
		ok = sscanf(last + strlen(key) - strlen("received="),
			    "received=%" SCNu64 " published=%" SCNu64 " in_flight=%" SCNu64
			    " retries=%" SCNu64 " rejected=%" SCNu64,
			    &out->received, &out->published, &out->in_flight, &out->retries,
			    &out->rejected) == 5;
		const char *dr = strstr(last, " dropped="), *lo = strstr(last, " lost=");
		if (ok && dr && lo) {
			out->dropped = strtoull(dr + 9, NULL, 10);
			out->lost = strtoull(lo + 6, NULL, 10);
		} else {
			ok = false;
		}
	}
	free(log);
	return ok;
}

struct adapter_counts pipeline_counts_once_received(struct daemon_proc *d, const char *adapter,
						    uint64_t n, int timeout_ms)
{
	struct adapter_counts c = {0};
	for (int waited = 0; waited < timeout_ms && c.received < n; waited += 50) {
		kill(d->pid, SIGUSR1);
		nats_Sleep(50);
		pipeline_counts(d, adapter, &c);
	}
	cr_assert_eq(c.received, n, "adapter %s received %" PRIu64 " of %" PRIu64, adapter,
		     c.received, n);
	return c;
}

struct adapter_counts pipeline_counts_once_settled(struct daemon_proc *d, const char *adapter,
						   uint64_t n, int timeout_ms)
{
	struct adapter_counts c = {0};
	for (int waited = 0; waited < timeout_ms && !(c.received == n && c.in_flight == 0);
	     waited += 50) {
		kill(d->pid, SIGUSR1);
		nats_Sleep(50);
		pipeline_counts(d, adapter, &c);
	}
	cr_assert_eq(c.received, n, "adapter %s received %" PRIu64 " of %" PRIu64, adapter,
		     c.received, n);
	cr_assert_eq(c.in_flight, 0, "adapter %s still has %" PRIu64 " in flight", adapter,
		     c.in_flight);
	return c;
}

void pipeline_request_id(char out[33], unsigned seed, int i)
{
	snprintf(out, 33, "%08x%08x%016x", seed, (unsigned)i, (unsigned)(i * 2654435761u));
}

/* Message i of pipeline_publish(), on the wire (malloc'd). */
static char *numbered(enum choria_msg_kind kind, int i, unsigned seed, size_t *len)
{
	struct choria_msg_spec s = choria_msg_defaults(kind);
	char sender[64], rid[33], body[128];
	snprintf(sender, sizeof(sender), "node-%d.example.net", i);
	pipeline_request_id(rid, seed, i);
	snprintf(body, sizeof(body), "{\"n\":%d,\"html\":\"<b>&</b>\"}", i);
	s.sender = sender;
	s.request_id = rid;
	s.body = body;
	s.time = 1520088557 + i;
	char *wire = choria_msg_build(&s, len);
	cr_assert_not_null(wire);
	return wire;
}

void pipeline_publish(struct js_client *c, const char *subject, enum choria_msg_kind kind,
		      int first, int n, unsigned seed)
{
	for (int i = first; i < first + n; i++) {
		size_t len;
		char *wire = numbered(kind, i, seed, &len);
		cr_assert_eq(nats_publish_raw(c, subject, wire, len), 0);
		free(wire);
	}
}

void pipeline_publish_burst(struct js_client *c, const char *subject, enum choria_msg_kind kind,
			    int first, int n, unsigned seed)
{
	char **wire = calloc((size_t)n, sizeof(*wire));
	size_t *len = calloc((size_t)n, sizeof(*len));
	cr_assert(wire && len);
	for (int i = 0; i < n; i++)
		wire[i] = numbered(kind, first + i, seed, &len[i]);
	for (int i = 0; i < n; i++)
		cr_assert_eq(natsConnection_Publish(c->nc, subject, wire[i], (int)len[i]), NATS_OK);
	cr_assert_eq(natsConnection_FlushTimeout(c->nc, 10000), NATS_OK);
	for (int i = 0; i < n; i++)
		free(wire[i]);
	free(wire);
	free(len);
}

void pipeline_publish_big(struct js_client *c, const char *subject)
{
	char big[6000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	struct choria_msg_spec m = choria_msg_defaults(CHORIA_MSG_REQUEST);
	m.sender = "big.example.net";
	m.body = big;
	pipeline_publish_spec(c, subject, &m);
}

size_t pipeline_publish_spec(struct js_client *c, const char *subject,
			     const struct choria_msg_spec *s)
{
	size_t len;
	char *wire = choria_msg_build(s, &len);
	cr_assert_not_null(wire);
	cr_assert_eq(nats_publish_raw(c, subject, wire, len), 0);
	free(wire);
	return len;
}

void pipeline_setup(char *dir, size_t len, struct nats_server *s, struct js_client *c,
		    const char *stream)
{
	cr_assert_eq(tmpdir_make(dir, len), 0);
	cr_assert_eq(nats_server_start(s, dir, 0, NULL), 0, "nats-server must start");
	cr_assert_eq(js_client_open(c, s->url), 0);
	if (stream)
		cr_assert_eq(js_stream_create(c, stream, "choria.node_metadata.>", 1), 0);
}

void pipeline_teardown(const char *dir, struct nats_server *s, struct js_client *c,
		       struct daemon_proc *d)
{
	if (d->pid > 0)
		daemon_stop(d, SIGKILL, 5000);
	js_client_close(c);
	nats_server_stop(s);
	if (!getenv("CAD_TEST_KEEP"))
		tmpdir_remove(dir);
}

char *pipeline_choria_conf(const char *head, const char *server_url, const char *protocol,
			   const char *topic, const char *extra)
{
	char *c = NULL;
	cr_assert(asprintf(&c,
			   "%s"
			   "adapter node_data {\n"
			   "  ingest {\n"
			   "    type = \"choria\"\n"
			   "    servers = {\"%s\"}\n"
			   "    topic = \"%s\"\n"
			   "    protocol = \"%s\"\n"
			   "    workers = 2\n"
			   "    %s\n"
			   "  }\n"
			   "  stream {\n"
			   "    type = \"jetstream\"\n"
			   "    servers = {\"%s\"}\n"
			   "    topic = \"choria.node_metadata.%%s\"\n"
			   "  }\n"
			   "}\n",
			   head, server_url, topic, protocol, extra, server_url) > 0);
	return c;
}

char *pipeline_check_conf(const char *dir, const char *protocol, const char *extra, int status,
			  char *path, size_t path_len)
{
	char moddir[600], block[1500];
	cr_assert_eq(daemon_modules_dir(moddir, sizeof(moddir), dir), 0);
	snprintf(block, sizeof(block),
		 "adapter a {\n"
		 "  ingest { type = \"choria\" topic = \"t\" protocol = \"%s\"\n"
		 "    %s }\n"
		 "  stream { type = \"jetstream\" }\n"
		 "}\n",
		 protocol, extra);
	cr_assert_eq(tmpdir_write(dir, "check.conf", block, path, path_len), 0);
	char *out = NULL;
	int st = daemon_run_cmd(&out, dir, "-t", "-c", path, "-M", moddir, NULL);
	cr_assert_eq(st, status, "exit %d for [%s]:\n%s", st, extra, out);
	return out;
}

void pipeline_start_daemon(struct daemon_proc *d, const char *dir, const char *conf)
{
	pipeline_start_daemon_preloaded(d, dir, conf, NULL);
}

void pipeline_start_daemon_preloaded(struct daemon_proc *d, const char *dir, const char *conf,
				     const char *preload)
{
	cr_assert_eq(daemon_start_preloaded(d, dir, conf, preload), 0);
	bool up = daemon_wait_log(d, "running", 15000);
	if (!up) {
		char *log = file_read(d->log);
		cr_assert_fail("the daemon did not start; its log:\n%s", log ? log : "(none)");
	}
	/* Subscriptions reach the server with the connection's next flush. */
	nats_Sleep(300);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

uint64_t pipeline_stream_ids(struct js_client *c, const char *stream, uint64_t *distinct)
{
	uint64_t n = js_stream_count(c, stream);
	cr_assert_neq(n, UINT64_MAX, "stream %s is readable", stream);
	char **ids = calloc(n ? n : 1, sizeof(char *));
	uint64_t got = 0;
	for (uint64_t seq = 1; seq <= n; seq++) {
		natsMsg *m = js_stream_get(c, stream, seq);
		cr_assert_not_null(m, "message %lu of %s", (unsigned long)seq, stream);
		const char *id = NULL;
		cr_assert_eq(natsMsgHeader_Get(m, "Nats-Msg-Id", &id), NATS_OK);
		ids[got++] = strdup(id);
		natsMsg_Destroy(m);
	}
	qsort(ids, got, sizeof(char *), cmp_str);
	*distinct = 0;
	for (uint64_t i = 0; i < got; i++)
		if (i == 0 || strcmp(ids[i], ids[i - 1]) != 0)
			(*distinct)++;
	for (uint64_t i = 0; i < got; i++)
		free(ids[i]);
	free(ids);
	return got;
}

void pipeline_assert_balance(struct daemon_proc *d, const struct adapter_counts *n)
{
	uint64_t settled = n->published + n->rejected + n->dropped + n->lost + n->in_flight;
	if (n->received != settled) {
		char *log = file_read(d->log);
		cr_assert_fail(
			"received %lu != published %lu + rejected %lu + dropped %lu + lost %lu + in flight %lu\n%s",
			(unsigned long)n->received, (unsigned long)n->published,
			(unsigned long)n->rejected, (unsigned long)n->dropped,
			(unsigned long)n->lost, (unsigned long)n->in_flight, log);
	}
}

struct adapter_counts pipeline_stop_and_count(struct daemon_proc *d, const char *adapter)
{
	cr_assert_eq(daemon_stop(d, SIGTERM, 30000), 0, "exits 0 on SIGTERM");
	struct adapter_counts n;
	cr_assert(pipeline_counts(d, adapter, &n), "the daemon logged its counters");
	pipeline_assert_balance(d, &n);
	return n;
}

struct adapter_counts pipeline_wait_lost(struct daemon_proc *d, const char *adapter, uint64_t lost,
					 int timeout_ms)
{
	struct adapter_counts c = {0};
	for (int waited = 0; waited < timeout_ms; waited += 50) {
		kill(d->pid, SIGUSR1);
		nats_Sleep(50);
		if (pipeline_counts(d, adapter, &c) && c.lost >= lost)
			return c;
	}
	cr_assert_fail("%lu messages lost, not %lu", (unsigned long)c.lost, (unsigned long)lost);
	return c;
}

bool pipeline_health_within(int port, int want, const char *reason, int timeout_ms, int *status,
			    char *body, size_t body_len)
{
	for (int waited = 0; waited <= timeout_ms; waited += 100) {
		struct http_reply r = {0};
		if (http_request(&r, "127.0.0.1", port, "GET", "/healthz", 5000) == 0) {
			bool hit = r.status == want && (!reason || strstr(r.body, reason));
			if (status)
				*status = r.status;
			if (body)
				snprintf(body, body_len, "%s", r.body ? r.body : "");
			http_reply_free(&r);
			if (hit)
				return true;
		}
		nats_Sleep(100);
	}
	return false;
}

void pipeline_wait_health(int port, int want, const char *reason, int timeout_ms)
{
	char body[2048] = "";
	int status = 0;
	if (!pipeline_health_within(port, want, reason, timeout_ms, &status, body, sizeof(body)))
		cr_assert_fail("/healthz did not answer %d%s%s; last %d: %s", want,
			       reason ? " with " : "", reason ? reason : "", status, body);
}

int pipeline_connection_up(int port, const char *connection)
{
	struct http_reply r = {0};
	cr_assert_eq(http_request(&r, "127.0.0.1", port, "GET", "/metrics", 5000), 0);
	char want[160];
	snprintf(want, sizeof(want), "connection=\"%s\",", connection);
	int up = -1;
	for (const char *p = r.body; (p = strstr(p, "choria_adapter_connection_up{")); p++) {
		const char *eol = strchr(p, '\n');
		const char *hit = strstr(p, want);
		if (hit && (!eol || hit < eol)) {
			const char *one = strstr(p, "} 1");
			up = one && (!eol || one < eol) ? 1 : 0;
			break;
		}
	}
	http_reply_free(&r);
	return up;
}

uint64_t pipeline_rejected_for(struct daemon_proc *d, const char *adapter, const char *reason)
{
	char *log = file_read(d->log), line[128], key[64];
	const char *last = NULL, *p;
	uint64_t n = 0;

	snprintf(line, sizeof(line), "adapter %s: received=", adapter);
	for (p = log; p && (p = strstr(p, line)); p++)
		last = p;
	cr_assert_not_null(last, "a counter line for %s", adapter);
	const char *eol = strchr(last, '\n');
	const char *rej = strstr(last, " rejected=");
	const char *open = rej ? strchr(rej, '(') : NULL;
	const char *drop = strstr(last, " dropped=");
	snprintf(key, sizeof(key), "%s=", reason);
	if (open && drop && open < drop && (!eol || drop < eol)) {
		for (p = open + 1; p < drop; p++) {
			if ((p[-1] == '(' || p[-1] == ' ') && strncmp(p, key, strlen(key)) == 0) {
				n = strtoull(p + strlen(key), NULL, 10);
				break;
			}
		}
	}
	free(log);
	return n;
}
