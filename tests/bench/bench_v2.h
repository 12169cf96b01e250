/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The benchmark's Choria protocol v2 fleet: an organisation issuer, a
 * provisioner it made a chain issuer, and per node an ed25519 key and a
 * server token from the provisioner. Its messages are registration as v2
 * servers publish it: the server token as the caller, the node's identity
 * as `caller`, signed with the node's key.
 */
#ifndef CAD_BENCH_V2_H
#define CAD_BENCH_V2_H

#include <stddef.h>

#include "choria_v2.h"
#include "corpus.h"

struct bench_v2_fleet {
	struct choria_v2_key org, provisioner;
	struct choria_v2_chain chain;
	struct choria_v2_key *node; /* node i's key */
	char **token;               /* node i's server token */
	size_t n_nodes;
};

/* Names as v1's: node i is "node-<i>.example.net". Returns 0 or -1. */
int bench_v2_fleet_make(struct bench_v2_fleet *f, size_t n_nodes);
void bench_v2_fleet_free(struct bench_v2_fleet *f);

/* n requests, sender i % n_nodes, the same bodies as v1's corpus. */
int corpus_build_v2(struct corpus *c, size_t n, const struct bench_v2_fleet *f, unsigned threads);

/* The length of the bytes a v2 corpus message signs (its request). */
size_t bench_v2_signed_len(const struct bench_v2_fleet *f);

/* ed25519 verifications of a message of `len` bytes per second of one
 * core's CPU time, measured over about two seconds of it. */
double bench_v2_verify_limit(size_t len);

#endif
