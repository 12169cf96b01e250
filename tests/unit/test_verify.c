/* SPDX-License-Identifier: Apache-2.0 */
/*
 * security = verify without NATS: real Choria messages signed at test time
 * with keys and certificates from a PKI made by OpenSSL (certs.h), decoded
 * by protocol.c and checked by verify.c; the certificate cache's hits,
 * expiry, bounds and thread safety.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "certs.h"
#include "choria_msg.h"
#include "protocol.h"
#include "tmpdir.h"
#include "verify.h"

static const char *const privileged_defaults[] = {CHORIA_PRIVILEGED_DEFAULTS};

struct errors {
	char text[2048];
	unsigned n;
};

static void collect(void *arg, const char *option, const char *message)
{
	struct errors *e = arg;
	size_t n = strlen(e->text);
	snprintf(e->text + n, sizeof(e->text) - n, "%s: %s\n", option, message);
	e->n++;
}

static struct choria_verifier *verifier_with(const char *ca_file, const char *const *allowed,
					     unsigned n_allowed, size_t cache)
{
	struct choria_verify_opts o = {.ca_file = ca_file,
				       .privileged = privileged_defaults,
				       .n_privileged = 2,
				       .allowed = allowed,
				       .n_allowed = n_allowed,
				       .cache_size = cache};
	struct choria_verifier *v = NULL;
	struct errors e = {0};
	cr_assert_eq(choria_verifier_new(&v, &o, collect, &e, NULL), 0, "%s", e.text);
	return v;
}

static struct choria_verifier *verifier(void)
{
	return verifier_with(test_pki_path("ca.pem"), NULL, 0, 0);
}

/* A request from web1.example.net signed with `pem`'s key. */
static char *signed_request(const char *pem, const char *callerid, bool corrupt, size_t *len)
{
	struct test_signer signer = {.key = test_pki()->leaf_key, .pem = pem, .corrupt = corrupt};
	struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REQUEST);
	s.sign = test_sign;
	s.sign_arg = &signer;
	if (callerid)
		s.callerid = callerid;
	char *wire = choria_msg_build(&s, len);
	cr_assert_not_null(wire);
	return wire;
}

static void decode(struct choria_decoded *d, enum choria_kind kind, const char *wire, size_t len)
{
	const char *reason = NULL;
	char detail[256];
	cr_assert_eq(choria_decode(d, kind, wire, len, &reason, detail, sizeof(detail)), 0,
		     "decodes: %s %s", reason ? reason : "", detail);
}

/* Verify a request; returns the reason label, or "ok". */
static const char *check_at(struct choria_verifier *v, const char *wire, size_t len, int64_t now,
			    char *detail, size_t detail_len)
{
	struct choria_decoded d;
	const char *reason = NULL;
	decode(&d, CHORIA_REQUEST, wire, len);
	/* Alternate between a scratch of the caller's and none. */
	static struct choria_verify_scratch *scratch;
	static unsigned calls;
	if (!scratch)
		cr_assert_eq(choria_verify_scratch_new(&scratch), 0);
	int rc = choria_verify_request(v, calls++ % 2 ? scratch : NULL, &d, now, &reason, detail,
				       detail_len);
	choria_decoded_clear(&d);
	if (rc == 0) {
		cr_assert_null(reason);
		return "ok";
	}
	cr_assert_eq(rc, -EBADMSG, "rc %d", rc);
	cr_assert_not_null(reason);
	return reason;
}

static const char *check(struct choria_verifier *v, const char *wire, size_t len)
{
	char detail[512];
	return check_at(v, wire, len, (int64_t)time(NULL), detail, sizeof(detail));
}

/* Sign with `pem` as `callerid`, verify with the default verifier. */
static void expect(const char *pem, const char *callerid, bool corrupt, const char *want)
{
	struct choria_verifier *v = verifier();
	char detail[512] = "";
	size_t len;
	char *wire = signed_request(pem, callerid, corrupt, &len);
	const char *got = check_at(v, wire, len, (int64_t)time(NULL), detail, sizeof(detail));
	cr_assert_str_eq(got, want, "detail: %s", detail);
	for (const char *p = detail; *p; p++)
		cr_assert(*p >= 0x20 && *p < 0x7f, "detail is printable ASCII: %s", detail);
	free(wire);
	choria_verifier_free(v);
}

TestSuite(verify, .timeout = 60);

