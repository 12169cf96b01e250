/* SPDX-License-Identifier: Apache-2.0 */
/*
 * make_corpus - writes the seed corpus of fuzz_decode_verify into a folder:
 * v1 requests signed with the fixed PKI (fixed_pki.h), privileged, unsigned
 * and tampered ones, replies with right and wrong hashes; v2 requests with
 * chain-issued, direct, server and delegated tokens and broken ones, and v2
 * replies; each both as a transport and as a bare secure layer (see the
 * input format in fuzz_decode_verify.c). `make fuzz-corpus` runs it; the output is kept in
 * tests/fuzz/corpus/.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "certs.h"
#include "choria_msg.h"
#include "choria_v2.h"
#include "fixed_pki.h"

static const char *out_dir;
static int failures;

static void put(const char *name, unsigned char flags, const char *bytes, size_t len)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", out_dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(&flags, 1, 1, f) != 1 || fwrite(bytes, 1, len, f) != len) {
		perror(path);
		failures++;
	}
	if (f)
		fclose(f);
}

/* The secure layer inside a transport: base64-decode transport.data. */
static char *secure_layer(const char *wire, size_t *len)
{
	json_t *t = json_loads(wire, 0, NULL);
	const char *data = json_string_value(json_object_get(t, "data"));
	size_t n = data ? strlen(data) : 0;
	char *out = n ? malloc(n) : NULL;
	int got = out ? EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)data, (int)n)
		      : -1;

	if (got >= 0) {
		got -= (n > 0 && data[n - 1] == '=') + (n > 1 && data[n - 2] == '=');
		*len = (size_t)got;
	} else {
		free(out);
		out = NULL;
	}
	json_decref(t);
	return out;
}

/* Write the transport `wire` (taken over; NULL when it could not be
 * built) as `name`, and its secure layer as `name`-secure, with the flag
 * bits `inner_flags` beside the message kind. */
static void seed_wire(const char *name, unsigned char kind, unsigned char inner_flags, char *wire,
		      size_t len)
{
	char inner_name[256];
	size_t inner_len = 0;

	if (!wire) {
		fprintf(stderr, "make_corpus: cannot build %s\n", name);
		failures++;
		return;
	}
	put(name, kind, wire, len);
	char *inner = secure_layer(wire, &inner_len);
	snprintf(inner_name, sizeof(inner_name), "%s-secure", name);
	if (inner)
		put(inner_name, kind | inner_flags, inner, inner_len);
	free(inner);
	free(wire);
}

/* Write `name` as a transport and `name`-secure as a bare secure layer. */
static void seed(const char *name, const struct choria_msg_spec *s)
{
	size_t len = 0;
	char *wire = choria_msg_build(s, &len);
	seed_wire(name, s->kind == CHORIA_MSG_REPLY ? 1 : 0, 2, wire, len);
}

/* The same for a v2 message: `name`-secure is wrapped in a v2 transport. */
static void seed_v2(const char *name, const struct choria_v2_msg_spec *s)
{
	size_t len = 0;
	char *wire = choria_v2_build(s, &len);
	seed_wire(name, s->kind == CHORIA_V2_REPLY ? 1 : 0, 2 | 4, wire, len);
}

/* A token, or a failure counted; its jti fixed, so that the corpus comes
 * out the same at every run (ed25519 signatures are deterministic). */
static char *v2_token(const struct choria_v2_token_spec *t)
{
	static unsigned char n;
	unsigned char payload[16] = {++n};
	char jti[28];
	struct choria_v2_token_spec fixed = *t;

	if (!fixed.jti &&
	    choria_v2_ksuid(jti, fixed.iat ? fixed.iat : CHORIA_V2_T_ISSUED, payload) == 0)
		fixed.jti = jti;
	char *tok = choria_v2_token(&fixed);
	if (!tok) {
		fprintf(stderr, "make_corpus: cannot build a token\n");
		failures++;
	}
	return tok;
}

