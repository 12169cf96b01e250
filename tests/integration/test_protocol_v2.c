/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Choria protocol v2 through the built daemon and a real nats-server:
 * tokens and ed25519 keys made at test time (tests/fixtures/choria_v2.h),
 * v1 and v2 on one subject, every forged kind of v2 request rejected under
 * its own reason in the counter line and in /metrics, what security = none
 * lets through, v2 replies and their hashes, a version with no trust, and
 * the configuration errors of the v2 trust options.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "certs.h"
#include "choria_v2.h"
#include "http_get.h"
#include "pipeline.h"
#include "prom_check.h"
#include "tmpdir.h"

#define SUBJECT "choria.discovery"

static char dir[512];
static struct nats_server server;
static struct js_client client;
static struct daemon_proc daemon_a;
static int metrics_port;

/* The organisation, another one nobody trusts, a chain issuer the
 * organisation vouched for and one it did not, and the fleet's keys. */
static struct choria_v2_key org, foreign_org, chain_key, alice, web1, delegator, mallory;
static struct choria_v2_chain chain, rogue_chain;

static void make_chain(struct choria_v2_chain *c, const struct choria_v2_key *issuer, int64_t exp)
{
	struct choria_v2_token_spec s =
		choria_v2_token_defaults(CHORIA_V2_CHAIN_ISSUER, &chain_key, issuer);
	if (exp)
		s.exp = exp;
	char *t = choria_v2_chain_issuer(&s, c);
	cr_assert_not_null(t);
	free(t);
}

static void setup(void)
{
	pipeline_setup(dir, sizeof(dir), &server, &client, "NODES");
	struct choria_v2_key *keys[] = {&org,  &foreign_org, &chain_key, &alice,
					&web1, &delegator,   &mallory};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		cr_assert_eq(choria_v2_key_random(keys[i]), 0);
	make_chain(&chain, &org, 0);
	make_chain(&rogue_chain, &foreign_org, 0);
	metrics_port = free_port();
}

static void teardown(void)
{
	pipeline_teardown(dir, &server, &client, &daemon_a);
}

TestSuite(protocol_v2, .init = setup, .fini = teardown, .timeout = 120);

/* `extra` goes into the ingest block. */
static char *conf_with(const char *protocol, const char *topic, const char *extra)
{
	char head[160];
	snprintf(head, sizeof(head),
		 "log_level = \"info\"\n"
		 "identity = \"adapter.test\"\n"
		 "metrics_listen = \"127.0.0.1:%d\"\n",
		 metrics_port);
	return pipeline_choria_conf(head, server.url, protocol, topic, extra);
}

static void start(const char *protocol, const char *topic, const char *extra)
{
	char *conf = conf_with(protocol, topic, extra);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
}

/* security = verify with the organisation as the one issuer, and `more`. */
static void start_verify_issuers(const char *more)
{
	char extra[600];
	snprintf(extra, sizeof(extra),
		 "security = \"verify\"\n    issuers = {\"choria=%s\"}\n    %s", org.pub_hex, more);
	start("request", SUBJECT, extra);
}

/* ------------------------------------------------------------ tokens */

struct tok {
	enum choria_v2_token_kind kind;
	const struct choria_v2_key *holder, *issuer;
	const struct choria_v2_chain *chain;
	const char *permissions, *ou, *remove, *patch;
	int64_t nbf, exp;
	bool tamper;
};

/* A token of the defaults of its kind (a client's unless told), held by
 * alice unless told, with what `t` changes (0 and NULL change nothing; "-"
 * as ou or permissions removes the claim). */
static char *token(struct tok t)
{
	struct choria_v2_token_spec s =
		choria_v2_token_defaults(t.kind, t.holder ? t.holder : &alice,
					 t.issuer ? t.issuer : &org);
	s.chain = t.chain;
	if (t.permissions)
		s.permissions = strcmp(t.permissions, "-") ? t.permissions : NULL;
	if (t.ou)
		s.ou = strcmp(t.ou, "-") ? t.ou : NULL;
	if (t.nbf)
		s.iat = s.nbf = t.nbf;
	if (t.exp)
		s.exp = t.exp;
	s.remove = t.remove;
	s.patch = t.patch;
	s.tamper_signature = t.tamper;
	char *jwt = choria_v2_token(&s);
	cr_assert_not_null(jwt);
	return jwt;
}

/* ---------------------------------------------------------- messages */

struct req {
	const char *sender; /* also names the message in the stream */
	const char *caller_token, *signer_token;
	const struct choria_v2_key *key; /* NULL: unsigned ("insecure") */
	const char *caller;              /* NULL: choria=alice */
	int64_t time_ns;                 /* 0: the example's */
	bool tamper_signature;
	const char *signed_body;
};

static void request_id(char out[28])
{
	cr_assert_eq(choria_v2_ksuid(out, time(NULL), NULL), 0);
}

static void publish_v2(const struct choria_v2_msg_spec *m)
{
	size_t len;
	char *wire = choria_v2_build(m, &len);
	cr_assert_not_null(wire, "the fixture could not build the message");
	cr_assert_eq(nats_publish_raw(&client, SUBJECT, wire, len), 0);
	free(wire);
}