Test(verify, a_request_signed_by_a_certificate_of_the_ca_passes)
{
	expect(test_pki()->signer, NULL, false, "ok");
}

Test(verify, the_caller_may_be_any_dns_name_of_the_certificate)
{
	expect(test_pki()->signer, "choria=web1-alias.example.net", false, "ok");
	expect(test_pki()->san_only, "choria=web2.example.net", false, "ok");
	expect(test_pki()->signer, "choria=WEB1.Example.NET", false, "ok");
}

Test(verify, a_caller_that_is_not_a_name_of_the_certificate_is_rejected)
{
	expect(test_pki()->signer, "choria=web2.example.net", false, "caller_mismatch");
	expect(test_pki()->signer, "choria=example.net", false, "caller_mismatch");
	/* The name ends where the pattern stops matching, as in Choria. */
	expect(test_pki()->signer, "choria=web1.example.net.evil", false, "caller_mismatch");
}

Test(verify, a_privileged_certificate_may_sign_for_any_caller)
{
	expect(test_pki()->privileged, "choria=web1.example.net", false, "ok");
	expect(test_pki()->privileged, "choria=someone.else", false, "ok");
}

Test(verify, without_privileged_patterns_the_privileged_certificate_is_an_ordinary_one)
{
	struct choria_verify_opts o = {.ca_file = test_pki_path("ca.pem")};
	struct choria_verifier *v = NULL;
	cr_assert_eq(choria_verifier_new(&v, &o, NULL, NULL, NULL), 0);
	size_t len;
	char *wire = signed_request(test_pki()->privileged, "choria=web1.example.net", false, &len);
	cr_assert_str_eq(check(v, wire, len), "caller_mismatch");
	free(wire);
	wire = signed_request(test_pki()->privileged, "choria=admin.privileged.choria", false,
			      &len);
	cr_assert_str_eq(check(v, wire, len), "ok");
	free(wire);
	choria_verifier_free(v);
}

Test(verify, a_tampered_message_is_rejected)
{
	/* Sign one request, then swap the secure layer's message for another
	 * well-formed request: only the signature can tell. */
	struct choria_msg_spec other = choria_msg_defaults(CHORIA_MSG_REQUEST);
	other.body = "{\"identity\":\"web1.example.net\",\"injected\":true}";
	char *text = NULL;
	size_t text_len, len;
	char *unused = choria_msg_build_ex(&other, &len, &text, &text_len);
	free(unused);
	json_t *patch = json_pack("{s:s}", "message", text);
	char *patch_text = json_dumps(patch, JSON_COMPACT);

	struct test_signer signer = {.key = test_pki()->leaf_key, .pem = test_pki()->signer};
	struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REQUEST);
	s.sign = test_sign;
	s.sign_arg = &signer;
	s.secure.patch = patch_text;
	char *wire = choria_msg_build(&s, &len);
	cr_assert_not_null(wire);

	struct choria_verifier *v = verifier();
	struct choria_decoded d;
	decode(&d, CHORIA_REQUEST, wire, len);
	cr_assert_not_null(strstr(d.body, "injected"), "the tampered body is what decodes");
	choria_decoded_clear(&d);
	cr_assert_str_eq(check(v, wire, len), "bad_signature");
	choria_verifier_free(v);
	free(wire);
	free(patch_text);
	json_decref(patch);
	free(text);
}

Test(verify, a_tampered_signature_is_rejected)
{
	expect(test_pki()->signer, NULL, true, "bad_signature");
}

Test(verify, a_signature_that_is_not_base64_is_rejected)
{
	struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REQUEST);
	s.pubcert = test_pki()->signer;
	const char *bad[] = {"not base64!", "QUJD", "QUJDRA=", "QU=D", ""};
	struct choria_verifier *v = verifier();
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		s.signature = bad[i];
		size_t len;
		char *wire = choria_msg_build(&s, &len);
		struct choria_decoded d;
		const char *reason = NULL;
		int rc = choria_decode(&d, CHORIA_REQUEST, wire, len, &reason, NULL, 0);
		if (*bad[i]) {
			/* Well formed, so the verification is what refuses it. */
			cr_assert_eq(rc, 0, "signature '%s': %s", bad[i], reason);
			cr_assert_str_eq(check(v, wire, len), "bad_signature", "signature '%s'",
					 bad[i]);
			choria_decoded_clear(&d);
		} else {
			cr_assert_neq(rc, 0);
			cr_assert_str_eq(reason, "bad_secure", "an empty signature is malformed");
		}
		free(wire);
	}
	choria_verifier_free(v);
}

