/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certcache.c - the certificate verdict cache: a chained hash table over
 * two doubly linked recency lists (trusted verdicts, rejections), all under
 * one mutex, with reference counted
 * entries so that a verdict stays usable while a caller checks a signature
 * with it, even if the cache evicts it meanwhile.
 *
 * Concurrency & locking:
 * - `lock` guards the table, the lists, their counts and every entry's links;
 *   it is held only to find, link, unlink and move entries, never while a
 *   certificate is parsed or a signature checked.
 * - An entry's `refs` counts the cache's own reference (while linked) and
 *   one per holder; it is atomic so that release() needs no lock. The
 *   last reference frees the entry. A held verdict is read-only.
 * - The statistics are relaxed atomics: they are for tests and logs.
 */
#include "certcache.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#define CERTCACHE_SALT_LEN 16

struct certcache_entry {
	struct cert_verdict v; /* first: release() maps a verdict back */
	unsigned char key[CERTCACHE_KEY_LEN];
	atomic_uint refs;
	struct certcache_entry *chain;       /* next in the bucket */
	struct certcache_entry *prev, *next; /* recency: head is the newest */
};

/* One recency order with its bound: an entry is in the list of its kind,
 * which never changes (a verdict is read-only once cached). */
struct certcache_lru {
	struct certcache_entry *head, *tail; /* head is the newest */
	size_t entries, capacity;
	atomic_uint_fast64_t evictions;
};

enum {
	LRU_TRUSTED,
	LRU_REJECTED
};

struct certcache {
	pthread_mutex_t lock;
	struct certcache_entry **buckets;
	size_t mask; /* buckets - 1, a power of two minus one */
	struct certcache_lru lru[2];
	EVP_MD *sha256;
	unsigned char salt[CERTCACHE_SALT_LEN];
	atomic_uint_fast64_t hits, misses, inserts;
};

void cert_verdict_clear(struct cert_verdict *v)
{
	if (!v)
		return;
	EVP_PKEY_CTX_free(v->verify_ctx);
	EVP_PKEY_free(v->pkey);
	free(v->names);
	memset(v, 0, sizeof(*v));
}

static void choria_certcache_entry_unref(struct certcache_entry *e)
{
	if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1)
		return;
	cert_verdict_clear(&e->v);
	free(e);
}

int certcache_new(struct certcache **out, size_t capacity)
{
	struct certcache *c;
	size_t n = 16;

	*out = NULL;
	if (capacity < 1)
		capacity = 1;
	size_t rejected = CERTCACHE_REJECTED_ROOM(capacity);
	while (n < capacity + rejected && n < ((size_t)1 << 30))
		n <<= 1;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->buckets = calloc(n, sizeof(*c->buckets));
	c->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!c->buckets || !c->sha256 || RAND_bytes(c->salt, sizeof(c->salt)) != 1 ||
	    pthread_mutex_init(&c->lock, NULL) != 0) {
		EVP_MD_free(c->sha256);
		free(c->buckets);
		free(c);
		return -ENOMEM;
	}
	c->mask = n - 1;
	c->lru[LRU_TRUSTED].capacity = capacity;
	c->lru[LRU_REJECTED].capacity = rejected;
	atomic_init(&c->hits, 0);
	atomic_init(&c->misses, 0);
	atomic_init(&c->inserts, 0);
	atomic_init(&c->lru[LRU_TRUSTED].evictions, 0);
	atomic_init(&c->lru[LRU_REJECTED].evictions, 0);
	*out = c;
	return 0;
}

void certcache_free(struct certcache *c)
{
	struct certcache_entry *e, *next;

	if (!c)
		return;
	for (int k = 0; k < 2; k++) {
		for (e = c->lru[k].head; e; e = next) {
			next = e->next;
			choria_certcache_entry_unref(e);
		}
	}
	pthread_mutex_destroy(&c->lock);
	EVP_MD_free(c->sha256);
	free(c->buckets);
	free(c);
}

int certcache_key(const struct certcache *c, EVP_MD_CTX *md, const char *pem, size_t len,
		  unsigned char key[CERTCACHE_KEY_LEN])
{
	EVP_MD_CTX *own = md ? NULL : EVP_MD_CTX_new();
	unsigned int n = 0;
	int ok;

	if (!md)
		md = own;
	ok = md && EVP_DigestInit_ex(md, c->sha256, NULL) &&
	     EVP_DigestUpdate(md, c->salt, sizeof(c->salt)) && EVP_DigestUpdate(md, pem, len) &&
	     EVP_DigestFinal_ex(md, key, &n) && n == CERTCACHE_KEY_LEN;
	EVP_MD_CTX_free(own);
	return ok ? 0 : -EIO;
}

/* The key is a salted SHA-256: any 8 of its bytes are as good as any hash. */
static size_t choria_certcache_bucket(const struct certcache *c, const unsigned char *key)
{
	uint64_t h;

	memcpy(&h, key, sizeof(h));
	return (size_t)h & c->mask;
}

/* Under the lock. */
static struct certcache_entry *choria_certcache_find(struct certcache *c, const unsigned char *key)
{
	for (struct certcache_entry *e = c->buckets[choria_certcache_bucket(c, key)]; e;
	     e = e->chain)
		if (memcmp(e->key, key, CERTCACHE_KEY_LEN) == 0)
			return e;
	return NULL;
}

static struct certcache_lru *choria_certcache_lru_of(struct certcache *c,
						     const struct certcache_entry *e)
{
	return &c->lru[e->v.reason ? LRU_REJECTED : LRU_TRUSTED];
}

