/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The benchmark's messages: Choria registration requests from many
 * senders with bodies of about 1 KiB, each with its own request id and a
 * valid signature, built once and published by every run. v1's are made
 * here, v2's in bench_v2.c.
 */
#ifndef CAD_BENCH_CORPUS_H
#define CAD_BENCH_CORPUS_H

#include <stddef.h>
#include <stdint.h>

#include "bench_certs.h"

struct corpus {
	size_t n;
	char **wire; /* transport JSON of message i */
	size_t *len;
	uint64_t *hash; /* FNV-1a of wire[i], to find raw copies again */
	/* hash -> index, open addressing */
	size_t map_mask;
	int64_t *map;
};

/* The index encoded in a request id made by corpus_request_id() or
 * corpus_request_id_v2(), or -1. */
int64_t corpus_index_of_request_id(const char *rid, size_t len);
/* v1's 32 hex digits; v2's 27 base62 characters, as long as a KSUID. */
void corpus_request_id(char out[33], size_t i);
void corpus_request_id_v2(char out[28], size_t i);
/* The registration body of message i from `name`, about 1 KiB. */
void corpus_body(char *out, size_t len, const char *name, size_t i);

/* Message i's transport JSON (malloc'd, length in *len), or NULL. */
typedef char *(*corpus_make_fn)(const void *arg, size_t i, size_t *len);
/* Build n messages with make() on `threads` threads. */
int corpus_build_with(struct corpus *c, size_t n, corpus_make_fn make, const void *arg,
		      unsigned threads);
/* v1 requests, sender i % n_nodes signing with its certificate. */
int corpus_build(struct corpus *c, size_t n, const struct bench_pki *pki, unsigned threads);
void corpus_free(struct corpus *c);
uint64_t corpus_hash(const void *data, size_t len);
/* The index of a message with these exact bytes, or -1. */
int64_t corpus_find(const struct corpus *c, const void *data, size_t len);

#endif