Test(verify, a_certificate_from_another_ca_is_untrusted)
{
	expect(test_pki()->foreign, NULL, false, "untrusted_cert");
}

Test(verify, an_expired_certificate_is_rejected)
{
	expect(test_pki()->expired, NULL, false, "cert_expired");
}

Test(verify, a_certificate_not_yet_valid_is_rejected)
{
	expect(test_pki()->not_yet, NULL, false, "cert_not_yet_valid");
}

Test(verify, a_certificate_for_servers_only_is_rejected_one_without_usage_passes)
{
	expect(test_pki()->server_only, NULL, false, "cert_purpose");
	expect(test_pki()->no_eku, NULL, false, "ok");
}

Test(verify, intermediates_sent_with_the_certificate_complete_the_chain)
{
	expect(test_pki()->chained, "choria=web3.example.net", false, "ok");
	/* The signer alone does not reach the CA. */
	char *end = strstr(test_pki()->chained, "-----END CERTIFICATE-----\n");
	cr_assert_not_null(end);
	char *alone = strndup(test_pki()->chained, (size_t)(end - test_pki()->chained) + 26);
	expect(alone, "choria=web3.example.net", false, "untrusted_cert");
	free(alone);
}

Test(verify, every_certificate_in_the_ca_file_is_a_trust_anchor)
{
	struct choria_verifier *v = verifier_with(test_pki_path("inter.pem"), NULL, 0, 0);
	char *end = strstr(test_pki()->chained, "-----END CERTIFICATE-----\n");
	char *alone = strndup(test_pki()->chained, (size_t)(end - test_pki()->chained) + 26);
	size_t len;
	char *wire = signed_request(alone, "choria=web3.example.net", false, &len);
	cr_assert_str_eq(check(v, wire, len), "ok");
	free(wire);
	wire = signed_request(test_pki()->signer, NULL, false, &len);
	cr_assert_str_eq(check(v, wire, len), "untrusted_cert", "the root is not in this CA file");
	free(wire);
	free(alone);
	choria_verifier_free(v);
}

#define DAY (24L * 3600)

/* Two copies of one CA (same name and key, the validity of each given in
 * seconds from now) and a client certificate web1.example.net of
 * leaf_key issued by that key, valid from a month ago for a year. */
struct renewed_ca {
	char dir[512];
	char *first, *second, *leaf;
};

static void renewed_ca_make(struct renewed_ca *r, long from1, long to1, long from2, long to2)
{
	cr_assert_eq(tmpdir_make(r->dir, sizeof(r->dir)), 0);
	EVP_PKEY *key = test_key_new(2048);
	cr_assert_not_null(key);
	struct test_cert_spec ca = {.cn = "Renewed CA", .ca = true, .from = from1, .to = to1};
	X509 *one = test_cert_make(&ca, key, NULL, NULL);
	ca.from = from2;
	ca.to = to2;
	X509 *two = test_cert_make(&ca, key, NULL, NULL);
	static const char *const dns[] = {"web1.example.net", NULL};
	struct test_cert_spec leaf = {.cn = "web1.example.net",
				      .dns = dns,
				      .eku = "clientAuth",
				      .from = -30 * DAY,
				      .to = 365 * DAY};
	X509 *l = test_cert_make(&leaf, test_pki()->leaf_key, two, key);
	cr_assert(one && two && l);
	r->first = test_cert_pem(one);
	r->second = test_cert_pem(two);
	r->leaf = test_cert_pem(l);
	X509_free(one);
	X509_free(two);
	X509_free(l);
	EVP_PKEY_free(key);
}

/* A verifier whose CA file holds a then b. */
static struct choria_verifier *renewed_ca_verifier(struct renewed_ca *r, const char *a,
						   const char *b)
{
	char *both = NULL, path[700];
	cr_assert(asprintf(&both, "%s%s", a, b) > 0);
	cr_assert_eq(tmpdir_write(r->dir, "ca.pem", both, path, sizeof(path)), 0);
	free(both);
	return verifier_with(path, NULL, 0, 0);
}

static void renewed_ca_free(struct renewed_ca *r)
{
	free(r->first);
	free(r->second);
	free(r->leaf);
	tmpdir_remove(r->dir);
}

