/* SPDX-License-Identifier: Apache-2.0 */
/* The v2 fixture itself: it rebuilds the worked example of PROTOCOL-v2.md
 * §11 byte for byte from its seeds, and what it signs, hashes and encodes
 * checks out with OpenSSL on its own. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "choria_v2.h"
#include "choria_v2_example.h"

#define PUB_ORG CHORIA_V2_EXAMPLE_PUB_ORG
#define PUB_CHAIN "3da666835db4bf52ac6fbbd3d6d4cff34edaa33097dc4f6f3f73ae3b5a1d8f25"
#define PUB_ALICE "30df177f1178f3c200f6223bdab96b9257974ffe0f4cd31bbd4725c92eab41db"
#define JTI_CHAIN CHORIA_V2_EXAMPLE_JTI_CHAIN
#define JTI_ALICE CHORIA_V2_EXAMPLE_JTI_ALICE

/* The example's wire, 2381 bytes. */
static const char example_wire[] =
	"{\"protocol\":\"io.choria.protocol.v2.transport\",\"data\":\"eyJwcm90b2NvbCI6ImlvLmNob3JpYS5wcm"
	"90b2NvbC52Mi5zZWN1cmVfcmVxdWVzdCIsInJlcXVlc3QiOiJleUp3Y205MGIyTnZiQ0k2SW1sdkxtTm9iM0pwWV"
	"M1d2NtOTBiMk52YkM1Mk1pNXlaWEYxWlhOMElpd2liV1Z6YzJGblpTSTZJbVY1U205YVYzaHpZbmxKTmtsdVpIWm"
	"piWGhyU1c0d1BTSXNJbWxrSWpvaU16ZGtSMkpVUlhCb2NEUjBXVTFwTVdjd2NVMXlXbXB1YWs1eUlpd2ljMlZ1Wk"
	"dWeUlqb2liV2R0ZERBeExtVjRZVzF3YkdVdWJtVjBJaXdpWTJGc2JHVnlJam9pWTJodmNtbGhQV0ZzYVdObElpd2"
	"lZMjlzYkdWamRHbDJaU0k2SW0xamIyeHNaV04wYVhabElpd2lZV2RsYm5RaU9pSnljR04xZEdsc0lpd2lkSFJzSW"
	"pvMk1Dd2lkR2x0WlNJNk1UYzJOekl5TlRZd05URXlNelExTmpjNE9Td2labWxzZEdWeUlqcDdJbVpoWTNRaU9sdG"
	"RMQ0pqWmw5amJHRnpjeUk2VzEwc0ltRm5aVzUwSWpwYlhTd2lhV1JsYm5ScGRIa2lPbHRkTENKamIyMXdiM1Z1Wk"
	"NJNlcxMTlmUT09Iiwic2lnbmF0dXJlIjoiNXBydmpGbEI4c0NYeUJJOWxLVWhMSkJOVjdMQTJMbVhHaW5lUzg4Nl"
	"p2bzBtNDVkTFlqWm9lanJHRVNacHh1N0FBREFSVFNnelVTQUlkZWx0NmVQQlE9PSIsImNhbGxlciI6ImV5SmhiR2"
	"NpT2lKRlpFUlRRU0lzSW5SNWNDSTZJa3BYVkNKOS5leUpqWVd4c1pYSnBaQ0k2SW1Ob2IzSnBZVDFoYkdsalpTSX"
	"NJbTkxSWpvaVkyaHZjbWxoSWl3aWNHVnliV2x6YzJsdmJuTWlPbnNpWm14bFpYUmZiV0Z1WVdkbGJXVnVkQ0k2ZE"
	"hKMVpYMHNJbkIxY25CdmMyVWlPaUpqYUc5eWFXRmZZMnhwWlc1MFgybGtJaXdpZEdOeklqb2lZak15WXpjM05qQT"
	"FaRFF6WkRNME9EWTBOR1JtWmpaaU9EQmtZVEJoTUdFeE5qQmhZamcyTlRKaU1qWTRaRFU1TTJNd1lUUTBOalV5Tk"
	"dZeU5qUm1aREppTUdKaE4yRTFNakJrWVRkaE5UTTVZV05qWmpkak5HRTFNamd3Tm1SbU56WXdNV0ZrTWpVMU5HUm"
	"1aRE01TkdGaE4yRXhaVEkzT0dSa01HTTBNR1F1TUdGalpXUmhPRGhtWkRka01XRmpNVE5rTVRWbVpqQmxaakZtWk"
	"RZM09UWTJZbU00WkRnNE1Ea3hNelEyWmpWaFpHWm1ZakZpWkRrME1USTRNell4WkRBME0yWTRNalV6TkdJMlpXUT"
	"JNbU13WW1Rd01qUmpObVEwTUdZMk5UaGtaR1k1WVRrNU56QmpOMlpqWm1FMFlXVTRNR1F4TkdJMVl6azFPR1EwTU"
	"dVaUxDSndkV0pzYVdOZmEyVjVJam9pTXpCa1pqRTNOMll4TVRjNFpqTmpNakF3WmpZeU1qTmlaR0ZpT1RaaU9UST"
	"FOemszTkdabVpUQm1OR05rTXpGaVltUTBOekkxWXpreVpXRmlOREZrWWlJc0ltbHpjMlY0Y0NJNk1qQTRNamMxT0"
	"RRd01Dd2lhWE56SWpvaVF5MHpOMlJIWVhGTVRtRlZjbGRXWTNSTE9XdDFPVEI1WjNReVZGb3VNMlJoTmpZMk9ETT"
	"FaR0kwWW1ZMU1tRmpObVppWW1RelpEWmtOR05tWmpNMFpXUmhZVE16TURrM1pHTTBaalptTTJZM00yRmxNMkkxWV"
	"RGa09HWXlOU0lzSW1WNGNDSTZNakExTVRJeU1qUXdNQ3dpYm1KbUlqb3hOelkzTWpJMU5qQXdMQ0pwWVhRaU9qRT"
	"NOamN5TWpVMk1EQXNJbXAwYVNJNklqTTNaRWRoY1cxRVNXSnhWWHAxY1hwdFFUaDJNRnAyY3pJNWJDSjkubUpQZ0"
	"RjMnZ0WnpFUkY4YTlHYUJLR2llZEFZQjVBaEdjZUV4c0hyRjdJWUF5RFV6bnR1ZzBBbEJWSXUxcHhaRzNFd1BLWm"
	"NUZF9CZmVKX2xxRmVqQkEifQ==\",\"headers\":{\"reply\":\"mcollective.reply.x\",\"sender\":\"mgmt01.ex"
	"ample.net\",\"trace\":[[\"nats://127.0.0.1:4222\",\"mgmt01.example.net\",\"nats://127.0.0.1:4222"
	"\"]]}}";