/* A v2 request with body {"identity":"<sender>"}; returns its id in rid. */
static void publish_request(struct req r, char rid[28])
{
	char body[160], id[28];
	struct choria_v2_msg_spec m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	snprintf(body, sizeof(body), "{\"identity\":\"%s\"}", r.sender);
	request_id(rid ? rid : id);
	m.id = rid ? rid : id;
	m.body = body;
	m.sender = r.sender;
	if (r.caller)
		m.caller = r.caller;
	if (r.time_ns)
		m.time = r.time_ns;
	m.caller_token = r.caller_token;
	m.signer_token = r.signer_token;
	m.signing_key = r.key;
	m.tamper_signature = r.tamper_signature;
	m.signed_body = r.signed_body;
	publish_v2(&m);
}

/* A request from `sender` with caller_token `tok`, signed by alice. */
static void publish_signed(const char *sender, const char *tok)
{
	publish_request((struct req){.sender = sender, .caller_token = tok, .key = &alice}, NULL);
}

/* A v1 request signed with the test PKI's web1 certificate. */
static void publish_v1(const char *sender)
{
	struct test_signer signer = {.key = test_pki()->leaf_key, .pem = test_pki()->signer};
	struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REQUEST);
	char body[128];
	snprintf(body, sizeof(body), "{\"identity\":\"%s\"}", sender);
	s.sender = sender;
	s.body = body;
	s.callerid = "choria=web1.example.net";
	s.sign = test_sign;
	s.sign_arg = &signer;
	pipeline_publish_spec(&client, SUBJECT, &s);
}

/* ------------------------------------------------------ what arrived */

struct landed {
	char *sender, *data, *requestid, *time, *msg_id;
};

/* The n messages of the stream (asserts there are n). */
static struct landed *stored(uint64_t n)
{
	struct landed *out = calloc(n, sizeof(*out));
	cr_assert_not_null(out);
	cr_assert_eq(js_stream_count(&client, "NODES"), n, "exactly %llu messages stored",
		     (unsigned long long)n);
	for (uint64_t seq = 1; seq <= n; seq++) {
		natsMsg *m = js_stream_get(&client, "NODES", seq);
		cr_assert_not_null(m);
		json_error_t e;
		json_t *env =
			json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, &e);
		cr_assert_not_null(env, "envelope is JSON: %s", e.text);
		cr_assert_eq(json_object_size(env), 5, "exactly the five envelope fields");
		struct landed *l = &out[seq - 1];
		l->sender = strdup(json_string_value(json_object_get(env, "sender")));
		l->data = strdup(json_string_value(json_object_get(env, "data")));
		l->requestid = strdup(json_string_value(json_object_get(env, "requestid")));
		l->time = strdup(json_string_value(json_object_get(env, "time")));
		const char *id = NULL;
		cr_assert_eq(natsMsgHeader_Get(m, "Nats-Msg-Id", &id), NATS_OK);
		l->msg_id = strdup(id);
		json_decref(env);
		natsMsg_Destroy(m);
	}
	return out;
}

static const struct landed *find(const struct landed *l, uint64_t n, const char *sender)
{
	for (uint64_t i = 0; i < n; i++)
		if (strcmp(l[i].sender, sender) == 0)
			return &l[i];
	cr_assert_fail("%s is not in the stream", sender);
	return NULL;
}

static void landed_free(struct landed *l, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		free(l[i].sender);
		free(l[i].data);
		free(l[i].requestid);
		free(l[i].time);
		free(l[i].msg_id);
	}
	free(l);
}

/* The stream holds exactly the n messages of `senders`. */
static void expect_stored(const char *const *senders, uint64_t n)
{
	struct landed *l = stored(n);
	for (uint64_t i = 0; i < n; i++)
		find(l, n, senders[i]);
	landed_free(l, n);
}

/* `landed` messages arrive, the daemon settles all `seen` it received, and
 * stops cleanly; returns the counters it had settled on. */
static struct adapter_counts settle_then_stop(uint64_t landed, uint64_t seen)
{
	cr_assert(js_stream_wait_count(&client, "NODES", landed, 15000));
	struct adapter_counts n = pipeline_counts_once_settled(&daemon_a, "node_data", seen, 15000);
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	return n;
}

/* The envelope of a v2 request published by publish_request(). */
static void expect_envelope(const struct landed *l, uint64_t n, const char *sender, const char *rid,
			    const char *time)
{
	const struct landed *e = find(l, n, sender);
	char body[160], msg_id[128];
	snprintf(body, sizeof(body), "{\"identity\":\"%s\"}", sender);
	snprintf(msg_id, sizeof(msg_id), "%s:%s", rid, sender);
	cr_assert_str_eq(e->data, body, "%s: data is the decoded payload", sender);
	cr_assert_str_eq(e->requestid, rid, "%s", sender);
	cr_assert_str_eq(e->time, time, "%s", sender);
	cr_assert_str_eq(e->msg_id, msg_id, "%s", sender);
}

/* ------------------------------------------------------------ metrics */

static char *scrape(void)
{
	return prom_scrape(dir, metrics_port);
}