Test(verify, a_renewed_ca_beside_the_expired_copy_it_replaces_is_chosen_in_either_order)
{
	struct renewed_ca r;
	renewed_ca_make(&r, -3650 * DAY, -DAY, -700 * DAY, 3650 * DAY);
	const char *order[2][2] = {{r.first, r.second}, {r.second, r.first}};
	for (int i = 0; i < 2; i++) {
		struct choria_verifier *v = renewed_ca_verifier(&r, order[i][0], order[i][1]);
		char detail[512] = "";
		size_t len;
		char *wire = signed_request(r.leaf, NULL, false, &len);
		cr_assert_str_eq(check_at(v, wire, len, (int64_t)time(NULL), detail,
					  sizeof(detail)),
				 "ok", "%s the expired copy: %s", i ? "after" : "before", detail);
		free(wire);
		choria_verifier_free(v);
	}
	renewed_ca_free(&r);
}

Test(verify, a_cached_chain_that_expires_is_chosen_again_from_a_renewed_ca)
{
	/* Ten days ago only the first copy was valid; in two days only the
	 * second will be. */
	struct renewed_ca r;
	renewed_ca_make(&r, -20 * DAY, DAY, -DAY, 3650 * DAY);
	struct choria_verifier *v = renewed_ca_verifier(&r, r.first, r.second);
	char detail[512] = "";
	size_t len;
	char *wire = signed_request(r.leaf, NULL, false, &len);
	int64_t now = (int64_t)time(NULL);
	cr_assert_str_eq(check_at(v, wire, len, now - 10 * DAY, detail, sizeof(detail)), "ok", "%s",
			 detail);
	cr_assert_str_eq(check_at(v, wire, len, now + 2 * DAY, detail, sizeof(detail)), "ok",
			 "the chain through the expired copy is not kept: %s", detail);
	struct certcache_stats st;
	choria_verifier_cache_stats(v, &st);
	cr_assert_eq(st.inserts, 2, "chosen again once");
	cr_assert_eq(st.entries, 1);
	free(wire);
	choria_verifier_free(v);
	renewed_ca_free(&r);
}

Test(verify, allowed_certs_limits_the_signers)
{
	const char *const allowed[] = {"^web1\\.example\\.net$"};
	struct choria_verifier *v = verifier_with(test_pki_path("ca.pem"), allowed, 1, 0);
	size_t len;
	char *wire = signed_request(test_pki()->signer, NULL, false, &len);
	cr_assert_str_eq(check(v, wire, len), "ok");
	free(wire);
	wire = signed_request(test_pki()->san_only, "choria=web2.example.net", false, &len);
	cr_assert_str_eq(check(v, wire, len), "cert_not_allowed");
	free(wire);
	wire = signed_request(test_pki()->privileged, NULL, false, &len);
	cr_assert_str_eq(check(v, wire, len), "cert_not_allowed",
			 "privileged signers must be allowed too");
	free(wire);
	choria_verifier_free(v);
}

Test(verify, unsigned_registration_is_rejected_as_insecure)
{
	struct choria_verifier *v = verifier();
	const char *markers[] = {"insecure registration", "insecure"};
	for (size_t i = 0; i < 2; i++) {
		struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REQUEST);
		char *sig = choria_msg_base64(markers[i], strlen(markers[i]));
		s.signature = sig;
		s.pubcert = test_pki()->signer;
		size_t len;
		char *wire = choria_msg_build(&s, &len);
		cr_assert_str_eq(check(v, wire, len), "insecure");
		free(wire);
		free(sig);
	}
	choria_verifier_free(v);
}

Test(verify, a_pubcert_that_is_not_a_certificate_is_bad_cert)
{
	struct choria_verifier *v = verifier();
	struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REQUEST);
	s.signature = "c2lnbmF0dXJl";
	const char *pems[] = {"not a certificate", /* default placeholder: PEM armour, junk DER */
			      NULL};
	for (size_t i = 0; i < 2; i++) {
		s.pubcert = pems[i];
		size_t len;
		char *wire = choria_msg_build(&s, &len);
		cr_assert_str_eq(check(v, wire, len), "bad_cert");
		free(wire);
	}
	choria_verifier_free(v);
}

