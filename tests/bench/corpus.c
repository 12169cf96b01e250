/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Building is parallel: signing 200k messages with RSA-2048 is the slow
 * part of a benchmark run.
 */
#include "corpus.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "choria_msg.h"

uint64_t corpus_hash(const void *data, size_t len)
{
	uint64_t h = 1469598103934665603ull;
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

#define CORPUS_V2_PREFIX "0bench2"

int64_t corpus_index_of_request_id(const char *rid, size_t len)
{
	char tail[25];
	if (len == 32) {
		memcpy(tail, rid + 8, 24);
		tail[24] = '\0';
		return (int64_t)strtoull(tail, NULL, 16);
	}
	size_t plen = strlen(CORPUS_V2_PREFIX);
	if (len == 27 && memcmp(rid, CORPUS_V2_PREFIX, plen) == 0) {
		memcpy(tail, rid + plen, 27 - plen);
		tail[27 - plen] = '\0';
		return (int64_t)strtoull(tail, NULL, 10);
	}
	return -1;
}

void corpus_request_id(char out[33], size_t i)
{
	snprintf(out, 33, "%08x%024zx", 0xbe7c4u, i);
}

/* A fixed prefix and the index in 20 decimal digits: base62 characters
 * whose value stays below a KSUID's maximum. */
void corpus_request_id_v2(char out[28], size_t i)
{
	snprintf(out, 28, CORPUS_V2_PREFIX "%020zu", i);
}

void corpus_body(char *out, size_t len, const char *name, size_t i)
{
	char pad[901];
	memset(pad, 'x', 900);
	pad[900] = '\0';
	snprintf(out, len,
		 "{\"agent\":\"registration\",\"identity\":\"%s\",\"facts\":{\"os\":"
		 "\"debian\",\"index\":%zu,\"padding\":\"%s\"}}",
		 name, i, pad);
}

struct signer {
	const struct bench_pki *pki;
	size_t sender;
};

static int corpus_sign(void *arg, const char *message, size_t len, char **signature, char **pubcert)
{
	struct signer *s = arg;
	*signature = bench_sign(s->pki->node_key, message, len);
	*pubcert = strdup(s->pki->node_pem[s->sender]);
	return *signature && *pubcert ? 0 : -1;
}

static char *corpus_make_v1(const void *arg, size_t i, size_t *len)
{
	const struct bench_pki *pki = arg;
	size_t sender = i % pki->n_nodes;
	char name[64], caller[80], rid[33], body[1400];
	snprintf(name, sizeof(name), "node-%zu.example.net", sender);
	corpus_request_id(rid, i);
	corpus_body(body, sizeof(body), name, i);
	struct signer s = {pki, sender};
	struct choria_msg_spec spec =
		choria_msg_request_from(name, caller, sizeof(caller), rid, body);
	spec.time = (int64_t)time(NULL);
	spec.sign = corpus_sign;
	spec.sign_arg = &s;
	return choria_msg_build(&spec, len);
}

struct job {
	struct corpus *c;
	corpus_make_fn make;
	const void *arg;
	size_t from, to;
	int failed;
};

static void *build_range(void *arg)
{
	struct job *j = arg;
	for (size_t i = j->from; i < j->to; i++) {
		j->c->wire[i] = j->make(j->arg, i, &j->c->len[i]);
		if (!j->c->wire[i]) {
			j->failed = 1;
			return NULL;
		}
		j->c->hash[i] = corpus_hash(j->c->wire[i], j->c->len[i]);
	}
	return NULL;
}

int corpus_build_with(struct corpus *c, size_t n, corpus_make_fn make, const void *arg,
		      unsigned threads)
{
	memset(c, 0, sizeof(*c));
	c->n = n;
	c->wire = calloc(n, sizeof(char *));
	c->len = calloc(n, sizeof(size_t));
	c->hash = calloc(n, sizeof(uint64_t));
	if (!c->wire || !c->len || !c->hash)
		return -1;
	pthread_t t[64];
	struct job jobs[64];
	if (threads > 64)
		threads = 64;
	if (threads < 1)
		threads = 1;
	for (unsigned k = 0; k < threads; k++) {
		jobs[k] = (struct job){c, make, arg, n * k / threads, n * (k + 1) / threads, 0};
		pthread_create(&t[k], NULL, build_range, &jobs[k]);
	}
	int failed = 0;
	for (unsigned k = 0; k < threads; k++) {
		pthread_join(t[k], NULL);
		failed |= jobs[k].failed;
	}
	if (failed)
		return -1;
	size_t cap = 16;
	while (cap < n * 2)
		cap *= 2;
	c->map = malloc(cap * sizeof(int64_t));
	c->map_mask = cap - 1;
	for (size_t i = 0; i < cap; i++)
		c->map[i] = -1;
	for (size_t i = 0; i < n; i++) {
		size_t s = c->hash[i] & c->map_mask;
		while (c->map[s] >= 0)
			s = (s + 1) & c->map_mask;
		c->map[s] = (int64_t)i;
	}
	return 0;
}

int corpus_build(struct corpus *c, size_t n, const struct bench_pki *pki, unsigned threads)
{
	return corpus_build_with(c, n, corpus_make_v1, pki, threads);
}

int64_t corpus_find(const struct corpus *c, const void *data, size_t len)
{
	uint64_t h = corpus_hash(data, len);
	for (size_t s = h & c->map_mask; c->map[s] >= 0; s = (s + 1) & c->map_mask) {
		int64_t i = c->map[s];
		if (c->hash[i] == h && c->len[i] == len && memcmp(c->wire[i], data, len) == 0)
			return i;
	}
	return -1;
}

void corpus_free(struct corpus *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->wire[i]);
	free(c->wire);
	free(c->len);
	free(c->hash);
	free(c->map);
}
