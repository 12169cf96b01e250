/* SPDX-License-Identifier: Apache-2.0 */
/* Protocol v2 verification: the worked example of PROTOCOL-v2.md §11, then
 * tokens of every kind made at test time (direct, chain-issued, client,
 * server, delegator, provisioning; expired, not yet valid, foreign,
 * tampered) and requests that must pass or fail with their reason. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certs.h"
#include "choria_msg.h"
#include "choria_v2.h"
#include "choria_v2_example.h"
#include "protocol.h"
#include "token.h"
#include "verify.h"
#include "verify_v2.h"

#define PUB_ORG CHORIA_V2_EXAMPLE_PUB_ORG

/* A time inside every default token's window. */
#define NOW (CHORIA_V2_T_ISSUED + 3600)

static struct choria_v2_key org, chain_key, alice, other_org, deleg, web1, bob;
static struct choria_v2_chain chain; /* the example's, vouched for by org */
static char *kept[256];
static unsigned n_kept;

static void setup(void)
{
	cr_assert_eq(choria_v2_example_keys(&org, &chain_key, &alice, &chain), 0);
	cr_assert_eq(choria_v2_key_random(&other_org), 0);
	cr_assert_eq(choria_v2_key_random(&deleg), 0);
	cr_assert_eq(choria_v2_key_random(&web1), 0);
	cr_assert_eq(choria_v2_key_random(&bob), 0);
}

static void teardown(void)
{
	for (unsigned i = 0; i < n_kept; i++)
		free(kept[i]);
	n_kept = 0;
}

TestSuite(verify_v2, .init = setup, .fini = teardown);

static char *keep(char *s)
{
	cr_assert_not_null(s);
	cr_assert_lt(n_kept, sizeof(kept) / sizeof(kept[0]));
	kept[n_kept++] = s;
	return s;
}

static char *token(const struct choria_v2_token_spec *s)
{
	return keep(choria_v2_token(s));
}

static struct choria_verifier *verifier(const char *issuer, const char *signer)
{
	struct choria_verify_opts o = {0};
	struct choria_verifier *v = NULL;
	char *is = NULL;
	const char *il[1], *tl[1];

	if (issuer) {
		cr_assert(asprintf(&is, "choria=%s", issuer) > 0);
		il[0] = is;
		o.issuers = il;
		o.n_issuers = 1;
	}
	if (signer) {
		tl[0] = signer;
		o.trusted_signers = tl;
		o.n_trusted_signers = 1;
	}
	cr_assert_eq(choria_verifier_new(&v, &o, NULL, NULL, NULL), 0);
	free(is);
	return v;
}

/* Build, decode and verify a request at `now`: "ok" or the reason. */
static const char *check_at(struct choria_verifier *v, const struct choria_v2_msg_spec *m,
			    int64_t now)
{
	static char detail[400];
	struct choria_decoded d;
	const char *reason = NULL;
	size_t len;
	char *wire = choria_v2_build(m, &len);

	cr_assert_not_null(wire);
	cr_assert_eq(choria_decode(&d, CHORIA_REQUEST, wire, len, &reason, detail, sizeof(detail)),
		     0, "%s: %s", reason, detail);
	int rc = choria_verify_request(v, NULL, &d, now, &reason, detail, sizeof(detail));
	choria_decoded_clear(&d);
	free(wire);
	if (rc == 0)
		return "ok";
	cr_assert_eq(rc, -EBADMSG, "%d %s: %s", rc, reason, detail);
	cr_assert_not_null(reason);
	for (const char *p = detail; *p; p++)
		cr_assert((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f, "%s", detail);
	return reason;
}

static const char *check(struct choria_verifier *v, const struct choria_v2_msg_spec *m)
{
	return check_at(v, m, NOW);
}

/* A request from `holder` with caller token `tok`. */
static struct choria_v2_msg_spec request(const char *tok, const struct choria_v2_key *holder)
{
	struct choria_v2_msg_spec m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	m.caller_token = tok;
	m.signing_key = holder;
	return m;
}

static char *example_token(void)
{
	return keep(choria_v2_example_token(&alice, &chain));
}

#define EXPECT(v, m, want)                                                                 \
	do {                                                                               \
		const char *got_ = check((v), (m));                                        \
		cr_expect_str_eq(got_, (want), "line %d: %s, expected %s", __LINE__, got_, \
				 (want));                                                  \
	} while (0)

Test(verify_v2, the_worked_example_passes_with_issuers_or_trusted_signers)
{
	struct choria_v2_msg_spec m = request(example_token(), &alice);
	struct choria_verifier *v = verifier(PUB_ORG, NULL);

	EXPECT(v, &m, "ok");
	cr_expect_str_eq(check_at(v, &m, 2051222399), "ok");
	cr_expect_str_eq(check_at(v, &m, 2051222400), "token_expired");
	cr_expect_str_eq(check_at(v, &m, 1767225599), "token_not_yet_valid");
	choria_verifier_free(v);

	v = verifier(NULL, PUB_ORG);
	EXPECT(v, &m, "ok");
	choria_verifier_free(v);

	/* Trusted signers are tried in turn. */
	struct choria_verify_opts o = {0};
	const char *keys[] = {other_org.pub_hex, PUB_ORG};
	o.trusted_signers = keys;
	o.n_trusted_signers = 2;
	cr_assert_eq(choria_verifier_new(&v, &o, NULL, NULL, NULL), 0);
	EXPECT(v, &m, "ok");
	choria_verifier_free(v);
}

Test(verify_v2, direct_client_and_server_tokens)
{
	struct choria_verifier *v = verifier(org.pub_hex, NULL);
	struct choria_v2_token_spec ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	struct choria_v2_msg_spec m = request(token(&ts), &alice);

	EXPECT(v, &m, "ok");
	ts.org_data = false; /* no iss or tcs: still direct */
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "ok");

	/* A server registers as itself. */
	ts = choria_v2_token_defaults(CHORIA_V2_SERVER, &web1, &org);
	m = request(token(&ts), &web1);
	m.caller = "web1.example.net";
	m.sender = "web1.example.net";
	m.agent = "registration";
	EXPECT(v, &m, "ok");
	m.caller = "web2.example.net";
	EXPECT(v, &m, "caller_mismatch");

	/* A server token that the chain issued. */
	ts = choria_v2_token_defaults(CHORIA_V2_SERVER, &web1, NULL);
	ts.chain = &chain;
	m = request(token(&ts), &web1);
	m.caller = "web1.example.net";
	EXPECT(v, &m, "ok");
	choria_verifier_free(v);
}

