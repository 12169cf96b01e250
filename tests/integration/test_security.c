/* SPDX-License-Identifier: Apache-2.0 */
/*
 * security = verify through the built daemon and a real nats-server:
 * requests signed at test time with certificates from a PKI made by
 * OpenSSL, replies with right and wrong hashes. Only what passes reaches
 * the JetStream stream; every rejection is counted under its own reason
 * in the daemon's counter line. Also what security = none lets through,
 * and the configuration errors of the security options.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certs.h"
#include "pipeline.h"
#include "tmpdir.h"

static char dir[512];
static struct nats_server server;
static struct js_client client;
static struct daemon_proc daemon_a;

static void setup(void)
{
	pipeline_setup(dir, sizeof(dir), &server, &client, "NODES");
}

static void teardown(void)
{
	pipeline_teardown(dir, &server, &client, &daemon_a);
}

TestSuite(security, .init = setup, .fini = teardown, .timeout = 120);

/* `extra` goes into the ingest block. */
static char *conf_with(const char *protocol, const char *topic, const char *extra)
{
	return pipeline_choria_conf("log_level = \"info\"\n", server.url, protocol, topic, extra);
}

/* Publish a request from `sender`, as `callerid`, signed with `pem`
 * (corrupted if asked), or with the fields given in `s` when sign is off. */
static void publish_signed(const char *sender, const char *callerid, const char *pem, bool corrupt)
{
	struct test_signer signer = {.key = test_pki()->leaf_key, .pem = pem, .corrupt = corrupt};
	struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REQUEST);
	char body[128];
	snprintf(body, sizeof(body), "{\"identity\":\"%s\"}", sender);
	s.sender = sender;
	s.body = body;
	s.callerid = callerid;
	s.sign = test_sign;
	s.sign_arg = &signer;
	pipeline_publish_spec(&client, "choria.discovery", &s);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The senders stored in the stream, sorted, comma-separated. */
static char *stored_senders(uint64_t n)
{
	char **names = calloc(n, sizeof(*names));
	size_t total = 1;
	for (uint64_t seq = 1; seq <= n; seq++) {
		natsMsg *m = js_stream_get(&client, "NODES", seq);
		cr_assert_not_null(m);
		json_t *env =
			json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
		cr_assert_not_null(env);
		names[seq - 1] = strdup(json_string_value(json_object_get(env, "sender")));
		total += strlen(names[seq - 1]) + 1;
		json_decref(env);
		natsMsg_Destroy(m);
	}
	qsort(names, n, sizeof(*names), cmp_str);
	char *out = calloc(1, total);
	for (uint64_t i = 0; i < n; i++) {
		if (i)
			strcat(out, ",");
		strcat(out, names[i]);
		free(names[i]);
	}
	free(names);
	return out;
}