static double rejected_metric(const char *listing, const char *reason)
{
	char want[160];
	snprintf(want, sizeof(want), "name=\"node_data\",identity=\"adapter.test\"%s%s%s",
		 reason ? ",reason=\"" : "", reason ? reason : "", reason ? "\"" : "");
	return prom_sum(listing, "choria_adapter_rejected_msgs", want);
}

/* How many of the n rejections whose reasons are `why` are for `reason`. */
static unsigned how_many(const char *const *why, size_t n, const char *reason)
{
	unsigned count = 0;
	for (size_t i = 0; i < n; i++)
		count += strcmp(why[i], reason) == 0;
	return count;
}

/* /metrics counts each of the nr `reasons` as often as `why`, the reasons
 * of the n rejections, names it, and no other reason. */
static void expect_rejected_metrics(const char *const *reasons, size_t nr, const char *const *why,
				    size_t n)
{
	char *listing = scrape();
	for (size_t r = 0; r < nr; r++)
		cr_assert_eq(rejected_metric(listing, reasons[r]), how_many(why, n, reasons[r]),
			     "%s in /metrics", reasons[r]);
	cr_assert_eq(rejected_metric(listing, NULL), (double)n, "no other reason");
	free(listing);
}

/* ============================================================== tests */

Test(protocol_v2, v1_and_v2_on_one_subject_land_with_their_envelopes)
{
	char extra[900];
	snprintf(extra, sizeof(extra),
		 "security = \"verify\"\n    ca = \"%s\"\n    issuers = {\"choria=%s\"}",
		 test_pki_path("ca.pem"), org.pub_hex);
	start("request", SUBJECT, extra);

	char *client_tok = token((struct tok){.holder = &alice});
	char *chained_tok = token((struct tok){.chain = &chain});
	char *server_tok = token((struct tok){.kind = CHORIA_V2_SERVER, .holder = &web1});
	char *signed_fleet_tok = token(
		(struct tok){.chain = &chain, .permissions = "{\"signed_fleet_management\":true}"});
	char *delegator_tok =
		token((struct tok){.kind = CHORIA_V2_DELEGATOR, .holder = &delegator});
	char rid_client[28], rid_chained[28], rid_server[28], rid_delegated[28];

	publish_v1("v1-node.example.net");
	publish_request((struct req){.sender = "client.example.net",
				     .caller_token = client_tok,
				     .key = &alice,
				     .time_ns = 1767225605123456789LL},
			rid_client);
	publish_request((struct req){.sender = "chained.example.net",
				     .caller_token = chained_tok,
				     .key = &alice,
				     .time_ns = 1767225605120000000LL},
			rid_chained);
	/* registration: the server token as the caller, its bare identity as `caller` */
	publish_request((struct req){.sender = "web1.example.net",
				     .caller_token = server_tok,
				     .key = &web1,
				     .caller = "web1.example.net",
				     .time_ns = 1767225605000000000LL},
			rid_server);
	publish_request((struct req){.sender = "delegated.example.net",
				     .caller_token = signed_fleet_tok,
				     .signer_token = delegator_tok,
				     &delegator,
				     .time_ns = 1767225605000000001LL},
			rid_delegated);

	cr_assert(js_stream_wait_count(&client, "NODES", 5, 15000), "all five arrive");
	struct adapter_counts n = pipeline_counts_once_settled(&daemon_a, "node_data", 5, 15000);
	cr_assert_eq(n.published, 5);
	cr_assert_eq(n.rejected, 0);

	struct landed *l = stored(5);
	expect_envelope(l, 5, "client.example.net", rid_client, "2026-01-01T00:00:05.123456789Z");
	expect_envelope(l, 5, "chained.example.net", rid_chained, "2026-01-01T00:00:05.12Z");
	expect_envelope(l, 5, "web1.example.net", rid_server, "2026-01-01T00:00:05Z");
	expect_envelope(l, 5, "delegated.example.net", rid_delegated,
			"2026-01-01T00:00:05.000000001Z");
	const struct landed *v1 = find(l, 5, "v1-node.example.net");
	cr_assert_str_eq(v1->data, "{\"identity\":\"v1-node.example.net\"}");
	cr_assert_str_eq(v1->requestid, "5e8b2f0c1d3a4b5c6d7e8f9a0b1c2d3e");
	cr_assert_str_eq(v1->time, "2018-03-03T14:49:17Z");
	cr_assert_str_eq(v1->msg_id, "5e8b2f0c1d3a4b5c6d7e8f9a0b1c2d3e:v1-node.example.net");
	landed_free(l, 5);
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);

	free(client_tok);
	free(chained_tok);
	free(server_tok);
	free(signed_fleet_tok);
	free(delegator_tok);
}

/* One forged request: the sender it is published as, and the reason it
 * must be rejected with. */
struct forged {
	const char *sender, *reason;
	struct req req;
};