Test(verify, a_callerid_without_a_name_is_rejected)
{
	expect(test_pki()->signer, "choria=", false, "bad_callerid");
	expect(test_pki()->signer, "Choria=web1.example.net", false, "bad_callerid");
	expect(test_pki()->signer, "web1.example.net", false, "bad_callerid");
}

Test(verify, callerid_names_are_read_as_choria_reads_them)
{
	const char *name = NULL;
	struct {
		const char *in, *want;
	} cases[] = {
		{"choria=web1.example.net", "web1.example.net"},
		{"user=bob_smith-2", "bob_smith-2"},
		{"choria=web1 trailing", "web1"},
		{"choria=a/b", "a"},
		{"choria=", NULL},
		{"=web1", NULL},
		{"Choria=web1", NULL},
		{"choria1=web1", NULL},
		{"choria=\xc3\xa9t\xc3\xa9", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		size_t n = choria_callerid_name(cases[i].in, strlen(cases[i].in), &name);
		if (!cases[i].want) {
			cr_assert_eq(n, 0, "%s has no name", cases[i].in);
			continue;
		}
		cr_assert_eq(n, strlen(cases[i].want), "%s", cases[i].in);
		cr_assert_eq(strncmp(name, cases[i].want, n), 0, "%s", cases[i].in);
	}
}

/* ------------------------------------------------------------- replies */

static const char *check_reply(const struct choria_msg_spec *s)
{
	size_t len;
	char *wire = choria_msg_build(s, &len);
	struct choria_decoded d;
	const char *reason = NULL;
	char detail[256];
	decode(&d, CHORIA_REPLY, wire, len);
	int rc = choria_verify_reply(&d, &reason, detail, sizeof(detail));
	choria_decoded_clear(&d);
	free(wire);
	return rc == 0 ? "ok" : reason;
}

Test(verify, a_reply_whose_hash_matches_its_message_passes)
{
	struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REPLY);
	cr_assert_str_eq(check_reply(&s), "ok", "escaped <, >, & and U+2028 hash as decoded");
	s.go_escapes = false;
	s.ensure_ascii = true;
	cr_assert_str_eq(check_reply(&s), "ok", "whatever the escaping on the wire");
}

Test(verify, a_reply_with_a_wrong_hash_is_rejected)
{
	struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REPLY);
	char *other = choria_msg_sha256_base64("something else", 14);
	s.hash = other;
	cr_assert_str_eq(check_reply(&s), "bad_hash");
	free(other);
	s.hash = "not a hash";
	cr_assert_str_eq(check_reply(&s), "bad_hash");
}

Test(verify, a_reply_hash_must_be_canonical_base64)
{
	/* The right digest without its padding is still not the hash. */
	struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REPLY);
	char *text = NULL;
	size_t len, text_len;
	free(choria_msg_build_ex(&s, &len, &text, &text_len));
	char *hash = choria_msg_sha256_base64(text, text_len);
	cr_assert_eq(hash[43], '=');
	hash[43] = '\0';
	s.hash = hash;
	cr_assert_str_eq(check_reply(&s), "bad_hash");
	free(hash);
	free(text);
}

/* --------------------------------------------------------------- setup */

Test(verify, configuration_problems_name_their_option)
{
	const char *const bad_re[] = {"(unclosed", "fine$"};
	const char *const bad_allowed[] = {"[z-a]"};
	struct choria_verify_opts o = {.ca_file = "/nonexistent/ca.pem",
				       .privileged = bad_re,
				       .n_privileged = 2,
				       .allowed = bad_allowed,
				       .n_allowed = 1};
	struct choria_verifier *v = NULL;
	struct errors e = {0};
	cr_assert_eq(choria_verifier_new(&v, &o, collect, &e, NULL), -EINVAL);
	cr_assert_null(v);
	cr_assert_eq(e.n, 3, "every problem is reported: %s", e.text);
	cr_assert_not_null(strstr(e.text, "ca: cannot read /nonexistent/ca.pem: No such file"),
			   "%s", e.text);
	cr_assert_not_null(
		strstr(e.text, "privileged_certs: '(unclosed' is not a valid regular expression"),
		"%s", e.text);
	cr_assert_not_null(strstr(e.text, "allowed_certs: '[z-a]' is not a valid"), "%s", e.text);
}