Test(security, only_correctly_signed_requests_reach_the_stream)
{
	char extra[900];
	snprintf(extra, sizeof(extra), "security = \"verify\"\n    ca = \"%s\"",
		 test_pki_path("ca.pem"));
	char *conf = conf_with("request", "choria.discovery", extra);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	cr_assert_gt(daemon_log_count(&daemon_a,
				      "request signers must chain to the 1 CA certificate"),
		     0);

	const struct test_pki *p = test_pki();
	const char *web1 = "choria=web1.example.net";
	/* Accepted: 3 from the node's own certificate, 1 by its alias, 2
	 * from the privileged certificate speaking for other callers. */
	publish_signed("ok-1", web1, p->signer, false);
	publish_signed("ok-2", web1, p->signer, false);
	publish_signed("ok-3", web1, p->signer, false);
	publish_signed("ok-alias", "choria=web1-alias.example.net", p->signer, false);
	publish_signed("ok-priv-1", "choria=web7.example.net", p->privileged, false);
	publish_signed("ok-priv-2", "choria=someone", p->privileged, false);
	/* Rejected, one reason each (two bad signatures). */
	publish_signed("bad-sig", web1, p->signer, true);
	publish_signed("other-ca", web1, p->foreign, false);
	publish_signed("expired", web1, p->expired, false);
	publish_signed("mismatch", "choria=web2.example.net", p->signer, false);
	publish_signed("purpose", web1, p->server_only, false);

	/* A tampered message: the secure layer's message replaced after signing. */
	struct test_signer signer = {.key = p->leaf_key, .pem = p->signer};
	struct choria_msg_spec forged = choria_msg_defaults(CHORIA_MSG_REQUEST);
	forged.sender = "tampered";
	char *text = NULL;
	size_t len, text_len;
	free(choria_msg_build_ex(&forged, &len, &text, &text_len));
	json_t *patch = json_pack("{s:s}", "message", text);
	char *patch_text = json_dumps(patch, JSON_COMPACT);
	struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REQUEST);
	s.sender = "original";
	s.sign = test_sign;
	s.sign_arg = &signer;
	s.secure.patch = patch_text;
	pipeline_publish_spec(&client, "choria.discovery", &s);
	free(patch_text);
	json_decref(patch);
	free(text);

	/* Unsigned registration. */
	s = choria_msg_defaults(CHORIA_MSG_REQUEST);
	s.sender = "insecure";
	pipeline_publish_spec(&client, "choria.discovery", &s);
	/* A pubcert that is no certificate. */
	s.sender = "no-cert";
	s.signature = "c2lnbmF0dXJl";
	pipeline_publish_spec(&client, "choria.discovery", &s);

	cr_assert(js_stream_wait_count(&client, "NODES", 6, 15000), "the good ones arrive");
	/* All 14 taken in and settled: nothing more is on its way. */
	pipeline_counts_once_settled(&daemon_a, "node_data", 14, 15000);
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	cr_assert_eq(js_stream_count(&client, "NODES"), 6, "nothing rejected is published");
	char *senders = stored_senders(6);
	cr_assert_str_eq(senders, "ok-1,ok-2,ok-3,ok-alias,ok-priv-1,ok-priv-2");
	free(senders);

	struct adapter_counts n;
	cr_assert(pipeline_counts(&daemon_a, "node_data", &n));
	cr_assert_eq(n.received, 14);
	cr_assert_eq(n.published, 6);
	cr_assert_eq(n.rejected, 8);
	cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", "bad_signature"), 2);
	cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", "untrusted_cert"), 1);
	cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", "cert_expired"), 1);
	cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", "caller_mismatch"), 1);
	cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", "cert_purpose"), 1);
	cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", "insecure"), 1);
	cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", "bad_cert"), 1);
	/* The first rejection is logged with its reason and detail. */
	cr_assert_gt(daemon_log_count(&daemon_a, "rejected a message ("), 0);
}

/* A self-signed certificate nobody has sent before, for the fleet's key. */
static char *untrusted_pem(int i)
{
	char cn[64];
	snprintf(cn, sizeof(cn), "flood%d.example.net", i);
	struct test_cert_spec spec = {.cn = cn, .from = -60, .to = 3600, .eku = "clientAuth"};
	X509 *x = test_cert_make(&spec, test_pki()->leaf_key, NULL, NULL);
	cr_assert_not_null(x);
	char *pem = test_cert_pem(x);
	X509_free(x);
	return pem;
}

Test(security, a_flood_of_untrusted_certificates_costs_no_valid_message)
{
	/* A cache with room for the fleet's two certificates and no more,
	 * and ten new untrusted certificates for every valid message. */
	char extra[900];
	snprintf(extra, sizeof(extra),
		 "security = \"verify\"\n    ca = \"%s\"\n    cert_cache_size = 2",
		 test_pki_path("ca.pem"));
	char *conf = conf_with("request", "choria.discovery", extra);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);

	const struct test_pki *p = test_pki();
	const char *fleet[] = {p->signer, p->privileged};
	const int valid = 40, flood = 10;
	for (int i = 0; i < valid; i++) {
		char sender[64], rid[33];
		snprintf(sender, sizeof(sender), "node%d.example.net", i);
		pipeline_request_id(rid, 31, i);
		struct test_signer signer = {.key = p->leaf_key, .pem = fleet[i % 2]};
		struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REQUEST);
		s.sender = sender;
		s.request_id = rid;
		s.callerid = "choria=web1.example.net";
		s.sign = test_sign;
		s.sign_arg = &signer;
		pipeline_publish_spec(&client, "choria.discovery", &s);
		for (int k = 0; k < flood; k++) {
			char *pem = untrusted_pem(i * flood + k);
			struct test_signer bad = {.key = p->leaf_key, .pem = pem};
			s.sender = "intruder.example.net";
			s.sign_arg = &bad;
			pipeline_publish_spec(&client, "choria.discovery", &s);
			free(pem);
		}
	}
	cr_assert(js_stream_wait_count(&client, "NODES", (uint64_t)valid, 60000));
	struct adapter_counts n =
		pipeline_counts_once_settled(&daemon_a, "node_data",
					     (uint64_t)(valid * (flood + 1)), 60000);
	cr_assert_eq(n.published, (uint64_t)valid, "no valid message is lost");
	cr_assert_eq(n.rejected, (uint64_t)(valid * flood));
	cr_assert_eq(n.dropped + n.lost, 0);
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", "untrusted_cert"),
		     (uint64_t)(valid * flood));
	cr_assert_eq(js_stream_count(&client, "NODES"), (uint64_t)valid);
}