Test(protocol_v2, every_forged_request_is_rejected_with_its_reason_and_counted)
{
	start_verify_issuers("");
	const int64_t now = (int64_t)time(NULL);

	char *alice_tok = token((struct tok){.holder = &alice});
	char *signed_fleet_tok =
		token((struct tok){.permissions = "{\"signed_fleet_management\":true}"});
	char *delegator_tok =
		token((struct tok){.kind = CHORIA_V2_DELEGATOR, .holder = &delegator});
	char *server_tok = token((struct tok){.kind = CHORIA_V2_SERVER, .holder = &web1});
	struct choria_v2_chain expired_chain;
	make_chain(&expired_chain, &org, now - 60);

	struct forged f[] = {
		{"expired",
		 "token_expired",
		 {.caller_token = token((struct tok){.nbf = now - 3600, .exp = now - 60}),
		  .key = &alice}},
		{"chain-expired",
		 "token_expired",
		 {.caller_token = token((struct tok){.chain = &expired_chain, .nbf = now - 3600}),
		  .key = &alice}},
		{"not-yet-valid",
		 "token_not_yet_valid",
		 {.caller_token = token((struct tok){.nbf = now + 3600}), .key = &alice}},
		{"provisioning",
		 "wrong_purpose",
		 {.caller_token =
			  token((struct tok){.kind = CHORIA_V2_PROVISIONING, .holder = &alice}),
		  .key = &alice}},
		{"foreign-org",
		 "untrusted_issuer",
		 {.caller_token = token((struct tok){.issuer = &foreign_org}), .key = &alice}},
		{"unknown-ou",
		 "untrusted_issuer",
		 {.caller_token = token((struct tok){.ou = "elsewhere"}), .key = &alice}},
		{"no-ou",
		 "untrusted_issuer",
		 {.caller_token = token((struct tok){.ou = "-"}), .key = &alice}},
		{"rogue-chain",
		 "untrusted_issuer",
		 {.caller_token = token((struct tok){.chain = &rogue_chain}), .key = &alice}},
		{"tampered-token",
		 "untrusted_issuer",
		 {.caller_token = token((struct tok){.tamper = true}), .key = &alice}},
		{"no-fleet",
		 "no_fleet_management",
		 {.caller_token = token((struct tok){.permissions = "{}"}), .key = &alice}},
		{"signed-fleet-alone",
		 "needs_delegation",
		 {.caller_token = signed_fleet_tok, .key = &alice}},
		{"signer-not-delegator",
		 "not_delegator",
		 {.caller_token = signed_fleet_tok,
		  .signer_token =
			  token((struct tok){.kind = CHORIA_V2_CLIENT, .holder = &delegator}),
		  .key = &delegator}},
		{"signer-a-server",
		 "wrong_purpose",
		 {.caller_token = signed_fleet_tok, .signer_token = server_tok, .key = &web1}},
		{"delegated-foreign-caller",
		 "untrusted_issuer",
		 {.caller_token =
			  token((struct tok){.issuer = &foreign_org,
					     .permissions = "{\"signed_fleet_management\":true}"}),
		  .signer_token = delegator_tok,
		  .key = &delegator}},
		{"caller-mismatch",
		 "caller_mismatch",
		 {.caller_token = alice_tok, .key = &alice, .caller = "choria=mallory"}},
		{"server-mismatch",
		 "caller_mismatch",
		 {.caller_token = server_tok, .key = &web1, .caller = "web2.example.net"}},
		{"delegated-mismatch",
		 "caller_mismatch",
		 {.caller_token = signed_fleet_tok,
		  .signer_token = delegator_tok,
		  .key = &delegator,
		  .caller = "choria=bob"}},
		{"insecure", "insecure", {.caller_token = alice_tok}},
		{"bad-signature",
		 "bad_signature",
		 {.caller_token = alice_tok, .key = &alice, .tamper_signature = true}},
		{"tampered-payload",
		 "bad_signature",
		 {.caller_token = alice_tok, .key = &alice, .signed_body = "{\"identity\":\"x\"}"}},
		{"wrong-key", "bad_signature", {.caller_token = alice_tok, .key = &mallory}},
		{"delegated-signed-by-caller",
		 "bad_signature",
		 {.caller_token = signed_fleet_tok, .signer_token = delegator_tok, .key = &alice}},
		{"no-exp",
		 "bad_token",
		 {.caller_token = token((struct tok){.remove = "exp"}), .key = &alice}},
		{"chain-iat-not-jti-time",
		 "bad_token",
		 {.caller_token =
			  token((struct tok){.chain = &chain, .patch = "{\"iat\":1767225601}"}),
		  .key = &alice}},
		{"chain-no-issexp",
		 "bad_token",
		 {.caller_token = token((struct tok){.chain = &chain, .remove = "issexp"}),
		  .key = &alice}},
		{"public-key-not-hex",
		 "bad_token",
		 {.caller_token = token((struct tok){.patch = "{\"public_key\":\"zz\"}"}),
		  .key = &alice}},
		{"exp-a-string",
		 "bad_token",
		 {.caller_token = token((struct tok){.patch = "{\"exp\":\"2051222400\"}"}),
		  .key = &alice}},
		{"alg-none",
		 "bad_token",
		 {.caller_token = choria_v2_jwt_raw("{\"alg\":\"none\",\"typ\":\"JWT\"}",
						    "{\"callerid\":\"choria=alice\"}", NULL),
		  .key = &alice}},
	};
	const size_t nf = sizeof(f) / sizeof(f[0]);
	const char *reasons[] = {"token_expired",
				 "token_not_yet_valid",
				 "wrong_purpose",
				 "untrusted_issuer",
				 "no_fleet_management",
				 "needs_delegation",
				 "not_delegator",
				 "caller_mismatch",
				 "insecure",
				 "bad_signature",
				 "bad_token"};

	publish_signed("good-1", alice_tok);
	const char *why[sizeof(f) / sizeof(f[0])];
	for (size_t i = 0; i < nf; i++) {
		f[i].req.sender = f[i].sender;
		why[i] = f[i].reason;
		publish_request(f[i].req, NULL);
	}
	publish_signed("good-2", alice_tok);

	cr_assert(js_stream_wait_count(&client, "NODES", 2, 15000), "the good ones arrive");
	struct adapter_counts n =
		pipeline_counts_once_settled(&daemon_a, "node_data", nf + 2, 15000);
	cr_assert_eq(n.published, 2);
	cr_assert_eq(n.rejected, nf);

	/* /metrics, while the daemon runs: each reason with its count. */
	const size_t nr = sizeof(reasons) / sizeof(reasons[0]);
	expect_rejected_metrics(reasons, nr, why, nf);

	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	for (size_t r = 0; r < nr; r++)
		cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", reasons[r]),
			     how_many(why, nf, reasons[r]), "%s in the counter line", reasons[r]);
	expect_stored((const char *[]){"good-1", "good-2"}, 2);
	/* the first rejection is logged (which one it is depends on the
	 * workers' order), with the caller */
	cr_assert_gt(daemon_log_count(&daemon_a, "rejected a message ("), 0);
	cr_assert_gt(daemon_log_count(&daemon_a, "(caller "), 0);

	free(alice_tok);
	free(signed_fleet_tok);
	free(delegator_tok);
	free(server_tok);
	for (size_t i = 0; i < nf; i++) {
		const char *t = f[i].req.caller_token;
		if (t != alice_tok && t != signed_fleet_tok && t != server_tok)
			free((char *)t);
		t = f[i].req.signer_token;
		if (t && t != delegator_tok && t != server_tok)
			free((char *)t);
	}
}