Test(verify, a_ca_file_without_certificates_is_refused)
{
	char dir[512], path[700];
	cr_assert_eq(tmpdir_make(dir, sizeof(dir)), 0);
	cr_assert_eq(tmpdir_write(dir, "ca.pem", "just text\n", path, sizeof(path)), 0);
	struct choria_verify_opts o = {.ca_file = path};
	struct choria_verifier *v = NULL;
	struct errors e = {0};
	cr_assert_eq(choria_verifier_new(&v, &o, collect, &e, NULL), -EINVAL);
	cr_assert_not_null(strstr(e.text, "holds no PEM certificate"), "%s", e.text);

	/* A good certificate followed by a broken one. */
	char *text = NULL;
	cr_assert(asprintf(&text,
			   "%s-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
			   test_pki()->ca) > 0);
	cr_assert_eq(tmpdir_write(dir, "ca.pem", text, path, sizeof(path)), 0);
	memset(&e, 0, sizeof(e));
	cr_assert_eq(choria_verifier_new(&v, &o, collect, &e, NULL), -EINVAL);
	cr_assert_not_null(strstr(e.text, "certificate 2 cannot be read"), "%s", e.text);

	o.ca_file = NULL;
	memset(&e, 0, sizeof(e));
	cr_assert_eq(choria_verifier_new(&v, &o, collect, &e, NULL), -EINVAL);
	cr_assert_not_null(strstr(e.text, "ca: a CA file is needed"), "%s", e.text);

	unsigned n = 0;
	free(text);
	cr_assert(asprintf(&text, "%s%s", test_pki()->ca, test_pki()->ca2) > 0);
	cr_assert_eq(tmpdir_write(dir, "both.pem", text, path, sizeof(path)), 0);
	o.ca_file = path;
	cr_assert_eq(choria_verifier_new(&v, &o, NULL, NULL, &n), 0);
	cr_assert_eq(n, 2);
	size_t len;
	char *wire = signed_request(test_pki()->foreign, NULL, false, &len);
	cr_assert_str_eq(check(v, wire, len), "ok", "both CAs are trusted");
	free(wire);
	choria_verifier_free(v);
	free(text);
	tmpdir_remove(dir);
}

/* --------------------------------------------------------------- cache */

Test(verify, a_certificate_is_checked_once_then_served_from_the_cache)
{
	struct choria_verifier *v = verifier();
	struct certcache_stats st;
	size_t len;
	char *wire = signed_request(test_pki()->signer, NULL, false, &len);
	char *bad = signed_request(test_pki()->foreign, NULL, false, &len);
	size_t bad_len = strlen(bad);
	len = strlen(wire);
	for (int i = 0; i < 5; i++) {
		cr_assert_str_eq(check(v, wire, len), "ok");
		cr_assert_str_eq(check(v, bad, bad_len), "untrusted_cert",
				 "a cached rejection stays a rejection");
	}
	choria_verifier_cache_stats(v, &st);
	cr_assert_eq(st.misses, 2);
	cr_assert_eq(st.hits, 8);
	cr_assert_eq(st.entries, 1);
	cr_assert_eq(st.capacity, CHORIA_CERT_CACHE_DEFAULT);
	cr_assert_eq(st.rejected_entries, 1, "the rejection is kept apart");
	cr_assert_eq(st.rejected_capacity, CHORIA_CERT_CACHE_DEFAULT / 4);
	free(wire);
	free(bad);
	choria_verifier_free(v);
}

Test(verify, a_cached_certificate_still_expires)
{
	struct choria_verifier *v = verifier();
	char detail[512];
	size_t len;
	char *wire = signed_request(test_pki()->signer, NULL, false, &len);
	int64_t now = (int64_t)time(NULL);
	cr_assert_str_eq(check_at(v, wire, len, now, detail, sizeof(detail)), "ok");
	cr_assert_str_eq(check_at(v, wire, len, now + 400 * 24 * 3600, detail, sizeof(detail)),
			 "cert_expired", "%s", detail);
	cr_assert_str_eq(check_at(v, wire, len, now - 2 * 24 * 3600, detail, sizeof(detail)),
			 "cert_not_yet_valid", "%s", detail);
	/* The CA's own end counts too: it is valid for ten years. */
	cr_assert_str_eq(check_at(v, wire, len, now + 360 * 24 * 3600, detail, sizeof(detail)),
			 "ok");
	struct certcache_stats st;
	choria_verifier_cache_stats(v, &st);
	cr_assert_eq(st.misses, 1, "the window comes from the cache");
	/* Its chain was chosen again once when it expired (a renewed CA
	 * might have carried it); after that, once a minute at most. */
	cr_assert_eq(st.inserts, 2);
	int64_t later = now + 400 * 24 * 3600;
	cr_assert_str_eq(check_at(v, wire, len, later + 59, detail, sizeof(detail)),
			 "cert_expired");
	choria_verifier_cache_stats(v, &st);
	cr_assert_eq(st.inserts, 2);
	cr_assert_str_eq(check_at(v, wire, len, later + 60, detail, sizeof(detail)),
			 "cert_expired");
	choria_verifier_cache_stats(v, &st);
	cr_assert_eq(st.inserts, 3);
	free(wire);
	choria_verifier_free(v);
}