Test(verify_v2, validity_windows)
{
	struct choria_verifier *v = verifier(org.pub_hex, NULL);
	struct choria_v2_token_spec ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	struct choria_v2_msg_spec m;

	ts.exp = NOW - 1;
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "token_expired");
	ts.exp = NOW;
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "token_expired");
	ts.exp = NOW + 1;
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "ok");

	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	ts.nbf = NOW + 1;
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "token_not_yet_valid");
	ts.nbf = NOW;
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "ok");
	ts.nbf = 0; /* none */
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "ok");

	/* Fractional NumericDates, as golang-jwt accepts them: truncated to
	 * the second, so exp NOW.5 is already expired at NOW. */
	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	char patch[80];
	snprintf(patch, sizeof(patch), "{\"exp\":%lld.5}", (long long)NOW);
	ts.patch = patch;
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "token_expired");
	cr_expect_str_eq(check_at(v, &m, NOW - 1), "ok");
	snprintf(patch, sizeof(patch), "{\"exp\":%lld.999}", (long long)NOW);
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "token_expired");
	snprintf(patch, sizeof(patch), "{\"exp\":%lld.5}", (long long)NOW + 1);
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "ok");
	snprintf(patch, sizeof(patch), "{\"nbf\":%lld.5}", (long long)NOW);
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "ok");
	cr_expect_str_eq(check_at(v, &m, NOW - 1), "token_not_yet_valid");

	/* No exp at all: refused. */
	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	ts.exp = 0;
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "bad_token");

	/* A chain issuer that expired takes its tokens with it. */
	struct choria_v2_key ck;
	struct choria_v2_chain short_chain;
	cr_assert_eq(choria_v2_key_random(&ck), 0);
	struct choria_v2_token_spec cs =
		choria_v2_token_defaults(CHORIA_V2_CHAIN_ISSUER, &ck, &org);
	cs.exp = NOW - 10;
	free(choria_v2_chain_issuer(&cs, &short_chain));
	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, NULL);
	ts.chain = &short_chain;
	ts.patch = "{\"exp\":2051222400}"; /* as if it outlived its issuer */
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "token_expired");
	cr_expect_str_eq(check_at(v, &m, NOW - 10), "ok", "issexp itself is still valid");
	cr_expect_str_eq(check_at(v, &m, NOW - 9), "token_expired");
	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, NULL);
	ts.chain = &chain;
	snprintf(patch, sizeof(patch), "{\"issexp\":%lld.5}", (long long)NOW);
	ts.patch = patch;
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "ok");
	cr_expect_str_eq(check_at(v, &m, NOW + 1), "token_expired");
	choria_verifier_free(v);
}