/* A caller name with a line feed and a terminal escape is logged, but not
 * as it came. */
Test(protocol_v2, a_rejected_caller_is_named_sanitised)
{
	start_verify_issuers("");
	const char *name = "choria=mal\nforged line \x1b[31mred";
	char *tok = token((struct tok){
		.patch = "{\"callerid\":\"choria=mal\\nforged line \\u001b[31mred\"}"});
	publish_request((struct req){.sender = "bad-signature",
				     .caller_token = tok,
				     .key = &alice,
				     .caller = name,
				     .tamper_signature = true},
			NULL);
	pipeline_counts_once_settled(&daemon_a, "node_data", 1, 15000);
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", "bad_signature"), 1);
	cr_assert_eq(daemon_log_count(&daemon_a, "rejected a message (bad_signature)"), 1);
	cr_assert_eq(daemon_log_count(&daemon_a, "(caller choria=mal"), 1, "the caller is named");
	cr_assert_eq(daemon_log_count(&daemon_a, "\nforged line"), 0, "no line of its own");
	cr_assert_eq(daemon_log_count(&daemon_a, "\x1b"), 0, "no terminal escape");
	free(tok);
}

/* A token's text with its last `cut` characters cut and `suffix` appended. */
static char *token_text_edit(const char *tok, const char *suffix, size_t cut)
{
	size_t n = strlen(tok) - cut;
	char *out = malloc(n + strlen(suffix) + 1);
	cr_assert_not_null(out);
	memcpy(out, tok, n);
	strcpy(out + n, suffix);
	return out;
}

/* What the fleet may send that is unusual but valid, and JWT shapes that
 * are not: a fractional exp, an empty signer, a time of 1 ns pass; a
 * padded, four-part or short-signed token is a bad_token. */
Test(protocol_v2, unusual_forms_of_tokens_and_requests)
{
	start_verify_issuers("");
	char *alice_tok = token((struct tok){.holder = &alice});
	char *fractional = token((struct tok){.patch = "{\"exp\":2051222400.5}"});
	char *padded = token_text_edit(alice_tok, "=", 0);
	char *four_parts = token_text_edit(alice_tok, ".AA", 0);
	/* 86 characters hold 64 bytes; 84 hold 63 */
	char *short_sig = token_text_edit(alice_tok, "", 2);
	char rid_frac[28], rid_empty[28], rid_early[28];

	publish_request((struct req){.sender = "fractional-exp",
				     .caller_token = fractional,
				     .key = &alice},
			rid_frac);
	struct choria_v2_msg_spec m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	request_id(rid_empty);
	m.id = rid_empty;
	m.body = "{\"identity\":\"empty-signer\"}";
	m.sender = "empty-signer";
	m.caller_token = alice_tok;
	m.signer_token = "";
	m.signing_key = &alice;
	publish_v2(&m);
	publish_request((struct req){.sender = "first-nanosecond",
				     .caller_token = alice_tok,
				     .key = &alice,
				     .time_ns = 1},
			rid_early);
	publish_signed("padded", padded);
	publish_signed("four-parts", four_parts);
	publish_signed("short-signature", short_sig);

	settle_then_stop(3, 6);
	cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", "bad_token"), 3);
	struct landed *l = stored(3);
	expect_envelope(l, 3, "fractional-exp", rid_frac, "2026-01-01T00:00:05.123456789Z");
	expect_envelope(l, 3, "empty-signer", rid_empty, "2026-01-01T00:00:05.123456789Z");
	expect_envelope(l, 3, "first-nanosecond", rid_early, "1970-01-01T00:00:00.000000001Z");
	landed_free(l, 3);
	free(alice_tok);
	free(fractional);
	free(padded);
	free(four_parts);
	free(short_sig);
}