/* Under the lock. */
static void choria_certcache_list_unlink(struct certcache_lru *lru, struct certcache_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		lru->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		lru->tail = e->prev;
	e->prev = e->next = NULL;
}

/* Under the lock. */
static void choria_certcache_list_push(struct certcache_lru *lru, struct certcache_entry *e)
{
	e->prev = NULL;
	e->next = lru->head;
	if (lru->head)
		lru->head->prev = e;
	lru->head = e;
	if (!lru->tail)
		lru->tail = e;
}

/* Under the lock: take `e` out of its bucket and the list; the caller
 * drops the cache's reference after unlocking. */
static void choria_certcache_remove(struct certcache *c, struct certcache_entry *e)
{
	struct certcache_entry **pp;

	for (pp = &c->buckets[choria_certcache_bucket(c, e->key)]; *pp; pp = &(*pp)->chain) {
		if (*pp == e) {
			*pp = e->chain;
			break;
		}
	}
	struct certcache_lru *lru = choria_certcache_lru_of(c, e);
	choria_certcache_list_unlink(lru, e);
	lru->entries--;
}

/* Under the lock: take the least recently used entry of `lru` out. */
static struct certcache_entry *choria_certcache_evict(struct certcache *c,
						      struct certcache_lru *lru)
{
	struct certcache_entry *e = lru->tail;

	if (e)
		choria_certcache_remove(c, e);
	return e;
}

const struct cert_verdict *certcache_get(struct certcache *c,
					 const unsigned char key[CERTCACHE_KEY_LEN])
{
	struct certcache_entry *e;

	pthread_mutex_lock(&c->lock);
	e = choria_certcache_find(c, key);
	if (e) {
		atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
		struct certcache_lru *lru = choria_certcache_lru_of(c, e);
		if (lru->head != e) {
			choria_certcache_list_unlink(lru, e);
			choria_certcache_list_push(lru, e);
		}
	}
	pthread_mutex_unlock(&c->lock);
	atomic_fetch_add_explicit(e ? &c->hits : &c->misses, 1, memory_order_relaxed);
	return e ? &e->v : NULL;
}

const struct cert_verdict *certcache_put(struct certcache *c,
					 const unsigned char key[CERTCACHE_KEY_LEN],
					 struct cert_verdict *v)
{
	struct certcache_entry *e = calloc(1, sizeof(*e)), *old, *evicted = NULL;
	size_t b;

	if (!e) {
		cert_verdict_clear(v);
		return NULL;
	}
	e->v = *v;
	memset(v, 0, sizeof(*v));
	memcpy(e->key, key, CERTCACHE_KEY_LEN);
	atomic_init(&e->refs, 2); /* the cache's and the caller's */

	pthread_mutex_lock(&c->lock);
	old = choria_certcache_find(c, key);
	if (old) {
		/* Another thread checked the same certificate meanwhile. */
		atomic_fetch_add_explicit(&old->refs, 1, memory_order_relaxed);
		pthread_mutex_unlock(&c->lock);
		cert_verdict_clear(&e->v);
		free(e);
		return &old->v;
	}
	/* A new verdict only ever pushes out one of its own kind. */
	struct certcache_lru *lru = choria_certcache_lru_of(c, e);
	if (lru->entries >= lru->capacity)
		evicted = choria_certcache_evict(c, lru);
	b = choria_certcache_bucket(c, key);
	e->chain = c->buckets[b];
	c->buckets[b] = e;
	choria_certcache_list_push(lru, e);
	lru->entries++;
	pthread_mutex_unlock(&c->lock);

	atomic_fetch_add_explicit(&c->inserts, 1, memory_order_relaxed);
	if (evicted) {
		atomic_fetch_add_explicit(&lru->evictions, 1, memory_order_relaxed);
		choria_certcache_entry_unref(evicted);
	}
	return &e->v;
}

void certcache_forget(struct certcache *c, const unsigned char key[CERTCACHE_KEY_LEN],
		      const struct cert_verdict *v)
{
	struct certcache_entry *e;

	pthread_mutex_lock(&c->lock);
	e = choria_certcache_find(c, key);
	if (e && &e->v == v)
		choria_certcache_remove(c, e);
	else
		e = NULL;
	pthread_mutex_unlock(&c->lock);
	if (e)
		choria_certcache_entry_unref(e); /* the cache's reference */
}

void certcache_release(struct certcache *c, const struct cert_verdict *v)
{
	(void)c;
	if (!v)
		return;
	choria_certcache_entry_unref(
		(struct certcache_entry *)(void *)((char *)(uintptr_t)v -
						   offsetof(struct certcache_entry, v)));
}

void certcache_get_stats(struct certcache *c, struct certcache_stats *out)
{
	out->hits = atomic_load_explicit(&c->hits, memory_order_relaxed);
	out->misses = atomic_load_explicit(&c->misses, memory_order_relaxed);
	out->inserts = atomic_load_explicit(&c->inserts, memory_order_relaxed);
	out->evictions = atomic_load_explicit(&c->lru[LRU_TRUSTED].evictions, memory_order_relaxed);
	out->rejected_evictions =
		atomic_load_explicit(&c->lru[LRU_REJECTED].evictions, memory_order_relaxed);
	pthread_mutex_lock(&c->lock);
	out->entries = c->lru[LRU_TRUSTED].entries;
	out->capacity = c->lru[LRU_TRUSTED].capacity;
	out->rejected_entries = c->lru[LRU_REJECTED].entries;
	out->rejected_capacity = c->lru[LRU_REJECTED].capacity;
	pthread_mutex_unlock(&c->lock);
}