Test(verify_v2, purposes_and_permissions)
{
	struct choria_verifier *v = verifier(org.pub_hex, NULL);
	struct choria_v2_token_spec ts =
		choria_v2_token_defaults(CHORIA_V2_PROVISIONING, &alice, &org);
	struct choria_v2_msg_spec m = request(token(&ts), &alice);

	EXPECT(v, &m, "wrong_purpose");
	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	ts.patch = "{\"purpose\":\"something_else\"}";
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "wrong_purpose");

	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	ts.permissions = "{}";
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "no_fleet_management");
	ts.permissions = NULL;
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "no_fleet_management");
	ts.permissions = "{\"fleet_management\":false}";
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "no_fleet_management");
	ts.permissions = "{\"signed_fleet_management\":true}";
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "needs_delegation");
	ts.permissions = "{\"signed_fleet_management\":true,\"fleet_management\":true}";
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "needs_delegation");
	ts.permissions = "{\"fleet_management\":\"yes\"}";
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "bad_token");
	choria_verifier_free(v);
}

Test(verify_v2, issuers_that_are_not_trusted)
{
	struct choria_verifier *v = verifier(org.pub_hex, NULL);
	struct choria_v2_token_spec ts =
		choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &other_org);
	struct choria_v2_msg_spec m = request(token(&ts), &alice);

	EXPECT(v, &m, "untrusted_issuer");
	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	ts.ou = "other";
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "untrusted_issuer");
	ts.ou = NULL;
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "untrusted_issuer");
	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	ts.tamper_signature = true;
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "untrusted_issuer");

	/* A chain issuer the organisation never vouched for. */
	struct choria_v2_chain rogue;
	struct choria_v2_key rk;
	cr_assert_eq(choria_v2_key_random(&rk), 0);
	struct choria_v2_token_spec cs =
		choria_v2_token_defaults(CHORIA_V2_CHAIN_ISSUER, &rk, &other_org);
	free(choria_v2_chain_issuer(&cs, &rogue));
	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, NULL);
	ts.chain = &rogue;
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "untrusted_issuer");

	/* The vouched chain issuer's signature over the token is wrong. */
	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, NULL);
	ts.chain = &chain;
	ts.tamper_signature = true;
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "untrusted_issuer");
	/* A chain whose key was swapped: A no longer covers it. */
	struct choria_v2_chain swapped = chain;
	swapped.key = rk;
	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, NULL);
	ts.chain = &swapped;
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "untrusted_issuer");

	/* The chain issuer's B (its signature over "<jti>.<A>") is wrong while
	 * the JWT itself is signed by C after the change: only B is at fault. */
	char *b_text = NULL, *b_sig, tcs[400];
	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, NULL);
	ts.chain = &chain;
	ts.jti = "37dGaqmDIbqUzuqzmA8v0Zvs29l";
	b_sig = keep(choria_v2_sign_hex(&bob, "37dGaqmDIbqUzuqzmA8v0Zvs29l", 27));
	snprintf(tcs, sizeof(tcs), "{\"tcs\":\"%s.%s\"}", chain.tcs, b_sig);
	ts.patch = tcs;
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "untrusted_issuer");
	/* B is C's own signature, but over another token's jti. */
	cr_assert(asprintf(&b_text, "%s.%s", "37dGaqLNaUrWVctK9ku90ygt2TZ", chain.tcs) > 0);
	b_sig = keep(choria_v2_sign_hex(&chain.key, b_text, strlen(b_text)));
	free(b_text);
	snprintf(tcs, sizeof(tcs), "{\"tcs\":\"%s.%s\"}", chain.tcs, b_sig);
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "untrusted_issuer");
	/* The same B over its own jti passes: the two above fail on B alone. */
	cr_assert(asprintf(&b_text, "%s.%s", ts.jti, chain.tcs) > 0);
	b_sig = keep(choria_v2_sign_hex(&chain.key, b_text, strlen(b_text)));
	free(b_text);
	snprintf(tcs, sizeof(tcs), "{\"tcs\":\"%s.%s\"}", chain.tcs, b_sig);
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "ok");

	/* With trusted signers, a foreign key is untrusted too. */
	choria_verifier_free(v);
	v = verifier(NULL, org.pub_hex);
	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &other_org);
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "untrusted_issuer");
	ts.ou = NULL; /* ou is not consulted */
	ts.issuer = &org;
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "ok");
	choria_verifier_free(v);
}