static struct choria_v2_key org, chain_key, alice;

static void load_keys(void)
{
	cr_assert_eq(choria_v2_example_keys(&org, &chain_key, &alice, NULL), 0);
}

TestSuite(choria_v2_fixture, .init = load_keys);

/* alice's token, issued by the example's chain issuer. */
static char *example_alice_token(void)
{
	struct choria_v2_chain chain;
	cr_assert_eq(choria_v2_example_keys(&org, &chain_key, &alice, &chain), 0);
	char *tok = choria_v2_example_token(&alice, &chain);
	cr_assert_not_null(tok);
	return tok;
}

static bool ed25519_verifies(const unsigned char pub[32], const void *data, size_t len,
			     const unsigned char *sig, size_t sig_len)
{
	EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = pkey && ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
		  EVP_DigestVerify(ctx, sig, sig_len, data, len) == 1;
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	return ok;
}

/* Standard base64 (or base64url when url) decoded into a malloc'd buffer. */
static unsigned char *b64_decode(const char *in, bool url, size_t *out_len)
{
	size_t n = strlen(in);
	char *s = malloc(n + 4);
	unsigned char *out;
	cr_assert_not_null(s);
	for (size_t i = 0; i < n; i++)
		s[i] = url && in[i] == '-' ? '+' : url && in[i] == '_' ? '/' : in[i];
	while (n % 4)
		s[n++] = '=';
	s[n] = '\0';
	out = malloc(n / 4 * 3 + 1);
	cr_assert_not_null(out);
	int r = EVP_DecodeBlock(out, (unsigned char *)s, (int)n);
	cr_assert(r >= 0, "bad base64: %s", in);
	size_t pad = (n && s[n - 1] == '=') + (n > 1 && s[n - 2] == '=');
	*out_len = (size_t)r - pad;
	out[*out_len] = '\0';
	free(s);
	return out;
}