/* Wait until the clock reaches `t` (Unix seconds), up to a minute. */
static void wait_until(int64_t t)
{
	for (int i = 0; i < 600 && (int64_t)time(NULL) < t; i++)
		nats_Sleep(100);
	cr_assert_geq((int64_t)time(NULL), t, "the clock reached %lld", (long long)t);
}

/* A token's verdict is cached, its validity window is not trusted to the
 * cache: the same tokens are refused once expired and taken once valid. */
Test(protocol_v2, cached_tokens_are_checked_against_the_clock_on_every_message)
{
	start_verify_issuers("");
	const int64_t now = (int64_t)time(NULL);
	char *soon_expired = token((struct tok){.nbf = now - 60, .exp = now + 5});
	char *soon_valid = token((struct tok){.nbf = now + 5, .exp = now + 3600});

	publish_signed("before-exp", soon_expired);
	publish_signed("before-nbf", soon_valid);
	cr_assert(js_stream_wait_count(&client, "NODES", 1, 15000));
	pipeline_counts_once_settled(&daemon_a, "node_data", 2, 15000);
	wait_until(now + 6);
	publish_signed("after-exp", soon_expired);
	publish_signed("after-nbf", soon_valid);
	settle_then_stop(2, 4);
	cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", "token_expired"), 1);
	cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", "token_not_yet_valid"), 1);
	expect_stored((const char *[]){"before-exp", "after-nbf"}, 2);
	free(soon_expired);
	free(soon_valid);
}

Test(protocol_v2, security_none_lets_well_formed_v2_through)
{
	start("request", SUBJECT, "security = \"none\"");
	const int64_t now = (int64_t)time(NULL);
	char *alice_tok = token((struct tok){.holder = &alice});
	char *expired_tok = token((struct tok){.nbf = now - 3600, .exp = now - 60});
	char *foreign_tok = token((struct tok){.issuer = &foreign_org});

	publish_signed("good", alice_tok);
	publish_request((struct req){.sender = "insecure", .caller_token = alice_tok}, NULL);
	publish_request((struct req){.sender = "bad-signature",
				     .caller_token = alice_tok,
				     .key = &alice,
				     .tamper_signature = true},
			NULL);
	publish_signed("expired", expired_tok);
	publish_signed("foreign", foreign_tok);
	publish_request((struct req){.sender = "mismatch",
				     .caller_token = alice_tok,
				     .key = &alice,
				     .caller = "choria=bob"},
			NULL);
	publish_v1("v1-node");

	struct adapter_counts n = settle_then_stop(7, 7);
	cr_assert_eq(n.rejected, 0);
	const char *senders[] = {"good",    "insecure", "bad-signature", "expired",
				 "foreign", "mismatch", "v1-node"};
	expect_stored(senders, 7);
	free(alice_tok);
	free(expired_tok);
	free(foreign_tok);
}

/* One malformed v2 message: how it is made, and its reason. */
struct malformed {
	const char *reason;
	struct choria_v2_msg_spec m;
};

/* The next of the table f, which is to be rejected for `reason`: returns
 * its message to change. */
static struct choria_v2_msg_spec *malformed_add(struct malformed *f, size_t *nf, const char *reason)
{
	f[*nf].reason = reason;
	return &f[(*nf)++].m;
}

