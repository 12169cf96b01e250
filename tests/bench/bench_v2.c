/* SPDX-License-Identifier: Apache-2.0 */
#include "bench_v2.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int bench_v2_fleet_make(struct bench_v2_fleet *f, size_t n)
{
	memset(f, 0, sizeof(*f));
	if (choria_v2_key_random(&f->org) || choria_v2_key_random(&f->provisioner))
		return -1;
	/* tokens valid from an hour ago for a day, as a fleet's would be now */
	int64_t now = (int64_t)time(NULL);
	struct choria_v2_token_spec cs =
		choria_v2_token_defaults(CHORIA_V2_CHAIN_ISSUER, &f->provisioner, &f->org);
	cs.name = "provisioner";
	cs.iat = cs.nbf = now - 3600;
	cs.exp = now + 2 * 86400;
	char *ct = choria_v2_chain_issuer(&cs, &f->chain);
	if (!ct)
		return -1;
	free(ct);
	f->node = calloc(n, sizeof(*f->node));
	f->token = calloc(n, sizeof(*f->token));
	if (!f->node || !f->token)
		return -1;
	f->n_nodes = n;
	for (size_t i = 0; i < n; i++) {
		char name[64];
		snprintf(name, sizeof(name), "node-%zu.example.net", i);
		if (choria_v2_key_random(&f->node[i]))
			return -1;
		struct choria_v2_token_spec s =
			choria_v2_token_defaults(CHORIA_V2_SERVER, &f->node[i], NULL);
		s.chain = &f->chain;
		s.name = name;
		s.iat = s.nbf = now - 3600;
		s.exp = now + 86400;
		if (!(f->token[i] = choria_v2_token(&s)))
			return -1;
	}
	return 0;
}

void bench_v2_fleet_free(struct bench_v2_fleet *f)
{
	for (size_t i = 0; f->token && i < f->n_nodes; i++)
		free(f->token[i]);
	free(f->token);
	free(f->node);
}

static char *corpus_make_v2(const void *arg, size_t i, size_t *len)
{
	const struct bench_v2_fleet *f = arg;
	size_t sender = i % f->n_nodes;
	char name[64], rid[28], body[1400];
	snprintf(name, sizeof(name), "node-%zu.example.net", sender);
	corpus_request_id_v2(rid, i);
	corpus_body(body, sizeof(body), name, i);
	struct choria_v2_msg_spec m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	m.id = rid;
	m.body = body;
	m.sender = name;
	m.caller = name;
	m.agent = "registration";
	m.reply_to = "dev.null";
	m.time = (int64_t)time(NULL) * 1000000000LL + (int64_t)(i % 1000000000);
	m.caller_token = f->token[sender];
	m.signing_key = &f->node[sender];
	return choria_v2_build(&m, len);
}

int corpus_build_v2(struct corpus *c, size_t n, const struct bench_v2_fleet *f, unsigned threads)
{
	return corpus_build_with(c, n, corpus_make_v2, f, threads);
}

size_t bench_v2_signed_len(const struct bench_v2_fleet *f)
{
	size_t len = 0;
	char *inner = NULL, *wire = NULL;
	struct choria_v2_msg_spec m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	char body[1400], rid[28];
	corpus_request_id_v2(rid, 0);
	corpus_body(body, sizeof(body), "node-0.example.net", 0);
	m.id = rid;
	m.body = body;
	m.sender = m.caller = "node-0.example.net";
	m.agent = "registration";
	m.caller_token = f->token[0];
	m.signing_key = &f->node[0];
	wire = choria_v2_build_ex(&m, NULL, &inner, NULL);
	if (inner)
		len = strlen(inner);
	free(inner);
	free(wire);
	return len;
}

/* This thread's CPU time: on shared cores, a wall clock would count the
 * time other processes held the core as the verification's. */
static double bench_v2_cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double bench_v2_verify_limit(size_t len)
{
	struct choria_v2_key k;
	unsigned char sig[64];
	char *msg = malloc(len ? len : 1);
	if (!msg || choria_v2_key_random(&k)) {
		free(msg);
		return 0;
	}
	memset(msg, 'x', len);
	EVP_PKEY *pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, k.pub, 32);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	long done = 0;
	double t0 = bench_v2_cpu_now(), t = t0;
	if (pub && md && choria_v2_sign(&k, msg, len, sig) == 0) {
		do {
			for (int i = 0; i < 100; i++) {
				EVP_MD_CTX_reset(md);
				if (EVP_DigestVerifyInit(md, NULL, NULL, NULL, pub) == 1 &&
				    EVP_DigestVerify(md, sig, 64, (const unsigned char *)msg,
						     len) == 1)
					done++;
			}
			t = bench_v2_cpu_now();
		} while (t - t0 < 2.0);
	}
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pub);
	free(msg);
	return t > t0 ? (double)done / (t - t0) : 0;
}
