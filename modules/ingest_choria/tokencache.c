/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tokencache.c - see tokencache.h.
 *
 * Concurrency & locking: one mutex guards both tables, their counters and
 * the use clock; it is held only to find, copy or replace a slot. The salt
 * is written once at creation and read-only afterwards.
 */
#include "tokencache.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#define TOKENCACHE_WAYS 8
#define TOKENCACHE_SALT_LEN 32

struct tokencache_slot {
	bool used;
	uint64_t last_use;
	unsigned char key[TOKENCACHE_KEY_LEN];
	struct choria_token_verdict verdict;
};

struct tokencache_table {
	size_t n_sets;
	struct tokencache_slot *slots; /* n_sets * TOKENCACHE_WAYS */
	size_t entries;
};

struct tokencache {
	pthread_mutex_t lock;
	unsigned char salt[TOKENCACHE_SALT_LEN];
	EVP_MD *sha256; /* fetched once, not at every digest */
	struct tokencache_table trusted, rejected;
	uint64_t clock;
	uint64_t hits, misses, inserts, evictions;
};

static int tokencache_table_init(struct tokencache_table *t, size_t capacity)
{
	t->n_sets = (capacity + TOKENCACHE_WAYS - 1) / TOKENCACHE_WAYS;
	if (t->n_sets == 0)
		t->n_sets = 1;
	t->slots = calloc(t->n_sets * TOKENCACHE_WAYS, sizeof(*t->slots));
	return t->slots ? 0 : -ENOMEM;
}

static void tokencache_table_fini(struct tokencache_table *t)
{
	if (!t->slots)
		return;
	for (size_t i = 0; i < t->n_sets * TOKENCACHE_WAYS; i++)
		choria_token_verdict_clear(&t->slots[i].verdict);
	free(t->slots);
}

int tokencache_new(struct tokencache **out, size_t capacity)
{
	struct tokencache *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!c->sha256 || RAND_bytes(c->salt, sizeof(c->salt)) != 1 ||
	    tokencache_table_init(&c->trusted, capacity) != 0 ||
	    tokencache_table_init(&c->rejected, capacity / 4) != 0) {
		ERR_clear_error();
		EVP_MD_free(c->sha256);
		tokencache_table_fini(&c->trusted);
		tokencache_table_fini(&c->rejected);
		free(c);
		return -ENOMEM;
	}
	pthread_mutex_init(&c->lock, NULL);
	*out = c;
	return 0;
}

void tokencache_free(struct tokencache *c)
{
	if (!c)
		return;
	tokencache_table_fini(&c->trusted);
	tokencache_table_fini(&c->rejected);
	EVP_MD_free(c->sha256);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

int tokencache_key(const struct tokencache *c, EVP_MD_CTX *md, const char *token, size_t len,
		   uint32_t under, unsigned char key[TOKENCACHE_KEY_LEN])
{
	unsigned char u[4] = {(unsigned char)(under >> 24), (unsigned char)(under >> 16),
			      (unsigned char)(under >> 8), (unsigned char)under};
	unsigned int n = 0;

	if (EVP_DigestInit_ex(md, c->sha256, NULL) != 1 ||
	    EVP_DigestUpdate(md, c->salt, sizeof(c->salt)) != 1 ||
	    EVP_DigestUpdate(md, u, sizeof(u)) != 1 || EVP_DigestUpdate(md, token, len) != 1 ||
	    EVP_DigestFinal_ex(md, key, &n) != 1 || n != TOKENCACHE_KEY_LEN) {
		ERR_clear_error();
		return -EIO;
	}
	return 0;
}

/* The set a key falls in: its first bytes, already uniform (salted hash). */
static struct tokencache_slot *tokencache_set(const struct tokencache_table *t,
					      const unsigned char key[TOKENCACHE_KEY_LEN])
{
	uint64_t h;

	memcpy(&h, key, sizeof(h));
	return &t->slots[(h % t->n_sets) * TOKENCACHE_WAYS];
}

static struct tokencache_slot *tokencache_find(const struct tokencache_table *t,
					       const unsigned char key[TOKENCACHE_KEY_LEN])
{
	struct tokencache_slot *set = tokencache_set(t, key);

	for (int i = 0; i < TOKENCACHE_WAYS; i++)
		if (set[i].used && memcmp(set[i].key, key, TOKENCACHE_KEY_LEN) == 0)
			return &set[i];
	return NULL;
}

int tokencache_get(struct tokencache *c, const unsigned char key[TOKENCACHE_KEY_LEN],
		   struct choria_token_verdict *out)
{
	struct tokencache_slot *s;

	pthread_mutex_lock(&c->lock);
	s = tokencache_find(&c->trusted, key);
	if (!s)
		s = tokencache_find(&c->rejected, key);
	if (s) {
		s->last_use = ++c->clock;
		*out = s->verdict;
		if (out->holder)
			EVP_PKEY_up_ref(out->holder);
		c->hits++;
	} else {
		c->misses++;
	}
	pthread_mutex_unlock(&c->lock);
	return s != NULL;
}

void tokencache_put(struct tokencache *c, const unsigned char key[TOKENCACHE_KEY_LEN],
		    const struct choria_token_verdict *v, bool usable)
{
	struct tokencache_table *t = usable && !v->reason ? &c->trusted : &c->rejected;
	struct tokencache_slot *set, *slot = NULL;

	pthread_mutex_lock(&c->lock);
	if (tokencache_find(&c->trusted, key) || tokencache_find(&c->rejected, key)) {
		/* Another thread stored it first. */
		pthread_mutex_unlock(&c->lock);
		return;
	}
	set = tokencache_set(t, key);
	for (int i = 0; i < TOKENCACHE_WAYS; i++) {
		if (!set[i].used) {
			slot = &set[i];
			break;
		}
		if (!slot || set[i].last_use < slot->last_use)
			slot = &set[i];
	}
	if (slot->used) {
		choria_token_verdict_clear(&slot->verdict);
		c->evictions++;
	} else {
		t->entries++;
	}
	slot->used = true;
	slot->last_use = ++c->clock;
	memcpy(slot->key, key, TOKENCACHE_KEY_LEN);
	slot->verdict = *v;
	if (slot->verdict.holder)
		EVP_PKEY_up_ref(slot->verdict.holder);
	c->inserts++;
	pthread_mutex_unlock(&c->lock);
}

void tokencache_get_stats(struct tokencache *c, struct tokencache_stats *out)
{
	pthread_mutex_lock(&c->lock);
	out->hits = c->hits;
	out->misses = c->misses;
	out->inserts = c->inserts;
	out->evictions = c->evictions;
	out->entries = c->trusted.entries;
	out->capacity = c->trusted.n_sets * TOKENCACHE_WAYS;
	out->rejected_entries = c->rejected.entries;
	out->rejected_capacity = c->rejected.n_sets * TOKENCACHE_WAYS;
	pthread_mutex_unlock(&c->lock);
}