Test(security, allowed_certs_and_privileged_certs_come_from_the_configuration)
{
	char extra[1200];
	snprintf(extra, sizeof(extra),
		 "security = \"verify\"\n    ca = \"%s\"\n"
		 "    allowed_certs = {'^web1\\.example\\.net$', \"^admin\\\\.\"}\n"
		 "    privileged_certs = {\"^web1[.]example[.]net$\"}\n"
		 "    cert_cache_size = 2",
		 test_pki_path("ca.pem"));
	char *conf = conf_with("request", "choria.discovery", extra);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	cr_assert_gt(daemon_log_count(&daemon_a,
				      "1 privileged and 2 allowed patterns; 2 certificates cached"),
		     0, "the lists and the cache size reach the verifier");

	/* The configured lists replace Choria's defaults: web1 may speak for
	 * anyone, admin.privileged.choria only for itself. */
	const struct test_pki *p = test_pki();
	publish_signed("ok-1", "choria=web1.example.net", p->signer, false);
	publish_signed("ok-priv", "choria=anyone", p->signer, false);
	publish_signed("not-privileged", "choria=anyone", p->privileged, false);
	publish_signed("not-allowed", "choria=web2.example.net", p->san_only, false);
	publish_signed("ok-2", "choria=web1.example.net", p->signer, false);
	cr_assert(js_stream_wait_count(&client, "NODES", 3, 15000));
	pipeline_counts_once_settled(&daemon_a, "node_data", 5, 15000);
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	char *senders = stored_senders(3);
	cr_assert_str_eq(senders, "ok-1,ok-2,ok-priv");
	free(senders);
	cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", "cert_not_allowed"), 1);
	cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", "caller_mismatch"), 1);
	cr_assert_eq(js_stream_count(&client, "NODES"), 3);
}

Test(security, replies_with_a_wrong_hash_are_rejected)
{
	char *conf = conf_with("reply", "choria.reply.>", "security = \"verify\"");
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	cr_assert_gt(daemon_log_count(&daemon_a, "every reply's hash is checked"), 0);

	pipeline_publish(&client, "choria.reply.x", CHORIA_MSG_REPLY, 0, 5, 4);
	struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REPLY);
	char *wrong = choria_msg_sha256_base64("another message", 15);
	s.sender = "wrong-hash";
	s.hash = wrong;
	pipeline_publish_spec(&client, "choria.reply.x", &s);
	s.sender = "not-base64-hash";
	s.hash = "####";
	pipeline_publish_spec(&client, "choria.reply.x", &s);
	free(wrong);

	cr_assert(js_stream_wait_count(&client, "NODES", 5, 15000));
	pipeline_counts_once_settled(&daemon_a, "node_data", 7, 15000);
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	cr_assert_eq(js_stream_count(&client, "NODES"), 5);
	struct adapter_counts n;
	cr_assert(pipeline_counts(&daemon_a, "node_data", &n));
	cr_assert_eq(n.received, 7);
	cr_assert_eq(n.rejected, 2);
	cr_assert_eq(pipeline_rejected_for(&daemon_a, "node_data", "bad_hash"), 2);
	cr_assert_gt(daemon_log_count(&daemon_a, "rejected a message (bad_hash)"), 0);
}

Test(security, security_none_lets_well_formed_but_wrongly_signed_messages_through)
{
	char *conf = conf_with("request", "choria.discovery", "security = \"none\"");
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	cr_assert_eq(
		daemon_log_count(&daemon_a,
				 "security = none: messages on choria.discovery are not verified"),
		1, "said once at start-up");

	const struct test_pki *p = test_pki();
	publish_signed("bad-sig", "choria=web1.example.net", p->signer, true);
	publish_signed("other-ca", "choria=web1.example.net", p->foreign, false);
	publish_signed("mismatch", "choria=nobody", p->signer, false);
	struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REQUEST);
	s.sender = "insecure";
	pipeline_publish_spec(&client, "choria.discovery", &s);

	cr_assert(js_stream_wait_count(&client, "NODES", 4, 15000));
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	char *senders = stored_senders(4);
	cr_assert_str_eq(senders, "bad-sig,insecure,mismatch,other-ca");
	free(senders);
	struct adapter_counts n;
	cr_assert(pipeline_counts(&daemon_a, "node_data", &n));
	cr_assert_eq(n.rejected, 0);
	cr_assert_eq(daemon_log_count(&daemon_a, "are not verified"), 1, "and only once");
}