Test(verify_v2, several_issuers_each_sign_for_their_own_ou)
{
	struct choria_verify_opts o = {0};
	struct choria_verifier *v = NULL;
	char *a = NULL, *b = NULL;
	cr_assert(asprintf(&a, "a=%s", org.pub_hex) > 0);
	cr_assert(asprintf(&b, "b=%s", other_org.pub_hex) > 0);
	const char *il[] = {a, b};
	o.issuers = il;
	o.n_issuers = 2;
	cr_assert_eq(choria_verifier_new(&v, &o, NULL, NULL, NULL), 0);
	free(a);
	free(b);

	struct choria_v2_token_spec ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	struct choria_v2_msg_spec m;
	ts.ou = "a";
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "ok");
	ts.issuer = &other_org; /* b's key, a's name */
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "untrusted_issuer");
	ts.ou = "b";
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "ok");
	ts.issuer = &org;
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "untrusted_issuer");
	choria_verifier_free(v);
}

Test(verify_v2, malformed_tokens_are_bad_tokens)
{
	struct choria_verifier *v = verifier(org.pub_hex, NULL);
	struct choria_v2_token_spec ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	struct choria_v2_msg_spec m;
	static const char *const headers[] = {"{\"alg\":\"none\",\"typ\":\"JWT\"}",
					      "{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
					      "{\"typ\":\"JWT\"}", "[\"EdDSA\"]",
					      "{\"alg\":\"EdDSA\",\"alg\":\"EdDSA\"}"};

	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
		ts.header = headers[i];
		m = request(token(&ts), &alice);
		EXPECT(v, &m, "bad_token");
	}
	ts.header = NULL;
	static const char *const garbage[] = {"a.b.c",   "abc", "a.b",
					      "a.b.c.d", "..",  "eyJhbGciOiJFZERTQSJ9.e30.AAAA"};
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		m = request(garbage[i], &alice);
		EXPECT(v, &m, "bad_token");
	}
	m = request(keep(choria_v2_jwt_raw("{\"alg\":\"EdDSA\"}", "[1,2]", &org)), &alice);
	EXPECT(v, &m, "bad_token");
	m = request(keep(choria_v2_jwt_raw("{\"alg\":\"EdDSA\"}", "not json", &org)), &alice);
	EXPECT(v, &m, "bad_token");

	ts.patch = "{\"public_key\":\"abcd\"}";
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "bad_token");
	ts.patch = "{\"callerid\":7}";
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "bad_token");
	ts.patch = "{\"exp\":\"tomorrow\"}";
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "bad_token");
	ts.patch = "{\"permissions\":[]}";
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "bad_token");
	ts.patch = NULL;
	ts.remove = "public_key";
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "bad_token");

	/* Chain data. */
	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, NULL);
	ts.chain = &chain;
	ts.iat = CHORIA_V2_T_ISSUED + 1; /* not the jti's time */
	ts.jti = "37dGaqmDIbqUzuqzmA8v0Zvs29l";
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "bad_token");
	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, NULL);
	ts.chain = &chain;
	static const char *const breaks[] = {
		"{\"jti\":\"not-a-ksuid\"}",
		"{\"jti\":\"zzzzzzzzzzzzzzzzzzzzzzzzzzz\"}", /* 2^160 or more */
		"{\"iss\":\"C-abc\"}",
		"{\"iss\":\"C-.3da666835db4bf52ac6fbbd3d6d4cff34edaa33097dc4f6f3f73ae3b5a1d8f25\"}",
		"{\"iss\":\"C-a.b.c\"}",
		"{\"iss\":\"C-37dGaqLNaUrWVctK9ku90ygt2TZ.3da6\"}",
		"{\"tcs\":\"abcd\"}",
		"{\"tcs\":\"ab.cd.ef\"}",
		"{\"tcs\":\".cd\"}",
		"{\"tcs\":\"xyz.abc\"}",
	};
	for (size_t i = 0; i < sizeof(breaks) / sizeof(breaks[0]); i++) {
		ts.patch = breaks[i];
		m = request(token(&ts), &alice);
		cr_expect_str_eq(check(v, &m), "bad_token", "%s", breaks[i]);
	}
	ts.patch = NULL;
	ts.remove = "issexp";
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "bad_token");
	ts.remove = "iat";
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "bad_token");
	choria_verifier_free(v);
}

