/* SPDX-License-Identifier: Apache-2.0 */
/*
 * verify_v2.h - what `security = verify` checks on a decoded protocol v2
 * request (PROTOCOL-v2.md §7): its caller token, and its signer token when
 * it is delegated, against the trusted keys; their purposes, permissions
 * and validity; the caller it names; and its ed25519 signature over the
 * request bytes. Token verdicts are cached (tokencache.h), so that a
 * cached request costs one ed25519 verification.
 *
 * verify.c builds one of these when `issuers` or `trusted_signers` is set
 * and hands it v2 requests; replies are hash-checked as in v1.
 */
#ifndef CHORIA_VERIFY_V2_H
#define CHORIA_VERIFY_V2_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "protocol.h"
#include "tokencache.h"

#define CHORIA_TOKEN_CACHE_DEFAULT 10000
#define CHORIA_TOKEN_CACHE_MAX 1000000

struct choria_v2_verifier;

/* Called for every configuration problem: the option at fault and why. */
typedef void (*choria_v2_error_fn)(void *arg, const char *option, const char *message);

/* The formatted message handed to `error`, when there is one: how both
 * protocols' verifiers report a configuration problem. */
void choria_config_report(choria_v2_error_fn error, void *arg, const char *option, const char *fmt,
			  ...) __attribute__((format(printf, 4, 5)));

/*
 * From `issuers` ("<name>=<64 hex>") or `trusted_signers` ("<64 hex>"):
 * at least one of the lists must be non-empty, and only one may be.
 * Returns 0, -EINVAL (each problem reported), or -ENOMEM.
 */
int choria_v2_verifier_new(struct choria_v2_verifier **out, const char *const *issuers,
			   unsigned n_issuers, const char *const *signers, unsigned n_signers,
			   size_t cache_size, choria_v2_error_fn error, void *arg);
void choria_v2_verifier_free(struct choria_v2_verifier *v); /* accepts NULL */

/* The same lists checked alone, for an adapter that does not verify
 * requests (both may be empty): a typo is still a configuration error.
 * Returns 0, -EINVAL (each problem reported), or -ENOMEM. */
int choria_v2_trust_check(const char *const *issuers, unsigned n_issuers,
			  const char *const *signers, unsigned n_signers, choria_v2_error_fn error,
			  void *arg);

/* Keys configured, and whether they are issuers (by ou). */
unsigned choria_v2_verifier_keys(const struct choria_v2_verifier *v, bool *issuers);

/*
 * Check a decoded v2 request at `now` (Unix seconds), with two digest
 * contexts of the calling thread (`key_md` for cache keys, `sig_md` for
 * signatures). Returns 0 when it may pass; else -EBADMSG with *reason one
 * of the labels below (string literals, stable) and `detail` saying why,
 * naming the caller and sender in printable ASCII; or -ENOMEM with
 * "no_memory".
 *
 *   bad_token            a token is not an EdDSA JWT (of at most
 *                        CHORIA_JWT_MAX_LEN bytes) with well-typed claims,
 *                        exp and a usable public_key, or its chain data
 *                        (iss, tcs, jti as a KSUID of iat, issexp) is
 *                        malformed
 *   wrong_purpose        the caller is neither a client nor a server; or a
 *                        delegated request's signer or caller is not a
 *                        client
 *   untrusted_issuer     no ou, or one naming no issuer; not signed by the
 *                        trusted key, directly or through a chain issuer it
 *                        vouched for; a delegated caller not under its
 *                        signer's key
 *   token_expired        now >= exp, or past the chain issuer's issexp
 *   token_not_yet_valid  now < nbf
 *   no_fleet_management  a client without fleet_management (delegated:
 *                        without it or signed_fleet_management)
 *   needs_delegation     a client with signed_fleet_management, no signer
 *   not_delegator        a signer without authentication_delegator
 *   caller_mismatch      the request's caller is not the caller token's
 *                        callerid (clients) or identity (servers)
 *   insecure             the signature is base64("insecure")
 *   bad_signature        it is not 64 bytes or does not verify with the
 *                        caller's (delegated: the signer's) public_key
 */
int choria_v2_verify_request(struct choria_v2_verifier *v, EVP_MD_CTX *key_md, EVP_MD_CTX *sig_md,
			     const struct choria_decoded *d, int64_t now, const char **reason,
			     char *detail, size_t detail_len);

void choria_v2_verifier_cache_stats(struct choria_v2_verifier *v, struct tokencache_stats *out);

#endif