Test(protocol_v2, malformed_v2_is_rejected_with_its_reason_and_counted)
{
	start("request", SUBJECT, "security = \"none\"");
	char *alice_tok = token((struct tok){.holder = &alice});
	struct choria_v2_msg_spec base = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	base.caller_token = alice_tok;
	base.signing_key = &alice;
	struct malformed f[16];
	size_t nf = 0;
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		f[i].m = base;

	malformed_add(f, &nf, "not_json")->secure_edit.raw = "{\"protocol\":";
	malformed_add(f, &nf, "not_json")->message_edit.raw = "[1]";
	malformed_add(f, &nf, "bad_transport")->transport_protocol =
		"io.choria.protocol.v3.transport";
	malformed_add(f, &nf, "bad_base64")->transport_edit.patch = "{\"data\":\"not base64!\"}";
	malformed_add(f, &nf, "bad_base64")->message = "%%%";
	malformed_add(f, &nf, "bad_base64")->signature = "@@";
	malformed_add(f, &nf, "bad_secure")->secure_protocol = "io.choria.protocol.v2.secure_reply";
	malformed_add(f, &nf, "bad_secure")->secure_edit.remove = "caller";
	malformed_add(f, &nf, "bad_secure")->transport_protocol = "choria:transport:1";
	malformed_add(f, &nf, "bad_secure")->kind = CHORIA_V2_REPLY;
	malformed_add(f, &nf, "bad_message")->ttl = 0;
	malformed_add(f, &nf, "bad_message")->message_edit.patch =
		"{\"time\":\"1767225605123456789\"}";
	malformed_add(f, &nf, "bad_message")->message_edit.remove = "id";
	malformed_add(f, &nf, "bad_message")->protocol = "choria:request:1";
	malformed_add(f, &nf, "not_utf8")->body = "caf\xe9";

	publish_signed("good-1", alice_tok);
	const char *why[sizeof(f) / sizeof(f[0])];
	for (size_t i = 0; i < nf; i++) {
		why[i] = f[i].reason;
		publish_v2(&f[i].m);
	}
	publish_signed("good-2", alice_tok);

	cr_assert(js_stream_wait_count(&client, "NODES", 2, 15000));
	struct adapter_counts n =
		pipeline_counts_once_settled(&daemon_a, "node_data", nf + 2, 15000);
	cr_assert_eq(n.rejected, nf);
	const char *reasons[] = {"not_json",   "bad_transport", "bad_base64",
				 "bad_secure", "bad_message",   "not_utf8"};
	expect_rejected_metrics(reasons, sizeof(reasons) / sizeof(reasons[0]), why, nf);
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	expect_stored((const char *[]){"good-1", "good-2"}, 2);
	free(alice_tok);
}

static void publish_reply(const char *sender, const char *rid, const char *hash, bool sign,
			  const char *sender_token)
{
	char body[160];
	struct choria_v2_msg_spec m = choria_v2_msg_defaults(CHORIA_V2_REPLY);
	snprintf(body, sizeof(body), "{\"identity\":\"%s\"}", sender);
	m.body = body;
	m.sender = sender;
	m.id = rid;
	m.hash = hash;
	m.signing_key = sign ? &web1 : NULL;
	m.sender_token = sender_token;
	m.time = 1767225605123456789LL;
	size_t len;
	char *wire = choria_v2_build(&m, &len);
	cr_assert_not_null(wire);
	cr_assert_eq(nats_publish_raw(&client, "choria.reply.x", wire, len), 0);
	free(wire);
}

Test(protocol_v2, replies_pass_on_their_hash_alone)
{
	start("reply", "choria.reply.>", "security = \"verify\"");
	char *server_tok = token((struct tok){.kind = CHORIA_V2_SERVER, .holder = &web1});
	char *foreign_tok = token(
		(struct tok){.kind = CHORIA_V2_SERVER, .holder = &web1, .issuer = &foreign_org});
	char rid[28];
	request_id(rid);
	char *other = choria_msg_sha256_base64("another reply", 13);

	publish_reply("signed.example.net", rid, NULL, true, server_tok);
	publish_reply("unsigned.example.net", rid, NULL, false, NULL);
	/* the reply's signature and sender token are not Choria's to check */
	publish_reply("foreign.example.net", rid, NULL, true, foreign_tok);
	pipeline_publish(&client, "choria.reply.x", CHORIA_MSG_REPLY, 0, 1, 9);
	publish_reply("wrong-hash.example.net", rid, other, true, server_tok);
	publish_reply("garbage-hash.example.net", rid, "####", false, NULL);

	struct adapter_counts n = settle_then_stop(4, 6);
	cr_assert_eq(n.published, 4);
	cr_assert_eq(n.rejected, 2);
	cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", "bad_hash"), 2);

	struct landed *l = stored(4);
	const char *senders[] = {"signed.example.net", "unsigned.example.net",
				 "foreign.example.net"};
	for (size_t i = 0; i < 3; i++) {
		const struct landed *e = find(l, 4, senders[i]);
		char body[160], msg_id[128];
		snprintf(body, sizeof(body), "{\"identity\":\"%s\"}", senders[i]);
		snprintf(msg_id, sizeof(msg_id), "%s:%s", rid, senders[i]);
		cr_assert_str_eq(e->data, body);
		cr_assert_str_eq(e->requestid, rid, "a reply's requestid is its request's id");
		cr_assert_str_eq(e->time, "2026-01-01T00:00:05.123456789Z");
		cr_assert_str_eq(e->msg_id, msg_id);
	}
	find(l, 4, "node-0.example.net");
	landed_free(l, 4);
	free(other);
	free(server_tok);
	free(foreign_tok);
}

/* Of the two messages sent, `landed` is stored and the other is rejected
 * as an untrusted_version. */
static void expect_untrusted_version(const char *landed)
{
	settle_then_stop(1, 2);
	cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", "untrusted_version"), 1);
	expect_stored(&landed, 1);
}

Test(protocol_v2, a_v1_request_without_ca_is_an_untrusted_version)
{
	start_verify_issuers("");
	char *alice_tok = token((struct tok){.holder = &alice});
	publish_v1("v1-node");
	publish_signed("v2-node", alice_tok);
	expect_untrusted_version("v2-node");
	free(alice_tok);
}

