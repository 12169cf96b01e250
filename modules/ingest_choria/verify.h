/* SPDX-License-Identifier: Apache-2.0 */
/*
 * verify.h - what `security = verify` checks on a decoded Choria message:
 * a reply's hash (both versions); a protocol v1 request's signer
 * certificate (chain to the CA, validity now, client-auth purpose, allowed
 * and privileged names), the caller it names and its signature; and a
 * protocol v2 request's tokens, caller and signature (verify_v2.h). All
 * crypto is OpenSSL libcrypto.
 *
 * Pure: no NATS, no host. A verifier is built once and then used by any
 * number of threads at once; certificate verdicts are cached (certcache.h).
 */
#ifndef CHORIA_VERIFY_H
#define CHORIA_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "certcache.h"
#include "protocol.h"

/* Choria's own privileged certificate patterns. */
#define CHORIA_PRIVILEGED_DEFAULTS "\\.privileged.mcollective$", "\\.privileged.choria$"
#define CHORIA_CERT_CACHE_DEFAULT 10000
#define CHORIA_CERT_CACHE_MAX 1000000

struct choria_verify_opts {
	const char *ca_file;           /* PEM file of trusted CAs; NULL: v1
	                                  requests are untrusted_version */
	const char *const *privileged; /* POSIX extended regular expressions */
	unsigned n_privileged;
	const char *const *allowed; /* same; none: any certificate of the CA */
	unsigned n_allowed;
	size_t cache_size; /* verdicts kept; 0: the default */
	/* Protocol v2 trust, one list or the other (none: v2 requests are
	 * untrusted_version): organisation issuers "<name>=<64 hex>", or
	 * trusted token signers "<64 hex>". */
	const char *const *issuers;
	unsigned n_issuers;
	const char *const *trusted_signers;
	unsigned n_trusted_signers;
	size_t token_cache_size; /* token verdicts kept; 0: the default */
};

/* Called for every problem choria_verifier_new() finds: the option at
 * fault ("ca", "privileged_certs", "allowed_certs", "issuers",
 * "trusted_signers") and what is wrong. */
typedef void (*choria_verify_error_fn)(void *arg, const char *option, const char *message);

struct choria_verifier;

/*
 * Load the CA file, the v2 keys, and compile the patterns: `ca`, or
 * `issuers` or `trusted_signers`, or both kinds, are needed (a request
 * adapter must trust something). Reports every problem through
 * `error` (may be NULL) and returns -EINVAL, or -ENOMEM, or 0. `n_ca` (may
 * be NULL) receives the number of CA certificates loaded.
 */
int choria_verifier_new(struct choria_verifier **out, const struct choria_verify_opts *o,
			choria_verify_error_fn error, void *arg, unsigned *n_ca);
void choria_verifier_free(struct choria_verifier *v); /* accepts NULL */

/*
 * Per-thread working memory for choria_verify_request(): digest contexts
 * reused from message to message, so that a message costs no allocation
 * but OpenSSL's own inside the RSA verification. One per thread (or per
 * NATS subscription, whose messages are handled one at a time).
 */
struct choria_verify_scratch;
int choria_verify_scratch_new(struct choria_verify_scratch **out); /* 0 or -ENOMEM */
void choria_verify_scratch_free(struct choria_verify_scratch *s);  /* accepts NULL */

/*
 * Check a decoded secure request at time `now` (Unix seconds), with the
 * calling thread's scratch (NULL: allocate for this call). Returns 0
 * when it may pass; else -EBADMSG with *reason set to one of the labels
 * below (string literals, stable, used as metric labels) and `detail`
 * saying why in printable ASCII, or -ENOMEM with "no_memory".
 *
 *   insecure          the signature is Choria's unsigned "insecure" marker
 *   bad_signature     not base64, or does not verify with the certificate
 *   bad_cert          pubcert is not a PEM certificate with an RSA key
 *   untrusted_cert    it does not chain to the CA
 *   cert_purpose      it (or its chain) is not for client authentication
 *   cert_expired      the chain's validity ended before `now`
 *   cert_not_yet_valid  ... or begins after `now`
 *   cert_not_allowed  allowed_certs is set and matches none of its names
 *   bad_callerid      envelope.callerid is not "<kind>=<name>"
 *   caller_mismatch   the caller's name is not one of the certificate's
 *                     names, and the certificate is not privileged
 *   untrusted_version the request's protocol version has no trust
 *                     configured (v1: no ca; v2: no issuers or
 *                     trusted_signers)
 * and for v2 requests the labels verify_v2.h lists.
 */
int choria_verify_request(struct choria_verifier *v, struct choria_verify_scratch *scratch,
			  const struct choria_decoded *d, int64_t now, const char **reason,
			  char *detail, size_t detail_len);

/*
 * Check a decoded secure reply: its hash must be base64(SHA-256(message)).
 * Returns 0, or -EBADMSG with reason "bad_hash", or -EIO with "bad_hash"
 * when OpenSSL cannot compute the digest.
 */
int choria_verify_reply(const struct choria_decoded *d, const char **reason, char *detail,
			size_t detail_len);

/*
 * The name a callerid carries, as Choria reads it with ^[a-z]+=([\w.\-]+):
 * a lower-case prefix, '=', then the longest run of ASCII letters, digits,
 * '_', '.' and '-'. Returns the length of the name and points *name at it,
 * or 0 when the callerid has no such name.
 */
size_t choria_callerid_name(const char *callerid, size_t len, const char **name);

void choria_verifier_cache_stats(struct choria_verifier *v, struct certcache_stats *out);

/* Whether requests of protocol `version` (1 or 2) have trust configured. */
bool choria_verifier_trusts(const struct choria_verifier *v, unsigned version);

/* The v2 part (token cache statistics, key count), or NULL. */
struct choria_v2_verifier *choria_verifier_v2(struct choria_verifier *v);

#endif
