/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tokencache.h - a bounded, thread-safe cache of protocol v2 token
 * verdicts, keyed by a salted SHA-256 of the token text and of the key it
 * was checked under, so that a steady fleet's tokens are parsed and their
 * issuer chains checked once, not for every message.
 *
 * Verdicts that can let a request through and those that cannot are kept
 * apart, each in its own table (the second gets a quarter of the room), so
 * that tokens anyone can make up, or old genuine ones replayed, never push
 * the fleet's out. Each table is set-associative: a key
 * picks a set of a few slots, and the least recently used slot of the set
 * makes room. Lookups copy the verdict out (taking a reference on its
 * key), so nothing is held across the lock.
 */
#ifndef CHORIA_TOKENCACHE_H
#define CHORIA_TOKENCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "token.h"

#define TOKENCACHE_KEY_LEN 32

struct tokencache;

struct tokencache_stats {
	uint64_t hits, misses, inserts, evictions;
	size_t entries, capacity, rejected_entries, rejected_capacity;
};

/* At most `capacity` (>= 1) trusted verdicts and a quarter as many
 * rejections (at least one set). Returns 0 or -ENOMEM. */
int tokencache_new(struct tokencache **out, size_t capacity);
void tokencache_free(struct tokencache *c); /* accepts NULL */

/* The key of a token checked under trusted key `under`
 * (CHORIA_TOKEN_ANY_KEY or an index), with digest context `md` reused.
 * Returns 0 or -EIO. */
int tokencache_key(const struct tokencache *c, EVP_MD_CTX *md, const char *token, size_t len,
		   uint32_t under, unsigned char key[TOKENCACHE_KEY_LEN]);

/* Copy the verdict under `key` into *out (clear it with
 * choria_token_verdict_clear()) and return 1, or return 0. */
int tokencache_get(struct tokencache *c, const unsigned char key[TOKENCACHE_KEY_LEN],
		   struct choria_token_verdict *out);

/* Store a copy of *v under `key` (taking its own key reference): in the
 * fleet's table when `usable` (it may let a request through), else in the
 * rejections'. */
void tokencache_put(struct tokencache *c, const unsigned char key[TOKENCACHE_KEY_LEN],
		    const struct choria_token_verdict *v, bool usable);

void tokencache_get_stats(struct tokencache *c, struct tokencache_stats *out);

#endif