Test(verify_v2, request_signatures_and_callers)
{
	struct choria_verifier *v = verifier(org.pub_hex, NULL);
	struct choria_v2_token_spec ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	char *tok = token(&ts);
	struct choria_v2_msg_spec m = request(tok, &alice);

	m.signed_body = "{\"hello\":\"mars\"}";
	EXPECT(v, &m, "bad_signature");
	m = request(tok, &alice);
	m.tamper_signature = true;
	EXPECT(v, &m, "bad_signature");
	m = request(tok, &bob); /* signed by another key */
	EXPECT(v, &m, "bad_signature");
	m = request(tok, &alice);
	m.signature = "AAAA"; /* 3 bytes */
	EXPECT(v, &m, "bad_signature");
	m = request(tok, NULL); /* Choria's insecure marker */
	EXPECT(v, &m, "insecure");
	m = request(tok, &alice);
	m.caller = "choria=bob";
	EXPECT(v, &m, "caller_mismatch");
	m.caller = "choria=alice";
	EXPECT(v, &m, "ok");
	choria_verifier_free(v);
}

Test(verify_v2, delegated_requests)
{
	struct choria_verifier *v = verifier(org.pub_hex, NULL);
	struct choria_v2_token_spec ds =
		choria_v2_token_defaults(CHORIA_V2_DELEGATOR, &deleg, &org);
	struct choria_v2_token_spec cs = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	char *dtok = token(&ds);
	cs.permissions = "{\"signed_fleet_management\":true}";
	char *ctok = token(&cs);
	struct choria_v2_msg_spec m = request(ctok, &deleg);

	m.signer_token = dtok;
	EXPECT(v, &m, "ok");
	m.signing_key = &alice; /* the caller signed, not the delegator */
	EXPECT(v, &m, "bad_signature");
	m.signing_key = &deleg;
	m.caller = "choria=mallory";
	EXPECT(v, &m, "caller_mismatch");
	m.caller = "choria=alice";

	/* A caller with plain fleet_management may be delegated too. */
	cs.permissions = "{\"fleet_management\":true}";
	m.caller_token = token(&cs);
	EXPECT(v, &m, "ok");
	cs.permissions = "{}";
	m.caller_token = token(&cs);
	EXPECT(v, &m, "no_fleet_management");

	/* The signer. */
	m.caller_token = ctok;
	ds.permissions = "{\"fleet_management\":true}";
	m.signer_token = token(&ds);
	EXPECT(v, &m, "not_delegator");
	struct choria_v2_token_spec ss = choria_v2_token_defaults(CHORIA_V2_SERVER, &deleg, &org);
	m.signer_token = token(&ss);
	EXPECT(v, &m, "wrong_purpose");
	ds = choria_v2_token_defaults(CHORIA_V2_DELEGATOR, &deleg, &org);
	ds.exp = NOW - 1;
	m.signer_token = token(&ds);
	EXPECT(v, &m, "token_expired");
	ds = choria_v2_token_defaults(CHORIA_V2_DELEGATOR, &deleg, &other_org);
	m.signer_token = token(&ds);
	EXPECT(v, &m, "untrusted_issuer");

	/* The caller must be under the signer's issuer, whatever its ou. */
	m.signer_token = dtok;
	cs = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &other_org);
	cs.permissions = "{\"signed_fleet_management\":true}";
	m.caller_token = token(&cs);
	EXPECT(v, &m, "untrusted_issuer");
	cs = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	cs.ou = "elsewhere";
	cs.permissions = "{\"signed_fleet_management\":true}";
	m.caller_token = token(&cs);
	EXPECT(v, &m, "ok");
	/* ... and a client: a server token cannot be delegated. */
	ss = choria_v2_token_defaults(CHORIA_V2_SERVER, &alice, &org);
	m.caller_token = token(&ss);
	EXPECT(v, &m, "wrong_purpose");
	/* Both purposes come first (PROTOCOL-v2.md §7, delegated step 1):
	 * a server caller is wrong_purpose whatever is wrong with the signer. */
	ds = choria_v2_token_defaults(CHORIA_V2_DELEGATOR, &deleg, &org);
	ds.permissions = "{\"fleet_management\":true}";
	m.signer_token = token(&ds);
	EXPECT(v, &m, "wrong_purpose");
	ds = choria_v2_token_defaults(CHORIA_V2_DELEGATOR, &deleg, &other_org);
	m.signer_token = token(&ds);
	EXPECT(v, &m, "wrong_purpose");
	ds = choria_v2_token_defaults(CHORIA_V2_DELEGATOR, &deleg, &org);
	ds.exp = NOW - 1;
	m.signer_token = token(&ds);
	EXPECT(v, &m, "wrong_purpose");
	m.signer_token = dtok;
	/* ... within its own validity. */
	cs = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	cs.permissions = "{\"signed_fleet_management\":true}";
	cs.nbf = NOW + 60;
	m.caller_token = token(&cs);
	EXPECT(v, &m, "token_not_yet_valid");

	/* A caller issued by the chain, delegated by a direct delegator. */
	cs = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, NULL);
	cs.chain = &chain;
	cs.permissions = "{\"signed_fleet_management\":true}";
	m.caller_token = token(&cs);
	EXPECT(v, &m, "ok");
	choria_verifier_free(v);
}