static void seeds_v2(void)
{
	struct choria_v2_key org, chain_key, alice, deleg;
	struct choria_v2_chain chain;
	char *toks[6] = {0};

	if (choria_v2_key_from_seed_hex(&org, FUZZ_V2_SEED_ORG) ||
	    choria_v2_key_from_seed_hex(&chain_key, FUZZ_V2_SEED_CHAIN) ||
	    choria_v2_key_from_seed_hex(&alice, FUZZ_V2_SEED_CLIENT) ||
	    choria_v2_key_from_seed_hex(&deleg, FUZZ_V2_SEED_CHAIN)) {
		failures++;
		return;
	}
	struct choria_v2_token_spec cs =
		choria_v2_token_defaults(CHORIA_V2_CHAIN_ISSUER, &chain_key, &org);
	cs.jti = "37dGaqLNaUrWVctK9ku90ygt2TZ";
	free(choria_v2_chain_issuer(&cs, &chain));
	struct choria_v2_token_spec ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, NULL);
	ts.chain = &chain;
	ts.jti = "37dGaqmDIbqUzuqzmA8v0Zvs29l";
	toks[0] = v2_token(&ts);

	/* The worked example, then what breaks it. */
	struct choria_v2_msg_spec m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	m.caller_token = toks[0];
	m.signing_key = &alice;
	seed_v2("v2-request-chain", &m);
	m.tamper_signature = true;
	seed_v2("v2-request-bad-signature", &m);
	m.tamper_signature = false;
	m.caller = "choria=bob";
	seed_v2("v2-request-caller-mismatch", &m);

	/* A server registering with a direct token. */
	ts = choria_v2_token_defaults(CHORIA_V2_SERVER, &alice, &org);
	toks[1] = v2_token(&ts);
	m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	m.caller_token = toks[1];
	m.signing_key = &alice;
	m.caller = "web1.example.net";
	m.sender = "web1.example.net";
	m.agent = "registration";
	seed_v2("v2-request-server", &m);

	/* Delegation. */
	ts = choria_v2_token_defaults(CHORIA_V2_DELEGATOR, &deleg, &org);
	toks[2] = v2_token(&ts);
	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	ts.permissions = "{\"signed_fleet_management\":true}";
	toks[3] = v2_token(&ts);
	m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	m.caller_token = toks[3];
	m.signer_token = toks[2];
	m.signing_key = &deleg;
	seed_v2("v2-request-delegated", &m);

	/* Tokens that fail: expired, malformed. */
	ts = choria_v2_token_defaults(CHORIA_V2_CLIENT, &alice, &org);
	ts.exp = FUZZ_NOW - 1;
	toks[4] = v2_token(&ts);
	m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	m.caller_token = toks[4];
	m.signing_key = &alice;
	seed_v2("v2-request-expired", &m);
	toks[5] =
		choria_v2_jwt_raw("{\"alg\":\"none\"}", "{\"purpose\":\"choria_client_id\"}", NULL);
	m.caller_token = toks[5];
	seed_v2("v2-request-bad-token", &m);

	m = choria_v2_msg_defaults(CHORIA_V2_REPLY);
	seed_v2("v2-reply", &m);
	m.hash = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
	seed_v2("v2-reply-wrong-hash", &m);
	for (size_t i = 0; i < sizeof(toks) / sizeof(toks[0]); i++)
		free(toks[i]);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: make-corpus DIR\n");
		return 2;
	}
	out_dir = argv[1];
	BIO *b = BIO_new_mem_buf(FUZZ_SIGNER_KEY_PEM, -1);
	EVP_PKEY *key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	BIO_free(b);
	if (!key)
		return 1;

	struct test_signer signer = {.key = key, .pem = FUZZ_SIGNER_PEM};
	struct test_signer privileged = {.key = key, .pem = FUZZ_PRIVILEGED_PEM};
	struct test_signer corrupt = {.key = key, .pem = FUZZ_SIGNER_PEM, .corrupt = true};
	struct choria_msg_spec s = choria_msg_defaults(CHORIA_MSG_REQUEST);

	s.sign = test_sign;
	s.sign_arg = &signer;
	seed("request-signed", &s);
	s.callerid = "choria=web1-alias.example.net";
	s.ensure_ascii = true;
	seed("request-signed-alias-ascii", &s);
	s = choria_msg_defaults(CHORIA_MSG_REQUEST);
	s.sign = test_sign;
	s.sign_arg = &privileged;
	s.callerid = "choria=someone.else";
	seed("request-privileged", &s);
	s.sign_arg = &corrupt;
	s.callerid = "choria=web1.example.net";
	seed("request-bad-signature", &s);
	s.sign_arg = &signer;
	s.callerid = "choria=web2.example.net";
	seed("request-caller-mismatch", &s);
	s = choria_msg_defaults(CHORIA_MSG_REQUEST);
	seed("request-insecure-registration", &s);
	s.pubcert = FUZZ_CA_PEM;
	s.signature = "c2lnbmF0dXJl";
	seed("request-ca-as-signer", &s);

	s = choria_msg_defaults(CHORIA_MSG_REPLY);
	seed("reply", &s);
	s.hash = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
	seed("reply-wrong-hash", &s);
	seeds_v2();

	EVP_PKEY_free(key);
	return failures ? 1 : 0;
}
