/* SPDX-License-Identifier: Apache-2.0 */
/*
 * verify.c - signature, certificate and hash checks for Choria protocol v1
 * (see verify.h and PROTOCOL.md), with OpenSSL libcrypto: base64, SHA-256,
 * X.509 chain building and RSA PKCS#1 v1.5 verification.
 *
 * A message's certificate is looked up by a salted hash of its PEM text; only
 * on a miss is the PEM parsed and the chain checked, and the verdict (public
 * key, names, validity window, privileged and allowed flags) is cached. The
 * time is compared with the cached window for every message, so a cached
 * certificate still expires.
 *
 * Concurrency & locking: after choria_verifier_new() the verifier is
 * read-only except for its cache, which locks itself (certcache.c). The
 * X509_STORE is only read by X509_verify_cert(), which OpenSSL allows from
 * many threads; regexec() on a compiled pattern is thread-safe in glibc. A
 * cached verdict's verify_ctx is only ever duplicated (EVP_PKEY_CTX_dup
 * reads its source and takes references atomically), never used. A
 * scratch belongs to one thread at a time.
 * OpenSSL's per-thread error queue is cleared before returning so that no
 * stale error is left for the NATS client's TLS code on the same thread.
 */
#include "verify.h"

#include <errno.h>
#include <limits.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <choria-adapterd/cad_text.h>

#include "base64.h"
#include "ca_file.h"
#include "verify_v2.h"

/* RSA up to 8192 bits: 1024 signature bytes, 1368 base64 characters. */
#define VERIFY_MAX_SIG 1024
#define VERIFY_MAX_SIG_B64 (4 * ((VERIFY_MAX_SIG + 2) / 3))
/* Certificates after the first in a pubcert: untrusted intermediates. */
#define VERIFY_MAX_INTERMEDIATES 8
#define VERIFY_NAME_LEN 96        /* a name quoted in a log line */
#define VERIFY_RECHECK_SECONDS 60 /* see choria_verify_stale() */

struct choria_verify_scratch {
	EVP_MD_CTX *key_md; /* the certificate's or token's cache key */
	EVP_MD_CTX *msg_md; /* the signed message */
	EVP_MD_CTX *ed_md;  /* v2: ed25519 signatures */
};

struct choria_verifier {
	X509_STORE *store;             /* NULL: no `ca`, v1 requests are untrusted_version */
	struct choria_v2_verifier *v2; /* NULL: no v2 trust */
	EVP_MD *sha256;
	regex_t *privileged;
	unsigned n_privileged;
	regex_t *allowed;
	unsigned n_allowed;
	struct certcache *cache;
};

/* Choria's markers for unsigned messages, as the decoded signature. */
static const char choria_verify_insecure_registration[] = "insecure registration";
static const char choria_verify_insecure[] = "insecure";

static int choria_verify_fail(const char **reason, char *detail, size_t detail_len, int err,
			      const char *label, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static int choria_verify_fail(const char **reason, char *detail, size_t detail_len, int err,
			      const char *label, const char *fmt, ...)
{
	if (reason)
		*reason = label;
	if (detail && detail_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(detail, detail_len, fmt, ap);
		va_end(ap);
	}
	ERR_clear_error();
	return err;
}

/* ---------------------------------------------------------------- setup */

static int choria_verify_add_ca(void *arg, X509 *cert)
{
	struct choria_verifier *v = arg;

	return X509_STORE_add_cert(v->store, cert) ? 0 : -EINVAL;
}

static int choria_verify_load_ca(struct choria_verifier *v, const char *path,
				 choria_verify_error_fn error, void *arg, unsigned *n_ca)
{
	char why[512];
	int n = ca_file_read(path, choria_verify_add_ca, v, why, sizeof(why));

	if (n < 0) {
		choria_config_report(error, arg, "ca", "%s", why);
		return n == -ENOMEM ? n : -EINVAL;
	}
	if (n_ca)
		*n_ca = (unsigned)n;
	return 0;
}

static int choria_verify_compile(regex_t **out, unsigned *n_out, const char *const *patterns,
				 unsigned n, const char *option, choria_verify_error_fn error,
				 void *arg)
{
	regex_t *re;
	int errors = 0;

	*out = NULL;
	*n_out = 0;
	if (n == 0)
		return 0;
	re = calloc(n, sizeof(*re));
	if (!re)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		int rc = regcomp(&re[*n_out], patterns[i], REG_EXTENDED | REG_NOSUB);
		if (rc) {
			char why[160];
			regerror(rc, &re[*n_out], why, sizeof(why));
			choria_config_report(error, arg, option,
					     "'%s' is not a valid regular expression: %s",
					     patterns[i], why);
			errors++;
			continue;
		}
		(*n_out)++;
	}
	*out = re;
	return errors ? -EINVAL : 0;
}