Test(verify, the_cache_keeps_at_most_cert_cache_size_verdicts)
{
	struct choria_verifier *v = verifier_with(test_pki_path("ca.pem"), NULL, 0, 2);
	const char *pems[] = {test_pki()->signer, test_pki()->no_eku, test_pki()->privileged};
	char *wires[3];
	size_t lens[3];
	for (int i = 0; i < 3; i++)
		wires[i] = signed_request(pems[i], NULL, false, &lens[i]);
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < 3; i++)
			cr_assert_str_eq(check(v, wires[i], lens[i]), "ok");
	struct certcache_stats st;
	choria_verifier_cache_stats(v, &st);
	cr_assert_eq(st.entries, 2);
	cr_assert_eq(st.misses, 9, "round robin over 3 certificates in 2 places always misses");
	cr_assert_eq(st.evictions, 7);
	/* The most recent stays. */
	cr_assert_str_eq(check(v, wires[2], lens[2]), "ok");
	choria_verifier_cache_stats(v, &st);
	cr_assert_eq(st.hits, 1);
	for (int i = 0; i < 3; i++)
		free(wires[i]);
	choria_verifier_free(v);
}

/* The cache alone: verdicts under made-up keys. */
static void cache_put(struct certcache *c, unsigned i, const char *reason)
{
	unsigned char key[CERTCACHE_KEY_LEN] = {0};
	memcpy(key, &i, sizeof(i));
	struct cert_verdict v = {.reason = reason};
	certcache_release(c, certcache_put(c, key, &v));
}

static bool cache_has(struct certcache *c, unsigned i)
{
	unsigned char key[CERTCACHE_KEY_LEN] = {0};
	memcpy(key, &i, sizeof(i));
	const struct cert_verdict *v = certcache_get(c, key);
	certcache_release(c, v);
	return v != NULL;
}

Test(verify, rejections_never_push_trusted_verdicts_out_of_the_cache)
{
	struct certcache *c = NULL;
	cr_assert_eq(certcache_new(&c, 8), 0);
	for (unsigned i = 0; i < 8; i++)
		cache_put(c, i, NULL);
	/* A flood of distinct untrusted certificates, far more than the room. */
	for (unsigned i = 1000; i < 11000; i++)
		cache_put(c, i, "untrusted_cert");
	for (unsigned i = 0; i < 8; i++)
		cr_assert(cache_has(c, i), "trusted verdict %u survived the flood", i);
	struct certcache_stats st;
	certcache_get_stats(c, &st);
	cr_assert_eq(st.entries, 8);
	cr_assert_eq(st.evictions, 0);
	cr_assert_eq(st.rejected_capacity, 2);
	cr_assert_eq(st.rejected_entries, 2);
	cr_assert_eq(st.rejected_evictions, 10000 - 2);
	/* The newest rejections are the ones kept. */
	cr_assert(cache_has(c, 10999));
	cr_assert(cache_has(c, 10998));
	cr_assert_not(cache_has(c, 10997));
	/* Trusted verdicts still replace each other, least recently used first. */
	cache_put(c, 100, NULL);
	cr_assert_not(cache_has(c, 0));
	cr_assert(cache_has(c, 100));
	certcache_get_stats(c, &st);
	cr_assert_eq(st.evictions, 1);
	certcache_free(c);
}