Test(protocol_v2, a_v2_request_without_issuers_is_an_untrusted_version)
{
	char extra[600];
	snprintf(extra, sizeof(extra), "security = \"verify\"\n    ca = \"%s\"",
		 test_pki_path("ca.pem"));
	start("request", SUBJECT, extra);
	char *alice_tok = token((struct tok){.holder = &alice});
	publish_signed("v2-node", alice_tok);
	publish_v1("v1-node");
	expect_untrusted_version("v1-node");
	free(alice_tok);
}

/* trusted_signers: any listed key may have issued a token, whatever its ou. */
Test(protocol_v2, trusted_signers_try_each_key_and_ignore_ou)
{
	char extra[600];
	snprintf(extra, sizeof(extra),
		 "security = \"verify\"\n    trusted_signers = {\"%s\", \"%s\"}",
		 foreign_org.pub_hex, org.pub_hex);
	start("request", SUBJECT, extra);
	struct choria_v2_key stranger;
	cr_assert_eq(choria_v2_key_random(&stranger), 0);
	char *other_ou = token((struct tok){.ou = "elsewhere"});
	char *no_ou = token((struct tok){.ou = "-"});
	char *chained = token((struct tok){.chain = &chain});
	char *second = token((struct tok){.issuer = &foreign_org});
	char *strange = token((struct tok){.issuer = &stranger});

	publish_signed("other-ou", other_ou);
	publish_signed("no-ou", no_ou);
	publish_signed("chained", chained);
	publish_signed("first-key", second);
	publish_signed("stranger", strange);
	settle_then_stop(4, 5);
	cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", "untrusted_issuer"), 1);
	const char *senders[] = {"other-ou", "no-ou", "chained", "first-key"};
	expect_stored(senders, 4);
	free(other_ou);
	free(no_ou);
	free(chained);
	free(second);
	free(strange);
}

/* `choria-adapterd -t` on an ingest block with `extra`: the status, and
 * every one of the NULL-terminated `wants` in its output. */
static void check_config(const char *protocol, const char *extra, int status, ...)
{
	char path[700];
	char *out = pipeline_check_conf(dir, protocol, extra, status, path, sizeof(path));
	va_list ap;
	va_start(ap, status);
	for (const char *want; (want = va_arg(ap, const char *));)
		cr_assert_not_null(strstr(out, want), "expected '%s' for [%s] in:\n%s", want, extra,
				   out);
	va_end(ap);
	free(out);
}

Test(protocol_v2, trust_options_and_their_configuration_errors)
{
	char extra[900], bad[300];
	const char *key = org.pub_hex;

	snprintf(extra, sizeof(extra), "security = \"verify\" issuers = {\"choria=%s\"}", key);
	check_config("request", extra, 0, NULL);
	snprintf(extra, sizeof(extra), "security = \"verify\" trusted_signers = {\"%s\", \"%s\"}",
		 key, foreign_org.pub_hex);
	check_config("request", extra, 0, NULL);
	snprintf(extra, sizeof(extra),
		 "security = \"verify\" issuers = {\"choria=%s\"} trusted_signers = {\"%s\"}", key,
		 key);
	check_config(
		"request", extra, 1,
		"ingest: trusted_signers: can only configure one of trusted_signers or issuers",
		NULL);
	/* verify with no trust at all names every option that gives some */
	check_config("request", "security = \"verify\"", 1,
		     "adapter a: ingest: ca: a CA file is needed to verify request signatures "
		     "(protocol v1), or issuers or trusted_signers to verify tokens (protocol v2)",
		     NULL);
	check_config("request", "security = \"verify\" issuers = {\"choria=abcd\"}", 1,
		     "ingest: issuers: 'abcd' is not an ed25519 public key of 64 hex digits", NULL);
	snprintf(extra, sizeof(extra), "security = \"verify\" issuers = {\"%s\"}", key);
	snprintf(bad, sizeof(bad), "ingest: issuers: '%s' is not <name>=<64 hex digits>", key);
	check_config("request", extra, 1, bad, NULL);
	snprintf(extra, sizeof(extra), "security = \"verify\" issuers = {\"=%s\"}", key);
	snprintf(bad, sizeof(bad), "ingest: issuers: '=%s' is not <name>=<64 hex digits>", key);
	check_config("request", extra, 1, bad, NULL);
	snprintf(extra, sizeof(extra),
		 "security = \"verify\" issuers = {\"choria=%s\", \"choria=%s\"}", key,
		 foreign_org.pub_hex);
	check_config("request", extra, 1, "ingest: issuers: the issuer 'choria' is listed twice",
		     NULL);
	snprintf(extra, sizeof(extra), "security = \"verify\" trusted_signers = {\"%.62szz\"}",
		 key);
	snprintf(bad, sizeof(bad),
		 "ingest: trusted_signers: '%.62szz' is not an ed25519 public key of 64 hex digits",
		 key);
	check_config("request", extra, 1, bad, NULL);
	/* replies need no trust; nor does security = none */
	check_config("reply", "security = \"verify\"", 0, NULL);
	check_config("request", "security = \"none\"", 0, NULL);
}

int main(int argc, char **argv)
{
	return test_pki_main(argc, argv);
}
