/* SPDX-License-Identifier: Apache-2.0 */
/*
 * token.h - Choria protocol v2 tokens: the keys a fleet trusts (`issuers`
 * or `trusted_signers`), and the verdict on one token against them: its
 * claims read, its signature and issuer chain checked (PROTOCOL-v2.md §5,
 * §6). Nothing in a verdict depends on the time it was made: the validity
 * window is kept for the caller to compare with the clock, so that a
 * verdict can be cached (tokencache.h).
 */
#ifndef CHORIA_TOKEN_H
#define CHORIA_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "ed25519.h"
#include "json_dom.h"

/* What a token is for. */
enum choria_token_purpose {
	CHORIA_TOKEN_OTHER,  /* provisioning, or anything else */
	CHORIA_TOKEN_CLIENT, /* choria_client_id */
	CHORIA_TOKEN_SERVER, /* choria_server */
};

/* The trusted keys: organisation issuers, picked by a token's `ou`, or
 * trusted signers, each tried in turn. */
struct choria_trust_key {
	char *name; /* issuers: the organisation unit; trusted signers: NULL */
	unsigned char raw[CHORIA_ED25519_KEY_LEN];
	char hex[2 * CHORIA_ED25519_KEY_LEN + 1];
	EVP_PKEY *pkey;
};

struct choria_trust {
	bool by_ou; /* issuers */
	unsigned n;
	struct choria_trust_key *keys;
};

/* Add one entry of `issuers` ("<name>=<64 hex>", by_ou set) or of
 * `trusted_signers` ("<64 hex>"). Returns 0, -EINVAL with `why`, or
 * -ENOMEM. */
int choria_trust_add(struct choria_trust *t, const char *entry, bool issuer, char *why,
		     size_t why_len);
void choria_trust_clear(struct choria_trust *t);

/* Which trusted key a token must be under: any (the one its `ou` names,
 * or the first trusted signer that verifies it), or a given index (a
 * delegated caller, under its delegator's key). */
#define CHORIA_TOKEN_ANY_KEY UINT32_MAX
/* No key: the claims are read (purpose known) and the verdict is
 * untrusted_issuer, for a delegated caller whose signer is not trusted. */
#define CHORIA_TOKEN_NO_KEY (UINT32_MAX - 1)

#define CHORIA_TOKEN_NAME_MAX 256
#define CHORIA_TOKEN_DETAIL_MAX 160

struct choria_token_verdict {
	const char *reason; /* NULL: trusted; else bad_token or untrusted_issuer */
	char detail[CHORIA_TOKEN_DETAIL_MAX];
	bool parsed; /* the claims were read: purpose is known */
	enum choria_token_purpose purpose;
	uint32_t key_index; /* trusted: the key K that vouched for it */
	EVP_PKEY *holder;   /* trusted: its public_key, one reference held */
	int64_t not_before; /* valid from (nbf), INT64_MIN when there is none */
	int64_t expires;    /* first second it is no longer valid: min(exp,
	                       issexp + 1) */
	bool fleet_management, signed_fleet_management, delegator;
	size_t name_len; /* clients: callerid; servers: identity */
	char name[CHORIA_TOKEN_NAME_MAX];
};

/* Release the verdict's key reference; accepts a zeroed verdict. */
void choria_token_verdict_clear(struct choria_token_verdict *v);

/*
 * The verdict on `len` bytes of token text under key `key`
 * (CHORIA_TOKEN_ANY_KEY, CHORIA_TOKEN_NO_KEY or an index into t->keys), with
 * JSON parser `p` and digest context `md` reused. Returns 0 with *v filled
 * (trusted or not), or -ENOMEM.
 */
int choria_token_check(const struct choria_trust *t, struct jdom_parser *p, EVP_MD_CTX *md,
		       const char *token, size_t len, uint32_t key, struct choria_token_verdict *v);

/* The Unix time of a KSUID (27 base62 characters encoding 20 bytes, the
 * first 4 a big-endian count of seconds since 1 400 000 000). False when
 * `s` is not one. */
bool choria_ksuid_time(const char *s, size_t n, int64_t *unix_s);

#endif