static json_t *json_of(const void *text, size_t len)
{
	json_error_t err;
	json_t *j = json_loadb(text, len, 0, &err);
	cr_assert_not_null(j, "not JSON: %s", err.text);
	return j;
}

/* The secure layer of the message m describes, as JSON. */
static json_t *secure_layer(const struct choria_v2_msg_spec *m)
{
	char *secure, *wire = choria_v2_build_ex(m, NULL, NULL, &secure);
	json_t *s = json_of(secure, strlen(secure));
	free(secure);
	free(wire);
	return s;
}

/* The claims of a JWT, and whether its signature verifies with pub. */
static json_t *jwt_claims(const char *jwt, const unsigned char pub[32], bool *verifies)
{
	const char *d1 = strchr(jwt, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	cr_assert(d1 && d2 && !strchr(d2 + 1, '.'), "not three segments: %s", jwt);
	char *seg = strndup(d1 + 1, (size_t)(d2 - d1 - 1));
	size_t len, sig_len;
	unsigned char *claims = b64_decode(seg, true, &len);
	unsigned char *sig = b64_decode(d2 + 1, true, &sig_len);
	*verifies = ed25519_verifies(pub, jwt, (size_t)(d2 - jwt), sig, sig_len);
	json_t *j = json_of(claims, len);
	free(seg);
	free(claims);
	free(sig);
	return j;
}

Test(choria_v2_fixture, keys_from_the_example_seeds)
{
	cr_assert_str_eq(org.pub_hex, PUB_ORG);
	cr_assert_str_eq(chain_key.pub_hex, PUB_CHAIN);
	cr_assert_str_eq(alice.pub_hex, PUB_ALICE);
	struct choria_v2_key k;
	cr_assert_eq(choria_v2_key_from_seed_hex(&k, "00"), -1);
	cr_assert_eq(choria_v2_key_from_seed_hex(&k, CHORIA_V2_EXAMPLE_SEED_ORG "00"), -1);
}

Test(choria_v2_fixture, rebuilds_the_worked_example_byte_for_byte)
{
	char *tok = example_alice_token();
	struct choria_v2_msg_spec m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	m.caller_token = tok;
	m.signing_key = &alice;
	size_t len;
	char *inner, *wire = choria_v2_build_ex(&m, &len, &inner, NULL);

	cr_assert_not_null(wire);
	cr_assert_eq(strlen(example_wire), 2381);
	cr_assert_str_eq(inner, choria_v2_example_request);
	cr_assert_eq(len, strlen(example_wire));
	cr_assert_str_eq(wire, example_wire);
	free(inner);
	free(wire);
	free(tok);
}

Test(choria_v2_fixture, ksuid_times)
{
	int64_t t = 0;
	char k[28];

	cr_assert_eq(choria_v2_ksuid_time(JTI_ALICE, &t), 0);
	cr_assert_eq(t, CHORIA_V2_T_ISSUED);
	cr_assert_eq(choria_v2_ksuid_time(JTI_CHAIN, &t), 0);
	cr_assert_eq(t, CHORIA_V2_T_ISSUED);
	cr_assert_eq(choria_v2_ksuid_time("37dGbTEphp4tYMi1g0qMrZjnjNr", &t), 0);
	cr_assert_eq(t, CHORIA_V2_T_ISSUED + 5);
	cr_assert_eq(choria_v2_ksuid(k, 2000000000, NULL), 0);
	cr_assert_eq(strlen(k), 27);
	cr_assert_eq(choria_v2_ksuid_time(k, &t), 0);
	cr_assert_eq(t, 2000000000);
	cr_assert_eq(choria_v2_ksuid(k, 1400000000 - 1, NULL), -1);
	cr_assert_eq(choria_v2_ksuid_time("aWgEPTl1tmebfsQzFP4bxwgy80V", &t), 0, "2^160 - 1");
	cr_assert_eq(choria_v2_ksuid_time("aWgEPTl1tmebfsQzFP4bxwgy80W", &t), -1, "2^160");
	cr_assert_eq(choria_v2_ksuid_time("37dGbTEphp4tYMi1g0qMrZjnjN!", &t), -1);
	cr_assert_eq(choria_v2_ksuid_time("37dGbTEphp4tYMi1g0qMrZjnjN", &t), -1);
}

/* A directly issued token carries the organisation's iss and a tcs that
 * the organisation signed over "<jti>.<public_key>"; edits apply. */
Test(choria_v2_fixture, direct_token_claims_and_edits)
{
	struct choria_v2_token_spec ts = choria_v2_token_defaults(CHORIA_V2_SERVER, &alice, &org);
	ts.remove = "nbf";
	ts.patch = "{\"ou\":\"other\",\"permissions\":{\"streams\":true}}";
	char *tok = choria_v2_token(&ts);
	bool ok;
	json_t *c = jwt_claims(tok, org.pub, &ok);

	cr_assert(ok, "the organisation's signature does not verify");
	cr_assert_str_eq(json_string_value(json_object_get(c, "purpose")), "choria_server");
	cr_assert_str_eq(json_string_value(json_object_get(c, "identity")), "web1.example.net");
	cr_assert_str_eq(json_string_value(json_object_get(c, "ou")), "other");
	cr_assert(json_is_true(json_object_get(json_object_get(c, "permissions"), "streams")));
	cr_assert(json_is_true(json_object_get(json_object_get(c, "permissions"), "submission")));
	cr_assert_null(json_object_get(c, "nbf"));
	cr_assert_str_eq(json_string_value(json_object_get(c, "iss")), "I-" PUB_ORG);
	cr_assert_str_eq(json_string_value(json_object_get(c, "public_key")), PUB_ALICE);

	const char *jti = json_string_value(json_object_get(c, "jti"));
	int64_t t;
	cr_assert_eq(choria_v2_ksuid_time(jti, &t), 0);
	cr_assert_eq(t, CHORIA_V2_T_ISSUED);
	char vouched[128];
	snprintf(vouched, sizeof(vouched), "%s.%s", jti, PUB_ALICE);
	char *tcs = choria_v2_sign_hex(&org, vouched, strlen(vouched));
	cr_assert_str_eq(json_string_value(json_object_get(c, "tcs")), tcs);
	free(tcs);
	json_decref(c);
	free(tok);

	ts.tamper_signature = true;
	tok = choria_v2_token(&ts);
	json_decref(jwt_claims(tok, org.pub, &ok));
	cr_assert_not(ok, "a tampered token still verifies");
	free(tok);
}

/* A chain-issued token is signed by the chain key, carries iss, issexp and
 * tcs "<A>.<B>", and its exp never passes the chain issuer's. */
Test(choria_v2_fixture, chain_issued_token)
{
	struct choria_v2_token_spec cs =
		choria_v2_token_defaults(CHORIA_V2_CHAIN_ISSUER, &chain_key, &org);
	struct choria_v2_chain chain;
	cs.exp = CHORIA_V2_T_EXPIRES - 100;
	char *ctok = choria_v2_chain_issuer(&cs, &chain), *tok;
	bool ok;
	json_t *cc = jwt_claims(ctok, org.pub, &ok), *c;

	cr_assert(ok);
	cr_assert_str_eq(json_string_value(json_object_get(cc, "tcs")), chain.tcs);
	cr_assert_str_eq(json_string_value(json_object_get(cc, "jti")), chain.jti);

	struct choria_v2_token_spec ts =
		choria_v2_token_defaults(CHORIA_V2_DELEGATOR, &alice, &org);
	ts.chain = &chain;
	tok = choria_v2_token(&ts);
	c = jwt_claims(tok, chain_key.pub, &ok);
	cr_assert(ok, "the chain key's signature does not verify");
	cr_assert_eq(json_integer_value(json_object_get(c, "exp")), CHORIA_V2_T_EXPIRES - 100);
	cr_assert_eq(json_integer_value(json_object_get(c, "issexp")), CHORIA_V2_T_EXPIRES - 100);
	char iss[256];
	snprintf(iss, sizeof(iss), "C-%s." PUB_CHAIN, chain.jti);
	cr_assert_str_eq(json_string_value(json_object_get(c, "iss")), iss);
	const char *tcs = json_string_value(json_object_get(c, "tcs"));
	cr_assert_eq(strncmp(tcs, chain.tcs, strlen(chain.tcs)), 0);
	cr_assert_eq(tcs[strlen(chain.tcs)], '.');
	char text[256];
	snprintf(text, sizeof(text), "%s.%s", json_string_value(json_object_get(c, "jti")),
		 chain.tcs);
	char *b = choria_v2_sign_hex(&chain_key, text, strlen(text));
	cr_assert_str_eq(tcs + strlen(chain.tcs) + 1, b);
	free(b);
	json_decref(c);
	json_decref(cc);
	free(tok);
	free(ctok);
}

Test(choria_v2_fixture, raw_jwt)
{
	char *tok = choria_v2_jwt_raw("{\"alg\":\"none\"}", "[1]", NULL);
	const char *sig = tok + strlen("eyJhbGciOiJub25lIn0.WzFd.");

	cr_assert_eq(strncmp(tok, "eyJhbGciOiJub25lIn0.WzFd.", strlen("eyJhbGciOiJub25lIn0.WzFd.")),
		     0);
	cr_assert_eq(strlen(sig), 86, "64 bytes in unpadded base64url");
	cr_assert_eq(strspn(sig, "A"), 86);
	free(tok);
}

/* The request's signature covers the exact request bytes; the knobs break
 * it in the ways they say. */
Test(choria_v2_fixture, request_signature_and_knobs)
{
	struct choria_v2_msg_spec m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	m.caller_token = "t";
	m.signing_key = &alice;
	char *inner, *secure, *wire;
	size_t sig_len;

	for (int knob = 0; knob < 3; knob++) {
		m.tamper_signature = knob == 1;
		m.signed_body = knob == 2 ? "{\"hello\":\"there\"}" : NULL;
		wire = choria_v2_build_ex(&m, NULL, &inner, &secure);
		cr_assert_not_null(wire);
		json_t *s = json_of(secure, strlen(secure));
		unsigned char *sig = b64_decode(json_string_value(json_object_get(s, "signature")),
						false, &sig_len);
		cr_assert_eq(sig_len, 64);
		cr_assert_eq(ed25519_verifies(alice.pub, inner, strlen(inner), sig, sig_len),
			     knob == 0, "knob %d", knob);
		free(sig);
		json_decref(s);
		free(inner);
		free(secure);
		free(wire);
	}

	m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	m.signer_token = "s";
	json_t *s = secure_layer(&m);
	cr_assert_str_eq(json_string_value(json_object_get(s, "signature")), "aW5zZWN1cmU=");
	cr_assert_str_eq(json_string_value(json_object_get(s, "signer")), "s");
	cr_assert_null(json_object_get(s, "caller"));
	json_decref(s);
}

Test(choria_v2_fixture, reply_hash_and_layers)
{
	struct choria_v2_msg_spec m = choria_v2_msg_defaults(CHORIA_V2_REPLY);
	m.signing_key = &alice;
	m.sender_token = "server-token";
	char *inner, *secure, *wire = choria_v2_build_ex(&m, NULL, &inner, &secure);

	cr_assert_not_null(wire);
	cr_assert_str_eq(inner, "{\"protocol\":\"io.choria.protocol.v2.reply\","
				"\"message\":\"eyJoZWxsbyI6IndvcmxkIn0=\","
				"\"request\":\"37dGbTEphp4tYMi1g0qMrZjnjNr\","
				"\"sender\":\"web1.example.net\",\"agent\":\"rpcutil\","
				"\"time\":1767225605123456789}");
	json_t *s = json_of(secure, strlen(secure));
	char *hash = choria_msg_sha256_base64(inner, strlen(inner));
	cr_assert_str_eq(json_string_value(json_object_get(s, "protocol")),
			 "io.choria.protocol.v2.secure_reply");
	cr_assert_str_eq(json_string_value(json_object_get(s, "hash")), hash);
	cr_assert_str_eq(json_string_value(json_object_get(s, "sender")), "server-token");
	cr_assert_not_null(json_object_get(s, "signature"));
	json_t *t = json_of(wire, strlen(wire));
	cr_assert_str_eq(json_string_value(json_object_get(t, "protocol")),
			 "io.choria.protocol.v2.transport");
	cr_assert_null(json_object_get(json_object_get(t, "headers"), "reply"));
	json_decref(t);
	json_decref(s);
	free(hash);
	free(inner);
	free(secure);
	free(wire);

	m = choria_v2_msg_defaults(CHORIA_V2_REPLY);
	m.hash = "bm90IHRoZSBoYXNo";
	m.body = "a<b";
	s = secure_layer(&m);
	cr_assert_str_eq(json_string_value(json_object_get(s, "hash")), "bm90IHRoZSBoYXNo");
	cr_assert_null(json_object_get(s, "signature"));
	json_decref(s);
}