Test(verify_v2, verdicts_are_cached_and_expiry_still_counts)
{
	struct choria_verifier *v = verifier(org.pub_hex, NULL);
	struct choria_v2_token_spec ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	ts.exp = NOW + 10;
	struct choria_v2_msg_spec m = request(token(&ts), &alice);
	struct tokencache_stats st;

	for (int i = 0; i < 5; i++)
		EXPECT(v, &m, "ok");
	choria_v2_verifier_cache_stats(choria_verifier_v2(v), &st);
	cr_expect_eq(st.misses, 1);
	cr_expect_eq(st.hits, 4);
	cr_expect_eq(st.entries, 1);
	cr_expect_str_eq(check_at(v, &m, NOW + 10), "token_expired");
	/* A cached token still needs the request's own signature. */
	m.tamper_signature = true;
	EXPECT(v, &m, "bad_signature");
	m.tamper_signature = false;
	m.caller = "choria=bob";
	EXPECT(v, &m, "caller_mismatch");

	/* Rejections are cached apart. */
	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &other_org);
	m = request(token(&ts), &alice);
	EXPECT(v, &m, "untrusted_issuer");
	EXPECT(v, &m, "untrusted_issuer");
	choria_v2_verifier_cache_stats(choria_verifier_v2(v), &st);
	cr_expect_eq(st.rejected_entries, 1);
	cr_expect_eq(st.entries, 1);
	choria_verifier_free(v);

	/* A cache of one: many tokens still verify, each in turn. */
	struct choria_verify_opts o = {0};
	char *is = NULL;
	cr_assert(asprintf(&is, "choria=%s", org.pub_hex) > 0);
	const char *il[] = {is};
	o.issuers = il;
	o.n_issuers = 1;
	o.token_cache_size = 1;
	cr_assert_eq(choria_verifier_new(&v, &o, NULL, NULL, NULL), 0);
	free(is);
	for (int i = 0; i < 40; i++) {
		ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
		m = request(token(&ts), &alice);
		EXPECT(v, &m, "ok");
	}
	choria_v2_verifier_cache_stats(choria_verifier_v2(v), &st);
	cr_expect_leq(st.entries, st.capacity);
	cr_expect_gt(st.evictions, 0);
	choria_verifier_free(v);
}

/* Genuine tokens that cannot let a request through (expired, of another
 * purpose, without the permission) are remembered with the rejections, so
 * that replaying them never evicts the fleet's. */
Test(verify_v2, unusable_genuine_tokens_do_not_evict_the_fleets)
{
	struct choria_verify_opts o = {0};
	struct choria_verifier *v = NULL;
	struct tokencache_stats st;
	char *is = NULL;
	cr_assert(asprintf(&is, "choria=%s", org.pub_hex) > 0);
	const char *il[] = {is};
	o.issuers = il;
	o.n_issuers = 1;
	o.token_cache_size = 8; /* one set of 8 places */
	cr_assert_eq(choria_verifier_new(&v, &o, NULL, NULL, NULL), 0);
	free(is);

	struct choria_v2_token_spec ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	struct choria_v2_msg_spec fleet = request(token(&ts), &alice), m;
	EXPECT(v, &fleet, "ok");
	for (int i = 0; i < 20; i++) {
		ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
		ts.exp = NOW - 1;
		m = request(token(&ts), &alice);
		EXPECT(v, &m, "token_expired");
		ts = choria_v2_token_defaults(CHORIA_V2_PROVISIONING, &alice, &org);
		m = request(token(&ts), &alice);
		EXPECT(v, &m, "wrong_purpose");
		ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
		ts.permissions = "{\"streams_user\":true}";
		m = request(token(&ts), &alice);
		EXPECT(v, &m, "no_fleet_management");
		ts.permissions = "{\"signed_fleet_management\":true}";
		m = request(token(&ts), &alice);
		EXPECT(v, &m, "needs_delegation");
	}
	choria_v2_verifier_cache_stats(choria_verifier_v2(v), &st);
	cr_expect_eq(st.entries, 1, "%zu in the fleet's table", st.entries);
	uint64_t misses = st.misses, hits = st.hits;
	EXPECT(v, &fleet, "ok");
	choria_v2_verifier_cache_stats(choria_verifier_v2(v), &st);
	cr_expect_eq(st.misses, misses, "the fleet's token was evicted");
	cr_expect_eq(st.hits, hits + 1);
	choria_verifier_free(v);
}

