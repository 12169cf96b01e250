/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The benchmark's messages: Choria v1 registration requests from many
 * senders with bodies of about 1 KiB, each with its own request id and a
 * valid signature, built once and published by every run.
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

/* The index encoded in a request id made by corpus_build(), or -1. */
int64_t corpus_index_of_request_id(const char *rid, size_t len);

int corpus_build(struct corpus *c, size_t n, const struct bench_pki *pki, unsigned threads);
void corpus_free(struct corpus *c);
uint64_t corpus_hash(const void *data, size_t len);
/* The index of a message with these exact bytes, or -1. */
int64_t corpus_find(const struct corpus *c, const void *data, size_t len);

#endif
