/* SPDX-License-Identifier: Apache-2.0 */
/*
 * make_corpus - writes the seed corpus of fuzz_decode_verify into a folder:
 * requests signed with the fixed PKI (fixed_pki.h), privileged, unsigned
 * and tampered ones, replies with right and wrong hashes, each both as a
 * transport and as a bare secure layer (see the input format in
 * fuzz_decode_verify.c). `make fuzz-corpus` runs it; the output is kept in
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

/* Write `name` as a transport and `name`-secure as a bare secure layer. */
static void seed(const char *name, const struct choria_msg_spec *s)
{
	unsigned char kind = s->kind == CHORIA_MSG_REPLY ? 1 : 0;
	char inner_name[256];
	size_t len, inner_len = 0;
	char *wire = choria_msg_build(s, &len), *inner;

	if (!wire) {
		fprintf(stderr, "make_corpus: cannot build %s\n", name);
		failures++;
		return;
	}
	put(name, kind, wire, len);
	inner = secure_layer(wire, &inner_len);
	snprintf(inner_name, sizeof(inner_name), "%s-secure", name);
	if (inner)
		put(inner_name, kind | 2, inner, inner_len);
	free(inner);
	free(wire);
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

	EVP_PKEY_free(key);
	return failures ? 1 : 0;
}