Test(verify_v2, each_version_needs_its_own_trust)
{
	/* Only v2 trust: a v1 request is untrusted_version. */
	struct choria_verifier *v = verifier(org.pub_hex, NULL);
	struct choria_msg_spec s1 = choria_msg_defaults(CHORIA_MSG_REQUEST);
	struct choria_decoded d;
	const char *reason = NULL;
	char detail[300];
	size_t len;
	char *wire = choria_msg_build(&s1, &len);

	cr_assert_not_null(wire);
	cr_assert_eq(choria_decode(&d, CHORIA_REQUEST, wire, len, &reason, detail, sizeof(detail)),
		     0);
	cr_expect_eq(choria_verify_request(v, NULL, &d, NOW, &reason, detail, sizeof(detail)),
		     -EBADMSG);
	cr_expect_str_eq(reason, "untrusted_version");
	choria_decoded_clear(&d);
	free(wire);
	choria_verifier_free(v);

	/* Only a CA: a v2 request is untrusted_version. */
	struct choria_verify_opts o = {.ca_file = test_pki_path("ca.pem")};
	cr_assert_eq(choria_verifier_new(&v, &o, NULL, NULL, NULL), 0);
	struct choria_v2_token_spec ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	struct choria_v2_msg_spec m = request(token(&ts), &alice);
	EXPECT(v, &m, "untrusted_version");
	choria_verifier_free(v);

	/* Both: each checked its own way. */
	char *is = NULL;
	cr_assert(asprintf(&is, "choria=%s", org.pub_hex) > 0);
	const char *il[] = {is};
	o.issuers = il;
	o.n_issuers = 1;
	cr_assert_eq(choria_verifier_new(&v, &o, NULL, NULL, NULL), 0);
	free(is);
	EXPECT(v, &m, "ok");
	choria_verifier_free(v);
}

Test(verify_v2, replies_are_checked_by_hash)
{
	struct choria_v2_msg_spec m = choria_v2_msg_defaults(CHORIA_V2_REPLY);
	struct choria_decoded d;
	const char *reason = NULL;
	char detail[300];
	size_t len;

	for (int bad = 0; bad < 2; bad++) {
		if (bad)
			m.hash = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
		char *wire = choria_v2_build(&m, &len);
		cr_assert_eq(choria_decode(&d, CHORIA_REPLY, wire, len, &reason, detail,
					   sizeof(detail)),
			     0);
		int rc = choria_verify_reply(&d, &reason, detail, sizeof(detail));
		if (bad) {
			cr_expect_eq(rc, -EBADMSG);
			cr_expect_str_eq(reason, "bad_hash");
		} else {
			cr_expect_eq(rc, 0, "%s", detail);
		}
		choria_decoded_clear(&d);
		free(wire);
	}
}

struct errors {
	char text[2048];
};

static void collect(void *arg, const char *option, const char *message)
{
	struct errors *e = arg;
	size_t n = strlen(e->text);
	snprintf(e->text + n, sizeof(e->text) - n, "%s: %s\n", option, message);
}

Test(verify_v2, configuration_errors)
{
	struct choria_verify_opts o = {0};
	struct choria_verifier *v = NULL;
	struct errors e = {0};
	char *is = NULL;
	cr_assert(asprintf(&is, "choria=%s", org.pub_hex) > 0);
	const char *il[] = {is}, *tl[] = {org.pub_hex};

	o.issuers = il;
	o.n_issuers = 1;
	o.trusted_signers = tl;
	o.n_trusted_signers = 1;
	cr_expect_eq(choria_verifier_new(&v, &o, collect, &e, NULL), -EINVAL);
	cr_expect_not_null(strstr(e.text, "trusted_signers: can only configure one of"), "%s",
			   e.text);

	static const char *const bad_issuers[] =
		{"choria", "=7352415b7fe1a5aac5648d09ff17b6a1fd6320ceba4dc01b662bc8245d9a6a96",
		 "choria=7352",
		 "choria=zz52415b7fe1a5aac5648d09ff17b6a1fd6320ceba4dc01b662bc8245d9a6a96"};
	for (size_t i = 0; i < sizeof(bad_issuers) / sizeof(bad_issuers[0]); i++) {
		struct choria_verify_opts b = {0};
		memset(&e, 0, sizeof(e));
		b.issuers = &bad_issuers[i];
		b.n_issuers = 1;
		cr_expect_eq(choria_verifier_new(&v, &b, collect, &e, NULL), -EINVAL, "%s",
			     bad_issuers[i]);
		cr_expect_not_null(strstr(e.text, "issuers: "), "%s", e.text);
	}
	const char *twice[] = {is, is};
	struct choria_verify_opts b = {.issuers = twice, .n_issuers = 2};
	memset(&e, 0, sizeof(e));
	cr_expect_eq(choria_verifier_new(&v, &b, collect, &e, NULL), -EINVAL);
	cr_expect_not_null(strstr(e.text, "listed twice"), "%s", e.text);

	const char *bad_signer[] = {"7352415b"};
	b = (struct choria_verify_opts){.trusted_signers = bad_signer, .n_trusted_signers = 1};
	memset(&e, 0, sizeof(e));
	cr_expect_eq(choria_verifier_new(&v, &b, collect, &e, NULL), -EINVAL);
	cr_expect_not_null(strstr(e.text, "trusted_signers: "), "%s", e.text);

	b = (struct choria_verify_opts){0};
	memset(&e, 0, sizeof(e));
	cr_expect_eq(choria_verifier_new(&v, &b, collect, &e, NULL), -EINVAL);
	cr_expect_not_null(strstr(e.text, "ca: a CA file is needed"), "%s", e.text);
	cr_expect_not_null(strstr(e.text, "issuers or trusted_signers"), "%s", e.text);
	free(is);
}