static void choria_verify_free_patterns(regex_t *re, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		regfree(&re[i]);
	free(re);
}

void choria_verifier_free(struct choria_verifier *v)
{
	if (!v)
		return;
	certcache_free(v->cache);
	choria_v2_verifier_free(v->v2);
	choria_verify_free_patterns(v->privileged, v->n_privileged);
	choria_verify_free_patterns(v->allowed, v->n_allowed);
	EVP_MD_free(v->sha256);
	X509_STORE_free(v->store);
	free(v);
}

int choria_verifier_new(struct choria_verifier **out, const struct choria_verify_opts *o,
			choria_verify_error_fn error, void *arg, unsigned *n_ca)
{
	struct choria_verifier *v;
	int rc, failed = 0;
	size_t cache = o->cache_size ? o->cache_size : CHORIA_CERT_CACHE_DEFAULT;

	*out = NULL;
	if (n_ca)
		*n_ca = 0;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!v->sha256 || certcache_new(&v->cache, cache) != 0) {
		rc = -ENOMEM;
		goto fail;
	}
	if (!(o->ca_file && *o->ca_file) && !o->n_issuers && !o->n_trusted_signers) {
		choria_config_report(error, arg, "ca",
				     "a CA file is needed to verify request signatures (protocol "
				     "v1), or issuers or trusted_signers to verify tokens "
				     "(protocol v2)");
		failed = -EINVAL;
	}
	if (o->ca_file && *o->ca_file) {
		v->store = X509_STORE_new();
		if (!v->store) {
			rc = -ENOMEM;
			goto fail;
		}
		rc = choria_verify_load_ca(v, o->ca_file, error, arg, n_ca);
		if (rc == -ENOMEM)
			goto fail;
		if (rc)
			failed = rc;
	}
	if (o->n_issuers || o->n_trusted_signers) {
		rc = choria_v2_verifier_new(&v->v2, o->issuers, o->n_issuers, o->trusted_signers,
					    o->n_trusted_signers, o->token_cache_size, error, arg);
		if (rc == -ENOMEM)
			goto fail;
		if (rc)
			failed = rc;
	}
	rc = choria_verify_compile(&v->privileged, &v->n_privileged, o->privileged, o->n_privileged,
				   "privileged_certs", error, arg);
	if (rc == -ENOMEM)
		goto fail;
	if (rc)
		failed = rc;
	rc = choria_verify_compile(&v->allowed, &v->n_allowed, o->allowed, o->n_allowed,
				   "allowed_certs", error, arg);
	if (rc == -ENOMEM)
		goto fail;
	if (rc)
		failed = rc;
	if (failed) {
		rc = failed;
		goto fail;
	}
	*out = v;
	return 0;

fail:
	ERR_clear_error();
	choria_verifier_free(v);
	return rc;
}

int choria_verify_scratch_new(struct choria_verify_scratch **out)
{
	struct choria_verify_scratch *s = calloc(1, sizeof(*s));

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->key_md = EVP_MD_CTX_new();
	s->msg_md = EVP_MD_CTX_new();
	s->ed_md = EVP_MD_CTX_new();
	if (!s->key_md || !s->msg_md || !s->ed_md) {
		choria_verify_scratch_free(s);
		return -ENOMEM;
	}
	*out = s;
	return 0;
}