Test(verify, a_flood_of_untrusted_certificates_leaves_the_fleet_verdicts_cached)
{
	/* Room for the fleet's two certificates, none to spare. */
	struct choria_verifier *v = verifier_with(test_pki_path("ca.pem"), NULL, 0, 2);
	size_t ok_len[2];
	char *ok[2] = {signed_request(test_pki()->signer, NULL, false, &ok_len[0]),
		       signed_request(test_pki()->privileged, NULL, false, &ok_len[1])};
	for (int i = 0; i < 2; i++)
		cr_assert_str_eq(check(v, ok[i], ok_len[i]), "ok");
	/* Fifty self-signed certificates with the fleet's key: each one new,
	 * each one untrusted. */
	for (int i = 0; i < 50; i++) {
		char cn[64];
		snprintf(cn, sizeof(cn), "flood%d.example.net", i);
		struct test_cert_spec spec = {.cn = cn,
					      .from = -60,
					      .to = 3600,
					      .eku = "clientAuth"};
		X509 *x = test_cert_make(&spec, test_pki()->leaf_key, NULL, NULL);
		cr_assert_not_null(x);
		char *pem = test_cert_pem(x);
		X509_free(x);
		size_t len;
		char *wire = signed_request(pem, NULL, false, &len);
		cr_assert_str_eq(check(v, wire, len), "untrusted_cert");
		free(wire);
		free(pem);
	}
	struct certcache_stats before, after;
	choria_verifier_cache_stats(v, &before);
	for (int i = 0; i < 2; i++)
		cr_assert_str_eq(check(v, ok[i], ok_len[i]), "ok");
	choria_verifier_cache_stats(v, &after);
	cr_assert_eq(after.misses, before.misses, "the fleet's verdicts come from the cache");
	cr_assert_eq(after.hits, before.hits + 2);
	cr_assert_eq(after.evictions, 0);
	cr_assert_eq(after.rejected_evictions, 50 - 1);
	for (int i = 0; i < 2; i++)
		free(ok[i]);
	choria_verifier_free(v);
}

struct worker_arg {
	struct choria_verifier *v;
	struct choria_verify_scratch *scratch; /* each thread its own */
	char *wires[4];
	size_t lens[4];
	const char *want[4];
	int bad;
};

static void *worker(void *p)
{
	struct worker_arg *a = p;
	for (int i = 0; i < 400; i++) {
		int k = i % 4;
		struct choria_decoded d;
		const char *reason = NULL;
		if (choria_decode(&d, CHORIA_REQUEST, a->wires[k], a->lens[k], &reason, NULL, 0)) {
			a->bad++;
			continue;
		}
		int rc = choria_verify_request(a->v, a->scratch, &d, (int64_t)time(NULL), &reason,
					       NULL, 0);
		if (strcmp(rc ? reason : "ok", a->want[k]) != 0)
			a->bad++;
		choria_decoded_clear(&d);
	}
	return NULL;
}

Test(verify, threads_share_one_verifier_and_a_small_cache)
{
	/* Two places for four certificates: verdicts are evicted while other
	 * threads still use them. */
	struct choria_verifier *v = verifier_with(test_pki_path("ca.pem"), NULL, 0, 2);
	const char *pems[] = {test_pki()->signer, test_pki()->foreign, test_pki()->privileged,
			      test_pki()->expired};
	const char *want[] = {"ok", "untrusted_cert", "ok", "cert_expired"};
	struct worker_arg args[4];
	pthread_t t[4];
	for (int w = 0; w < 4; w++) {
		args[w] = (struct worker_arg){.v = v};
		cr_assert_eq(choria_verify_scratch_new(&args[w].scratch), 0);
		for (int k = 0; k < 4; k++) {
			args[w].wires[k] =
				signed_request(pems[(k + w) % 4], NULL, false, &args[w].lens[k]);
			args[w].want[k] = want[(k + w) % 4];
		}
	}
	for (int w = 0; w < 4; w++)
		cr_assert_eq(pthread_create(&t[w], NULL, worker, &args[w]), 0);
	for (int w = 0; w < 4; w++)
		pthread_join(t[w], NULL);
	struct certcache_stats st;
	choria_verifier_cache_stats(v, &st);
	for (int w = 0; w < 4; w++) {
		cr_assert_eq(args[w].bad, 0, "worker %d saw %d wrong verdicts", w, args[w].bad);
		for (int k = 0; k < 4; k++)
			free(args[w].wires[k]);
		choria_verify_scratch_free(args[w].scratch);
	}
	cr_assert_eq(st.hits + st.misses, 1600);
	cr_assert_leq(st.entries, 2);
	cr_assert_gt(st.evictions, 0);
	choria_verifier_free(v);
}

int main(int argc, char **argv)
{
	return test_pki_main(argc, argv);
}