Test(verify_v2, ksuid_times_as_the_fixture_writes_them)
{
	static const int64_t times[] = {1400000000LL, CHORIA_V2_T_ISSUED, 2051222400LL,
					1400000000LL + 4294967295LL};
	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
		unsigned char payload[16];
		char k[28];
		int64_t t = 0;
		memset(payload, (int)(i * 85), sizeof(payload));
		cr_assert_eq(choria_v2_ksuid(k, times[i], payload), 0);
		cr_expect(choria_ksuid_time(k, strlen(k), &t), "%s", k);
		cr_expect_eq(t, times[i], "%s: %lld", k, (long long)t);
	}
	int64_t t;
	cr_expect(choria_ksuid_time("37dGaqmDIbqUzuqzmA8v0Zvs29l", 27, &t));
	cr_expect_eq(t, CHORIA_V2_T_ISSUED);
	cr_expect(choria_ksuid_time("aWgEPTl1tmebfsQzFP4bxwgy80V", 27, &t), "2^160 - 1");
	cr_expect_not(choria_ksuid_time("aWgEPTl1tmebfsQzFP4bxwgy80W", 27, &t), "2^160");
	cr_expect_not(choria_ksuid_time("37dGaqmDIbqUzuqzmA8v0Zvs29", 26, &t));
	cr_expect_not(choria_ksuid_time("37dGaqmDIbqUzuqzmA8v0Zvs2-l", 27, &t));
}

/* Threads sharing one verifier and a cache too small for their tokens,
 * so that lookups, insertions and evictions race. */
struct race {
	struct choria_verifier *v;
	char *wires[6];
	size_t lens[6];
	int failures;
};

static void *race_thread(void *arg)
{
	struct race *r = arg;
	struct choria_verify_scratch *s = NULL;

	if (choria_verify_scratch_new(&s) != 0)
		return NULL;
	for (int i = 0; i < 120; i++) {
		struct choria_decoded d;
		const char *reason;
		char detail[300];
		size_t w = (size_t)i % 6;
		if (choria_decode(&d, CHORIA_REQUEST, r->wires[w], r->lens[w], &reason, detail,
				  sizeof(detail)) != 0 ||
		    choria_verify_request(r->v, i % 2 ? s : NULL, &d, NOW, &reason, detail,
					  sizeof(detail)) != 0)
			__atomic_add_fetch(&r->failures, 1, __ATOMIC_RELAXED);
		choria_decoded_clear(&d);
	}
	choria_verify_scratch_free(s);
	return NULL;
}

Test(verify_v2, threads_share_the_verifier)
{
	struct choria_verify_opts o = {0};
	struct race r = {0};
	char *is = NULL;
	cr_assert(asprintf(&is, "choria=%s", org.pub_hex) > 0);
	const char *il[] = {is};
	o.issuers = il;
	o.n_issuers = 1;
	o.token_cache_size = 2;
	cr_assert_eq(choria_verifier_new(&r.v, &o, NULL, NULL, NULL), 0);
	free(is);
	for (int i = 0; i < 6; i++) {
		struct choria_v2_token_spec ts =
			choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, i % 2 ? &org : NULL);
		if (!(i % 2))
			ts.chain = &chain;
		struct choria_v2_msg_spec m = request(token(&ts), &alice);
		r.wires[i] = keep(choria_v2_build(&m, &r.lens[i]));
	}
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, race_thread, &r), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	cr_expect_eq(r.failures, 0);
	choria_verifier_free(r.v);
}