void choria_verify_scratch_free(struct choria_verify_scratch *s)
{
	if (!s)
		return;
	EVP_MD_CTX_free(s->key_md);
	EVP_MD_CTX_free(s->msg_md);
	EVP_MD_CTX_free(s->ed_md);
	free(s);
}

void choria_verifier_cache_stats(struct choria_verifier *v, struct certcache_stats *out)
{
	certcache_get_stats(v->cache, out);
}

bool choria_verifier_trusts(const struct choria_verifier *v, unsigned version)
{
	return version == 2 ? v->v2 != NULL : v->store != NULL;
}

struct choria_v2_verifier *choria_verifier_v2(struct choria_verifier *v)
{
	return v->v2;
}

/* ------------------------------------------------------- certificate verdicts */

/* Append a name to the verdict's list; names with NUL bytes are skipped
 * (they could only be an attempt to pass for a shorter name). */
static int choria_verify_add_name(struct cert_verdict *cv, const unsigned char *s, int n)
{
	char *grown;

	if (n <= 0 || memchr(s, '\0', (size_t)n))
		return 0;
	grown = realloc(cv->names, cv->names_len + (size_t)n + 1);
	if (!grown)
		return -ENOMEM;
	memcpy(grown + cv->names_len, s, (size_t)n);
	grown[cv->names_len + (size_t)n] = '\0';
	cv->names = grown;
	cv->names_len += (size_t)n + 1;
	cv->n_names++;
	return 0;
}

/* The CNs, then the DNS subject alternative names. */
static int choria_verify_collect_names(struct cert_verdict *cv, X509 *x)
{
	const X509_NAME *subject = X509_get_subject_name(x);
	GENERAL_NAMES *sans;
	int idx = -1, rc = 0;

	while (subject && (idx = X509_NAME_get_index_by_NID(subject, NID_commonName, idx)) >= 0) {
		ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
		unsigned char *utf8 = NULL;
		int n = s ? ASN1_STRING_to_UTF8(&utf8, s) : -1;
		if (n > 0)
			rc = choria_verify_add_name(cv, utf8, n);
		OPENSSL_free(utf8);
		if (rc)
			return rc;
	}
	sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans) && !rc; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
		if (g->type == GEN_DNS)
			rc = choria_verify_add_name(cv, ASN1_STRING_get0_data(g->d.dNSName),
						    ASN1_STRING_length(g->d.dNSName));
	}
	GENERAL_NAMES_free(sans);
	return rc;
}

static bool choria_verify_any_name_matches(const struct cert_verdict *cv, const regex_t *re,
					   unsigned n)
{
	const char *name = cv->names;

	for (unsigned i = 0; i < cv->n_names; i++, name += strlen(name) + 1)
		for (unsigned j = 0; j < n; j++)
			if (regexec(&re[j], name, 0, NULL, 0) == 0)
				return true;
	return false;
}

/* The first name, printable, for log lines. */
static const char *choria_verify_cert_name(const struct cert_verdict *cv, char *buf, size_t len)
{
	if (!cv->n_names)
		return "(a certificate without names)";
	return cad_text_printable(buf, len, cv->names, strlen(cv->names));
}

static int choria_verify_asn1_time(const ASN1_TIME *t, int64_t *out)
{
	struct tm tm;

	if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
		return -1;
	*out = (int64_t)timegm(&tm);
	return 0;
}

/* The window in which every certificate of the chain is valid. */
static int choria_verify_chain_window(struct cert_verdict *cv, STACK_OF(X509) * chain)
{
	cv->not_before = INT64_MIN;
	cv->not_after = INT64_MAX;
	for (int i = 0; i < sk_X509_num(chain); i++) {
		X509 *x = sk_X509_value(chain, i);
		int64_t nb, na;
		if (choria_verify_asn1_time(X509_get0_notBefore(x), &nb) ||
		    choria_verify_asn1_time(X509_get0_notAfter(x), &na))
			return -1;
		if (nb > cv->not_before)
			cv->not_before = nb;
		if (na < cv->not_after)
			cv->not_after = na;
	}
	return 0;
}