/* An ed25519 public key (the worked example's organisation issuer). */
#define PUB_KEY "7352415b7fe1a5aac5648d09ff17b6a1fd6320ceba4dc01b662bc8245d9a6a96"

/* `choria-adapterd -t` on an ingest block with `extra`; the output must
 * hold `want` (a leading %s stands for the config file) and the status be
 * `status`. */
static void check_config(const char *protocol, const char *extra, int status, const char *want)
{
	char path[700], expect[2000];
	char *out = pipeline_check_conf(dir, protocol, extra, status, path, sizeof(path));
	if (strncmp(want, "%s", 2) == 0)
		snprintf(expect, sizeof(expect), "%s%s", path, want + 2);
	else
		snprintf(expect, sizeof(expect), "%s", want);
	cr_assert_not_null(strstr(out, expect), "expected '%s' in:\n%s", expect, out);
	free(out);
}

Test(security, verify_without_a_readable_ca_is_a_configuration_error)
{
	check_config(
		"request", "", 1,
		"%s:2: adapter a: ingest: ca: a CA file is needed to verify request signatures");
	check_config("request", "security = \"verify\" ca = \"/nonexistent/ca.pem\"", 1,
		     "%s:3: adapter a: ingest: ca: cannot read /nonexistent/ca.pem");
	char bad[900];
	snprintf(bad, sizeof(bad), "ca = \"%s\"", test_pki_path("leaf.key"));
	check_config("request", bad, 1, "holds no PEM certificate");
	/* Replies need no CA; requests unverified need none either. */
	check_config("reply", "security = \"verify\"", 0, "security verify");
	check_config("request", "security = \"none\"", 0, "security none");
}

Test(security, bad_patterns_and_cache_sizes_are_configuration_errors)
{
	char extra[1200];
	snprintf(extra, sizeof(extra), "ca = \"%s\" privileged_certs = {\"(\"}",
		 test_pki_path("ca.pem"));
	check_config(
		"request", extra, 1,
		"%s:3: adapter a: ingest: privileged_certs: '(' is not a valid regular expression");
	snprintf(extra, sizeof(extra), "ca = \"%s\" allowed_certs = {\"ok\", \"[b-a]\"}",
		 test_pki_path("ca.pem"));
	check_config(
		"request", extra, 1,
		"%s:3: adapter a: ingest: allowed_certs: '[b-a]' is not a valid regular expression");
	snprintf(extra, sizeof(extra), "ca = \"%s\" cert_cache_size = 0", test_pki_path("ca.pem"));
	check_config("request", extra, 1, "cert_cache_size");
	snprintf(extra, sizeof(extra), "ca = \"%s\" cert_cache_size = 50", test_pki_path("ca.pem"));
	check_config("request", extra, 0, "security verify against");
}

/* The v2 trust options are checked on every adapter of the ingest, not
 * only on one that verifies requests. */
Test(security, trust_options_are_checked_on_every_adapter)
{
	static const char *const setups[][2] = {{"reply", "security = \"verify\""},
						{"reply", "security = \"none\""},
						{"request", "security = \"none\""}};
	char extra[1200];
	for (size_t i = 0; i < sizeof(setups) / sizeof(setups[0]); i++) {
		const char *proto = setups[i][0], *sec = setups[i][1];
		snprintf(extra, sizeof(extra),
			 "%s issuers = {\"choria=%s\"} trusted_signers = {\"%s\"}", sec, PUB_KEY,
			 PUB_KEY);
		check_config(proto, extra, 1,
			     "trusted_signers: can only configure one of trusted_signers or "
			     "issuers");
		snprintf(extra, sizeof(extra), "%s issuers = {\"choria=7352415b\"}", sec);
		check_config(proto, extra, 1,
			     "issuers: '7352415b' is not an ed25519 public key of 64 hex digits");
		snprintf(extra, sizeof(extra), "%s trusted_signers = {\"%.63sz\"}", sec, PUB_KEY);
		check_config(proto, extra, 1, "ingest: trusted_signers: '");
		snprintf(extra, sizeof(extra), "%s issuers = {\"choria=%s\", \"choria=%s\"}", sec,
			 PUB_KEY, PUB_KEY);
		check_config(proto, extra, 1, "issuers: the issuer 'choria' is listed twice");
		snprintf(extra, sizeof(extra), "%s issuers = {\"choria=%s\"}", sec, PUB_KEY);
		check_config(proto, extra, 0, "");
	}
}

int main(int argc, char **argv)
{
	return test_pki_main(argc, argv);
}
