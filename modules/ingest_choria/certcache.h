/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certcache.h - a bounded, thread-safe cache of certificate verdicts for
 * the choria ingest, keyed by a salted SHA-256 of the certificate's PEM
 * text, so that a signer's chain is checked and its PEM parsed once, not
 * for every message it signs.
 *
 * Trusted verdicts (the chain leads to the CA) and rejections are kept
 * apart, each with its own bound and its own least-recently-used order:
 * anyone can send new untrusted certificates, as many as they like, and
 * those must never push the fleet's verdicts out. Rejections get a
 * quarter of the room.
 *
 * Pure: no NATS, no host; verify.c fills the verdicts.
 */
#ifndef CHORIA_CERTCACHE_H
#define CHORIA_CERTCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define CERTCACHE_KEY_LEN 32 /* SHA-256 */
#define CERTCACHE_DETAIL_LEN 160

/*
 * What is known about one certificate once its chain was checked. Nothing
 * in it depends on the time of checking: the validity window is kept and
 * compared with the clock for every message.
 */
struct cert_verdict {
	const char *reason;                /* NULL: chains to the CA; else a reject label
	                         (string literal): bad_cert, untrusted_cert,
	                         cert_purpose */
	char detail[CERTCACHE_DETAIL_LEN]; /* why, when reason is set */
	EVP_PKEY *pkey;                    /* trusted only: the signer's public key */
	EVP_PKEY_CTX *verify_ctx;          /* trusted only: pkey set up for RSA PKCS#1
	                         v1.5 SHA-256 verification, a template that
	                         is duplicated, never used itself, so that
	                         threads share it read-only */
	int64_t not_before;                /* trusted only: the window in which the whole */
	int64_t not_after;                 /* chain is valid, Unix seconds */
	int64_t checked_at;                /* when the chain was chosen, Unix seconds */
	bool privileged;                   /* a name matches privileged_certs */
	bool allowed;                      /* allowed_certs is empty or a name matches it */
	char *names;                       /* the names, each NUL-terminated, one after
	                         the other: the CNs, then the DNS subject
	                         alternative names; malloc'd */
	size_t names_len;                  /* bytes in names */
	unsigned n_names;
};

/* Release what a verdict holds (not the structure); accepts a zeroed one. */
void cert_verdict_clear(struct cert_verdict *v);

struct certcache;

struct certcache_stats {
	uint64_t hits, misses, inserts;
	uint64_t evictions, rejected_evictions;
	size_t entries, capacity;                   /* trusted verdicts */
	size_t rejected_entries, rejected_capacity; /* rejections */
};

/* A cache of at most `capacity` (>= 1) trusted verdicts and
 * CERTCACHE_REJECTED_ROOM(capacity) rejections. Returns 0 or -ENOMEM. */
#define CERTCACHE_REJECTED_ROOM(capacity) ((capacity) / 4 > 0 ? (capacity) / 4 : 1)
int certcache_new(struct certcache **out, size_t capacity);
/* Accepts NULL. No verdict may be held any more. */
void certcache_free(struct certcache *c);

/*
 * The key for a PEM text: SHA-256 over the cache's random salt and the
 * text, so that nobody sending certificates can choose where they land in
 * the table. `md` is a digest context the caller reuses (no allocation),
 * or NULL. Returns 0, or -EIO when OpenSSL fails.
 */
int certcache_key(const struct certcache *c, EVP_MD_CTX *md, const char *pem, size_t len,
		  unsigned char key[CERTCACHE_KEY_LEN]);

/* The verdict for `key`, held for the caller (release it), or NULL. */
const struct cert_verdict *certcache_get(struct certcache *c,
					 const unsigned char key[CERTCACHE_KEY_LEN]);

/*
 * Store *v under `key`; the cache takes what *v holds and clears *v.
 * Returns the verdict now cached, held for the caller: the new one, or the
 * one another thread stored first for the same key. NULL when out of
 * memory (*v is cleared then too).
 */
const struct cert_verdict *certcache_put(struct certcache *c,
					 const unsigned char key[CERTCACHE_KEY_LEN],
					 struct cert_verdict *v);

/* Take the verdict `v` (held by the caller, who still releases it) out of
 * the cache, if it is still the one under `key`. */
void certcache_forget(struct certcache *c, const unsigned char key[CERTCACHE_KEY_LEN],
		      const struct cert_verdict *v);

/* Give back a verdict from get() or put(); accepts NULL. */
void certcache_release(struct certcache *c, const struct cert_verdict *v);

void certcache_get_stats(struct certcache *c, struct certcache_stats *out);

#endif