static void choria_verify_verdict(struct cert_verdict *cv, const char *label, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void choria_verify_verdict(struct cert_verdict *cv, const char *label, const char *fmt, ...)
{
	va_list ap;

	cv->reason = label;
	va_start(ap, fmt);
	vsnprintf(cv->detail, sizeof(cv->detail), fmt, ap);
	va_end(ap);
	cad_text_scrub(cv->detail);
}

/* Read the pubcert: the signer first, then any intermediates. */
static int choria_verify_read_pem(const char *pem, size_t len, X509 **leaf, STACK_OF(X509) * *rest)
{
	BIO *bio;
	X509 *x;

	*leaf = NULL;
	*rest = NULL;
	if (len > INT_MAX)
		return -EBADMSG;
	bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return -ENOMEM;
	*leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (!*leaf) {
		BIO_free(bio);
		return -EBADMSG;
	}
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
		if (!*rest && !(*rest = sk_X509_new_null())) {
			X509_free(x);
			BIO_free(bio);
			return -ENOMEM;
		}
		if (sk_X509_num(*rest) >= VERIFY_MAX_INTERMEDIATES || !sk_X509_push(*rest, x)) {
			X509_free(x);
			break;
		}
	}
	BIO_free(bio);
	return 0;
}

/*
 * Build and check the chain of `leaf` for client authentication. The chain
 * is chosen as valid at `now` where there is one: a CA file may hold a
 * renewed CA beside the one it replaces (same name and key, other dates),
 * and OpenSSL takes the first issuer that matches unless it checks time.
 * Only when no chain is valid at `now` is one built without the time, so
 * that its window can say whether it expired or is not valid yet.
 */
static int choria_verify_build_chain(const struct choria_verifier *v, X509 *leaf,
				     STACK_OF(X509) * rest, int64_t now, X509_STORE_CTX **out)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int ok = 0;

	for (int timed = 1; ctx && timed >= 0; timed--) {
		if (!X509_STORE_CTX_init(ctx, v->store, leaf, rest)) {
			ok = -ENOMEM;
			break;
		}
		/* Every certificate in the CA file is a trust anchor, whether
		 * or not it is self-signed. */
		X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_PARTIAL_CHAIN |
						      (timed ? 0 : X509_V_FLAG_NO_CHECK_TIME));
		if (timed)
			X509_STORE_CTX_set_time(ctx, 0, (time_t)now);
		X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
		ok = X509_verify_cert(ctx);
		if (ok < 0) {
			ok = -ENOMEM; /* an internal error, not a verdict to cache */
			break;
		}
		int err = X509_STORE_CTX_get_error(ctx);
		if (ok == 1 ||
		    (err != X509_V_ERR_CERT_HAS_EXPIRED && err != X509_V_ERR_CERT_NOT_YET_VALID))
			break;
		X509_STORE_CTX_cleanup(ctx);
	}
	*out = ctx;
	return ctx ? ok : -ENOMEM;
}

/*
 * Work out the verdict for a PEM text at `now`: parse it, check the chain
 * for client authentication, collect names, key and the window in which
 * the chain is valid (compared with the time per message). Returns 0 with
 * *cv filled, whatever the verdict, or -ENOMEM.
 */
static int choria_verify_check_cert(const struct choria_verifier *v, const char *pem, size_t len,
				    int64_t now, struct cert_verdict *cv)
{
	STACK_OF(X509) *rest = NULL;
	X509_STORE_CTX *ctx = NULL;
	X509 *leaf = NULL;
	int rc, ok, err;
	char name[VERIFY_NAME_LEN];

	memset(cv, 0, sizeof(*cv));
	rc = choria_verify_read_pem(pem, len, &leaf, &rest);
	if (rc == -ENOMEM)
		goto out;
	if (rc) {
		choria_verify_verdict(cv, "bad_cert", "secure.pubcert is not a PEM certificate");
		rc = 0;
		goto out;
	}
	rc = choria_verify_collect_names(cv, leaf);
	if (rc)
		goto out;
	cv->pkey = X509_get_pubkey(leaf);
	if (!cv->pkey) {
		choria_verify_verdict(cv, "bad_cert",
				      "the certificate of %s has no usable public key",
				      choria_verify_cert_name(cv, name, sizeof(name)));
		goto out;
	}
	if (EVP_PKEY_get_base_id(cv->pkey) != EVP_PKEY_RSA) {
		choria_verify_verdict(
			cv, "bad_cert",
			"the certificate of %s has a %s key; protocol v1 signs with RSA",
			choria_verify_cert_name(cv, name, sizeof(name)),
			OBJ_nid2sn(EVP_PKEY_get_base_id(cv->pkey)));
		goto out;
	}

	cv->checked_at = now;
	ok = choria_verify_build_chain(v, leaf, rest, now, &ctx);
	if (ok == -ENOMEM) {
		rc = -ENOMEM;
		goto out;
	}
	if (ok != 1) {
		err = X509_STORE_CTX_get_error(ctx);
		if (err == X509_V_ERR_INVALID_PURPOSE)
			choria_verify_verdict(cv, "cert_purpose",
					      "the certificate of %s (or a CA above it) is not for "
					      "client authentication (extended key usage)",
					      choria_verify_cert_name(cv, name, sizeof(name)));
		else
			choria_verify_verdict(
				cv, "untrusted_cert",
				"the certificate of %s does not chain to the CA: %s (depth %d)",
				choria_verify_cert_name(cv, name, sizeof(name)),
				X509_verify_cert_error_string(err),
				X509_STORE_CTX_get_error_depth(ctx));
		goto out;
	}
	if (choria_verify_chain_window(cv, X509_STORE_CTX_get0_chain(ctx))) {
		choria_verify_verdict(cv, "bad_cert",
				      "the certificate of %s has unreadable validity dates",
				      choria_verify_cert_name(cv, name, sizeof(name)));
		goto out;
	}
	cv->privileged = choria_verify_any_name_matches(cv, v->privileged, v->n_privileged);
	cv->allowed =
		v->n_allowed == 0 || choria_verify_any_name_matches(cv, v->allowed, v->n_allowed);
	/* Set up once what every message from this signer needs. */
	cv->verify_ctx = EVP_PKEY_CTX_new_from_pkey(NULL, cv->pkey, NULL);
	if (!cv->verify_ctx || EVP_PKEY_verify_init(cv->verify_ctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(cv->verify_ctx, RSA_PKCS1_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_signature_md(cv->verify_ctx, v->sha256) <= 0) {
		choria_verify_verdict(
			cv, "bad_cert",
			"the key of the certificate of %s cannot verify RSA signatures",
			choria_verify_cert_name(cv, name, sizeof(name)));
		goto out;
	}
out:
	if (cv->reason) {
		/* Only the label and detail matter for a rejected certificate. */
		EVP_PKEY_CTX_free(cv->verify_ctx);
		cv->verify_ctx = NULL;
		EVP_PKEY_free(cv->pkey);
		cv->pkey = NULL;
	}
	X509_STORE_CTX_free(ctx);
	X509_free(leaf);
	sk_X509_pop_free(rest, X509_free);
	ERR_clear_error();
	return rc;
}

/* ------------------------------------------------------------ messages */

size_t choria_callerid_name(const char *callerid, size_t len, const char **name)
{
	size_t i = 0, start;

	while (i < len && callerid[i] >= 'a' && callerid[i] <= 'z')
		i++;
	if (i == 0 || i >= len || callerid[i] != '=')
		return 0;
	start = ++i;
	while (i < len) {
		char c = callerid[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			break;
		i++;
	}
	if (i == start)
		return 0;
	*name = callerid + start;
	return i - start;
}

/* DNS names compare without regard to ASCII case. */
static bool choria_verify_has_name(const struct cert_verdict *cv, const char *name, size_t len)
{
	const char *n = cv->names;

	for (unsigned i = 0; i < cv->n_names; i++) {
		size_t nl = strlen(n);
		if (nl == len && strncasecmp(n, name, len) == 0)
			return true;
		n += nl + 1;
	}
	return false;
}

/* A signature: strict base64 of 1 to VERIFY_MAX_SIG bytes, into out
 * (VERIFY_MAX_SIG + 3 bytes). Returns the byte count or -1. */
static int choria_verify_base64(const char *s, size_t n, unsigned char *out)
{
	size_t got;

	if (n == 0 || n > VERIFY_MAX_SIG_B64 ||
	    choria_base64_decode(s, n, out, &got, NULL) != CHORIA_BASE64_OK)
		return -1;
	return (int)got;
}

/*
 * Whether a cached verdict's chain should be chosen again at `now`: the
 * chain was valid when chosen and no longer is (a CA renewed since may
 * still carry it), or it was chosen invalid a while ago. Once a minute at
 * most for a certificate that stays invalid, which bounds what sending
 * expired certificates can cost.
 */
static bool choria_verify_stale(const struct cert_verdict *cv, int64_t now)
{
	if (cv->reason || (now >= cv->not_before && now <= cv->not_after))
		return false;
	bool was_valid = cv->checked_at >= cv->not_before && cv->checked_at <= cv->not_after;
	return was_valid || now - cv->checked_at >= VERIFY_RECHECK_SECONDS;
}

/* Look up or work out the verdict for the message's certificate. */
static int choria_verify_verdict_for(struct choria_verifier *v,
				     struct choria_verify_scratch *scratch,
				     const struct choria_decoded *d, int64_t now,
				     const struct cert_verdict **out)
{
	unsigned char key[CERTCACHE_KEY_LEN];
	struct cert_verdict fresh;
	int rc;

	*out = NULL;
	if (certcache_key(v->cache, scratch ? scratch->key_md : NULL, d->pubcert, d->pubcert_len,
			  key))
		return -ENOMEM;
	*out = certcache_get(v->cache, key);
	if (*out && !choria_verify_stale(*out, now))
		return 0;
	if (*out) {
		certcache_forget(v->cache, key, *out);
		certcache_release(v->cache, *out);
		*out = NULL;
	}
	rc = choria_verify_check_cert(v, d->pubcert, d->pubcert_len, now, &fresh);
	if (rc) {
		cert_verdict_clear(&fresh);
		return rc;
	}
	*out = certcache_put(v->cache, key, &fresh);
	return *out ? 0 : -ENOMEM;
}

/*
 * SHA-256 of the message with the scratch context, then RSA PKCS#1 v1.5
 * with a copy of the signer's prepared context: a copy because a context
 * is not for two threads at once, and copying costs less than setting one
 * up from the key.
 */
static int choria_verify_signature(const struct choria_verifier *v,
				   struct choria_verify_scratch *scratch,
				   const struct cert_verdict *cv, const unsigned char *sig,
				   size_t sig_len, const struct choria_decoded *d)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int digest_len = 0;
	EVP_MD_CTX *own = scratch ? NULL : EVP_MD_CTX_new();
	EVP_MD_CTX *md = scratch ? scratch->msg_md : own;
	EVP_PKEY_CTX *pctx;
	int ok;

	if (!md)
		return -ENOMEM;
	ok = EVP_DigestInit_ex(md, v->sha256, NULL) &&
	     EVP_DigestUpdate(md, d->secure_message, d->secure_message_len) &&
	     EVP_DigestFinal_ex(md, digest, &digest_len);
	EVP_MD_CTX_free(own);
	if (!ok)
		return -ENOMEM;
	pctx = EVP_PKEY_CTX_dup(cv->verify_ctx);
	if (!pctx)
		return -ENOMEM;
	ok = EVP_PKEY_verify(pctx, sig, sig_len, digest, digest_len) == 1;
	EVP_PKEY_CTX_free(pctx);
	return ok ? 0 : -EBADMSG;
}

/* Protocol v2: verify_v2.c, with the thread's digest contexts. */
static int choria_verify_request_v2(struct choria_verifier *v,
				    struct choria_verify_scratch *scratch,
				    const struct choria_decoded *d, int64_t now,
				    const char **reason, char *detail, size_t detail_len)
{
	struct choria_verify_scratch *own = NULL;
	char sender[VERIFY_NAME_LEN];
	int rc;

	if (!v->v2)
		return choria_verify_fail(
			reason, detail, detail_len, -EBADMSG, "untrusted_version",
			"a protocol v2 request, and neither issuers nor trusted_signers is "
			"configured to check it (sender %s)",
			cad_text_printable(sender, sizeof(sender), d->sender, d->sender_len));
	if (!scratch && choria_verify_scratch_new(&own) != 0)
		return choria_verify_fail(reason, detail, detail_len, -ENOMEM, "no_memory",
					  "out of memory for digest contexts");
	if (own)
		scratch = own;
	rc = choria_v2_verify_request(v->v2, scratch->key_md, scratch->ed_md, d, now, reason,
				      detail, detail_len);
	choria_verify_scratch_free(own);
	ERR_clear_error();
	return rc;
}

int choria_verify_request(struct choria_verifier *v, struct choria_verify_scratch *scratch,
			  const struct choria_decoded *d, int64_t now, const char **reason,
			  char *detail, size_t detail_len)
{
	unsigned char sig[VERIFY_MAX_SIG + 3];
	const struct cert_verdict *cv = NULL;
	const char *caller;
	size_t caller_len;
	char name[VERIFY_NAME_LEN], who[VERIFY_NAME_LEN], sender[VERIFY_NAME_LEN];
	int sig_len, rc;

	if (reason)
		*reason = NULL;
	if (detail && detail_len)
		detail[0] = '\0';
	if (d->kind == CHORIA_REQUEST && d->version == 2)
		return choria_verify_request_v2(v, scratch, d, now, reason, detail, detail_len);
	if (d->kind == CHORIA_REQUEST && !v->store)
		return choria_verify_fail(
			reason, detail, detail_len, -EBADMSG, "untrusted_version",
			"a protocol v1 request, and no ca is configured to check it (sender %s)",
			cad_text_printable(sender, sizeof(sender), d->sender, d->sender_len));
	if (d->kind != CHORIA_REQUEST || !d->signature || !d->pubcert || !d->callerid)
		return choria_verify_fail(reason, detail, detail_len, -EINVAL, "bad_argument",
					  "not a decoded request");
	cad_text_printable(sender, sizeof(sender), d->sender, d->sender_len);

	sig_len = choria_verify_base64(d->signature, d->signature_len, sig);
	if (sig_len < 0)
		return choria_verify_fail(
			reason, detail, detail_len, -EBADMSG, "bad_signature",
			"secure.signature is not base64 of at most %d bytes (sender %s)",
			VERIFY_MAX_SIG, sender);
	if (((size_t)sig_len == sizeof(choria_verify_insecure_registration) - 1 &&
	     memcmp(sig, choria_verify_insecure_registration, (size_t)sig_len) == 0) ||
	    ((size_t)sig_len == sizeof(choria_verify_insecure) - 1 &&
	     memcmp(sig, choria_verify_insecure, (size_t)sig_len) == 0))
		return choria_verify_fail(reason, detail, detail_len, -EBADMSG, "insecure",
					  "the request is not signed (\"%.*s\" marker) (sender %s)",
					  sig_len, (const char *)sig, sender);

	caller_len = choria_callerid_name(d->callerid, d->callerid_len, &caller);
	if (!caller_len)
		return choria_verify_fail(
			reason, detail, detail_len, -EBADMSG, "bad_callerid",
			"envelope.callerid \"%s\" is not <kind>=<name> (sender %s)",
			cad_text_printable(who, sizeof(who), d->callerid, d->callerid_len), sender);

	rc = choria_verify_verdict_for(v, scratch, d, now, &cv);
	if (rc) {
		rc = choria_verify_fail(reason, detail, detail_len, rc, "no_memory",
					"out of memory checking a certificate (sender %s)", sender);
		goto out;
	}
	if (cv->reason) {
		rc = choria_verify_fail(reason, detail, detail_len, -EBADMSG, cv->reason,
					"%s (sender %s)", cv->detail, sender);
		goto out;
	}
	if (now > cv->not_after) {
		rc = choria_verify_fail(
			reason, detail, detail_len, -EBADMSG, "cert_expired",
			"the certificate of %s (or its CA) expired %lld seconds ago (sender %s)",
			choria_verify_cert_name(cv, name, sizeof(name)),
			(long long)(now - cv->not_after), sender);
		goto out;
	}
	if (now < cv->not_before) {
		rc = choria_verify_fail(
			reason, detail, detail_len, -EBADMSG, "cert_not_yet_valid",
			"the certificate of %s (or its CA) is valid only in %lld seconds (sender %s)",
			choria_verify_cert_name(cv, name, sizeof(name)),
			(long long)(cv->not_before - now), sender);
		goto out;
	}
	if (!cv->allowed) {
		rc = choria_verify_fail(
			reason, detail, detail_len, -EBADMSG, "cert_not_allowed",
			"no name of the certificate of %s matches allowed_certs (sender %s)",
			choria_verify_cert_name(cv, name, sizeof(name)), sender);
		goto out;
	}
	if (!cv->privileged && !choria_verify_has_name(cv, caller, caller_len)) {
		rc = choria_verify_fail(reason, detail, detail_len, -EBADMSG, "caller_mismatch",
					"caller %s is not a name of the certificate of %s, which "
					"is not privileged (sender %s)",
					cad_text_printable(who, sizeof(who), caller, caller_len),
					choria_verify_cert_name(cv, name, sizeof(name)), sender);
		goto out;
	}
	rc = choria_verify_signature(v, scratch, cv, sig, (size_t)sig_len, d);
	if (rc == -ENOMEM)
		rc = choria_verify_fail(reason, detail, detail_len, rc, "no_memory",
					"out of memory checking a signature (sender %s)", sender);
	else if (rc)
		rc = choria_verify_fail(reason, detail, detail_len, rc, "bad_signature",
					"the signature does not verify with the certificate of %s "
					"(caller %s, sender %s)",
					choria_verify_cert_name(cv, name, sizeof(name)),
					cad_text_printable(who, sizeof(who), caller, caller_len),
					sender);
out:
	certcache_release(v->cache, cv);
	return rc;
}

int choria_verify_reply(const struct choria_decoded *d, const char **reason, char *detail,
			size_t detail_len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	char want[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1], sender[VERIFY_NAME_LEN];
	unsigned int md_len = 0;
	int n;

	if (reason)
		*reason = NULL;
	if (detail && detail_len)
		detail[0] = '\0';
	if (d->kind != CHORIA_REPLY || !d->hash || !d->secure_message)
		return choria_verify_fail(reason, detail, detail_len, -EINVAL, "bad_argument",
					  "not a decoded reply");
	cad_text_printable(sender, sizeof(sender), d->sender, d->sender_len);
	if (!EVP_Digest(d->secure_message, d->secure_message_len, md, &md_len, EVP_sha256(), NULL))
		return choria_verify_fail(reason, detail, detail_len, -EIO, "bad_hash",
					  "OpenSSL cannot compute SHA-256 (sender %s)", sender);
	n = EVP_EncodeBlock((unsigned char *)want, md, (int)md_len);
	if (n < 0 || d->hash_len != (size_t)n || CRYPTO_memcmp(want, d->hash, (size_t)n) != 0)
		return choria_verify_fail(
			reason, detail, detail_len, -EBADMSG, "bad_hash",
			"secure.hash is not base64(SHA-256) of secure.%s (sender %s)",
			d->version == 2 ? "reply" : "message", sender);
	return 0;
}
