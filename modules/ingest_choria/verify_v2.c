/* SPDX-License-Identifier: Apache-2.0 */
/*
 * verify_v2.c - see verify_v2.h. The order of the checks is the one of
 * PROTOCOL-v2.md §7, so that a request with several faults is named by the
 * first: the token's shape, its purpose, its issuer, its validity, its
 * permissions, the caller, the signature.
 *
 * Concurrency & locking: after choria_v2_verifier_new() the verifier is
 * read-only except for its token cache, which locks itself
 * (tokencache.c). Trusted keys are only read by EVP_DigestVerifyInit(),
 * which takes its own references. Digest contexts belong to the calling
 * thread. OpenSSL's error queue is left empty (ed25519.c, tokencache.c).
 */
#include "verify_v2.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <choria-adapterd/cad_text.h>

#include "ed25519.h"
#include "json_dom.h"
#include "protocol_parts.h"
#include "token.h"

#define VERIFY_V2_NAME_LEN 96 /* a name quoted in a log line */

struct choria_v2_verifier {
	struct choria_trust trust;
	struct tokencache *cache;
};

/* What a failure names: the request's caller and sender, printable. */
struct choria_v2_who {
	char caller[VERIFY_V2_NAME_LEN];
	char sender[VERIFY_V2_NAME_LEN];
};

static int choria_v2_fail(const char **reason, char *detail, size_t detail_len,
			  const struct choria_v2_who *who, int err, const char *label,
			  const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static int choria_v2_fail(const char **reason, char *detail, size_t detail_len,
			  const struct choria_v2_who *who, int err, const char *label,
			  const char *fmt, ...)
{
	if (reason)
		*reason = label;
	if (detail && detail_len) {
		va_list ap;
		int n;
		va_start(ap, fmt);
		n = vsnprintf(detail, detail_len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < detail_len)
			snprintf(detail + n, detail_len - (size_t)n, " (caller %s, sender %s)",
				 who->caller, who->sender);
		cad_text_scrub(detail);
	}
	return err;
}

void choria_config_report(choria_v2_error_fn error, void *arg, const char *option, const char *fmt,
			  ...)
{
	char msg[512];
	va_list ap;

	if (!error)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	error(arg, option, msg);
}

/* Both lists into `t`, each problem reported: 0, -EINVAL or -ENOMEM. */
static int choria_v2_trust_read(struct choria_trust *t, const char *const *issuers,
				unsigned n_issuers, const char *const *signers, unsigned n_signers,
				choria_v2_error_fn error, void *arg)
{
	char why[256];
	int rc = 0;

	if (n_issuers && n_signers) {
		choria_config_report(error, arg, "trusted_signers",
				     "can only configure one of trusted_signers or issuers");
		return -EINVAL;
	}
	for (unsigned i = 0; i < n_issuers + n_signers; i++) {
		bool issuer = i < n_issuers;
		int r = choria_trust_add(t, issuer ? issuers[i] : signers[i - n_issuers], issuer,
					 why, sizeof(why));
		if (r == -ENOMEM)
			return r;
		if (r) {
			choria_config_report(error, arg, issuer ? "issuers" : "trusted_signers",
					     "%s", why);
			rc = r;
		}
	}
	return rc;
}

int choria_v2_trust_check(const char *const *issuers, unsigned n_issuers,
			  const char *const *signers, unsigned n_signers, choria_v2_error_fn error,
			  void *arg)
{
	struct choria_trust t = {0};
	int rc = choria_v2_trust_read(&t, issuers, n_issuers, signers, n_signers, error, arg);

	choria_trust_clear(&t);
	return rc;
}

int choria_v2_verifier_new(struct choria_v2_verifier **out, const char *const *issuers,
			   unsigned n_issuers, const char *const *signers, unsigned n_signers,
			   size_t cache_size, choria_v2_error_fn error, void *arg)
{
	struct choria_v2_verifier *v;
	int rc;

	*out = NULL;
	if (!n_issuers && !n_signers) {
		choria_config_report(error, arg, "issuers",
				     "issuers or trusted_signers is needed to verify v2 tokens");
		return -EINVAL;
	}
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	rc = choria_v2_trust_read(&v->trust, issuers, n_issuers, signers, n_signers, error, arg);
	if (rc == 0)
		rc = tokencache_new(&v->cache,
				    cache_size ? cache_size : CHORIA_TOKEN_CACHE_DEFAULT);
	if (rc)
		goto fail;
	*out = v;
	return 0;
fail:
	choria_v2_verifier_free(v);
	return rc;
}

void choria_v2_verifier_free(struct choria_v2_verifier *v)
{
	if (!v)
		return;
	tokencache_free(v->cache);
	choria_trust_clear(&v->trust);
	free(v);
}

unsigned choria_v2_verifier_keys(const struct choria_v2_verifier *v, bool *issuers)
{
	if (issuers)
		*issuers = v->trust.by_ou;
	return v->trust.n;
}

void choria_v2_verifier_cache_stats(struct choria_v2_verifier *v, struct tokencache_stats *out)
{
	tokencache_get_stats(v->cache, out);
}

/* Whether a trusted verdict may still let a request through, in the place
 * `under` says: any key (a caller on its own, or a signer) or the signer's
 * (a delegated caller). Others are cached with the rejections, so that
 * replayed genuine tokens that cannot pass never push the fleet's out. */
static bool choria_v2_may_pass(const struct choria_token_verdict *t, uint32_t under, int64_t now)
{
	if (t->reason || now >= t->expires)
		return false;
	if (under != CHORIA_TOKEN_ANY_KEY)
		return t->purpose == CHORIA_TOKEN_CLIENT &&
		       (t->fleet_management || t->signed_fleet_management);
	if (t->purpose == CHORIA_TOKEN_SERVER)
		return true;
	return t->purpose == CHORIA_TOKEN_CLIENT &&
	       ((t->fleet_management && !t->signed_fleet_management) || t->delegator);
}

/* The verdict on one token under key `under`: cached, or checked and
 * cached. 0 or -ENOMEM. */
static int choria_v2_verdict(struct choria_v2_verifier *v, EVP_MD_CTX *key_md, EVP_MD_CTX *sig_md,
			     struct jdom_parser *p, const char *token, size_t len, uint32_t under,
			     int64_t now, struct choria_token_verdict *out)
{
	unsigned char key[TOKENCACHE_KEY_LEN];
	bool keyed = under != CHORIA_TOKEN_NO_KEY &&
		     tokencache_key(v->cache, key_md, token, len, under, key) == 0;
	int r;

	if (keyed && tokencache_get(v->cache, key, out))
		return 0;
	r = choria_token_check(&v->trust, p, sig_md, token, len, under, out);
	if (r == 0 && keyed)
		tokencache_put(v->cache, key, out, choria_v2_may_pass(out, under, now));
	return r;
}

static const char *choria_v2_purpose_name(enum choria_token_purpose p)
{
	switch (p) {
	case CHORIA_TOKEN_CLIENT:
		return "a client";
	case CHORIA_TOKEN_SERVER:
		return "a server";
	case CHORIA_TOKEN_OTHER:
		break;
	}
	return "neither a client nor a server";
}

/* A token's shape and purpose; `role` names it. */
static int choria_v2_purpose(const struct choria_token_verdict *t, bool client_only,
			     const char *role, const struct choria_v2_who *who, const char **reason,
			     char *detail, size_t detail_len)
{
	if (!t->parsed)
		return choria_v2_fail(reason, detail, detail_len, who, -EBADMSG, t->reason,
				      "the %s token: %s", role, t->detail);
	if (t->purpose == CHORIA_TOKEN_OTHER || (client_only && t->purpose != CHORIA_TOKEN_CLIENT))
		return choria_v2_fail(reason, detail, detail_len, who, -EBADMSG, "wrong_purpose",
				      "the %s token is %s token%s", role,
				      choria_v2_purpose_name(t->purpose),
				      client_only ? ", where a client's is needed" : "");
	return 0;
}

/* A token's issuer and validity at `now`; `role` names it. */
static int choria_v2_usable(const struct choria_token_verdict *t, const char *role, int64_t now,
			    const struct choria_v2_who *who, const char **reason, char *detail,
			    size_t detail_len)
{
	if (t->reason)
		return choria_v2_fail(reason, detail, detail_len, who, -EBADMSG, t->reason,
				      "the %s token: %s", role, t->detail);
	if (now >= t->expires)
		return choria_v2_fail(reason, detail, detail_len, who, -EBADMSG, "token_expired",
				      "the %s token expired %lld seconds ago", role,
				      (long long)(now - t->expires));
	if (now < t->not_before)
		return choria_v2_fail(reason, detail, detail_len, who, -EBADMSG,
				      "token_not_yet_valid",
				      "the %s token is valid only in %lld seconds", role,
				      (long long)(t->not_before - now));
	return 0;
}

/* The request's caller against the caller token's name. */
static int choria_v2_caller(const struct choria_token_verdict *t, const struct choria_decoded *d,
			    const struct choria_v2_who *who, const char **reason, char *detail,
			    size_t detail_len)
{
	char name[VERIFY_V2_NAME_LEN];

	if (t->name_len == d->callerid_len && memcmp(t->name, d->callerid, t->name_len) == 0)
		return 0;
	return choria_v2_fail(reason, detail, detail_len, who, -EBADMSG, "caller_mismatch",
			      "the caller token is for %s %s",
			      t->purpose == CHORIA_TOKEN_SERVER ? "identity" : "callerid",
			      cad_text_printable(name, sizeof(name), t->name, t->name_len));
}

static const unsigned char choria_v2_insecure[] = "insecure";

/* The request signature with the token holder's key. */
static int choria_v2_signature(EVP_MD_CTX *md, const struct choria_token_verdict *t,
			       const struct choria_decoded *d, const char *role,
			       const struct choria_v2_who *who, const char **reason, char *detail,
			       size_t detail_len)
{
	int r;

	if (d->signature_raw_len == sizeof(choria_v2_insecure) - 1 &&
	    memcmp(d->signature_raw, choria_v2_insecure, d->signature_raw_len) == 0)
		return choria_v2_fail(reason, detail, detail_len, who, -EBADMSG, "insecure",
				      "the request is not signed (\"insecure\" marker)");
	r = choria_ed25519_verify(md, t->holder, d->signature_raw, d->signature_raw_len,
				  d->secure_message, d->secure_message_len);
	if (r < 0)
		return choria_v2_fail(reason, detail, detail_len, who, -ENOMEM, "no_memory",
				      "out of memory checking a signature");
	if (r == 0 && d->signature_raw_len != CHORIA_ED25519_SIG_LEN)
		return choria_v2_fail(reason, detail, detail_len, who, -EBADMSG, "bad_signature",
				      "the signature is %zu bytes, not %d", d->signature_raw_len,
				      CHORIA_ED25519_SIG_LEN);
	if (r == 0)
		return choria_v2_fail(reason, detail, detail_len, who, -EBADMSG, "bad_signature",
				      "the signature does not verify with the %s token's key",
				      role);
	return 0;
}

/* The last checks of a request, with or without a signer: the caller may
 * manage the fleet (`managing`, else no_fleet_management saying `why_not`),
 * is the request's caller, and `signer` (the caller or its delegator,
 * named `role`) signed it. */
static int choria_v2_last(EVP_MD_CTX *sig_md, const struct choria_token_verdict *caller,
			  const struct choria_token_verdict *signer, const char *role,
			  bool managing, const char *why_not, const struct choria_decoded *d,
			  const struct choria_v2_who *who, const char **reason, char *detail,
			  size_t detail_len)
{
	int r;

	if (!managing)
		return choria_v2_fail(reason, detail, detail_len, who, -EBADMSG,
				      "no_fleet_management", "%s", why_not);
	r = choria_v2_caller(caller, d, who, reason, detail, detail_len);
	if (r == 0)
		r = choria_v2_signature(sig_md, signer, d, role, who, reason, detail, detail_len);
	return r;
}

/* No signer: a client or a server calls for itself. */
static int choria_v2_plain(struct choria_v2_verifier *v, EVP_MD_CTX *key_md, EVP_MD_CTX *sig_md,
			   struct jdom_parser *p, const struct choria_decoded *d, int64_t now,
			   const struct choria_v2_who *who, const char **reason, char *detail,
			   size_t detail_len)
{
	struct choria_token_verdict t;
	int r = choria_v2_verdict(v, key_md, sig_md, p, d->caller_token, d->caller_token_len,
				  CHORIA_TOKEN_ANY_KEY, now, &t);

	if (r)
		return choria_v2_fail(reason, detail, detail_len, who, r, "no_memory",
				      "out of memory checking the caller token");
	r = choria_v2_purpose(&t, false, "caller", who, reason, detail, detail_len);
	if (r == 0)
		r = choria_v2_usable(&t, "caller", now, who, reason, detail, detail_len);
	if (r)
		goto out;
	if (t.purpose == CHORIA_TOKEN_CLIENT && t.signed_fleet_management) {
		r = choria_v2_fail(reason, detail, detail_len, who, -EBADMSG, "needs_delegation",
				   "the caller has signed_fleet_management and the request has "
				   "no signer");
		goto out;
	}
	r = choria_v2_last(sig_md, &t, &t, "caller",
			   t.purpose != CHORIA_TOKEN_CLIENT || t.fleet_management,
			   "the caller token lacks the fleet_management permission", d, who, reason,
			   detail, detail_len);
out:
	choria_token_verdict_clear(&t);
	return r;
}

/* A delegator signs for a client under the same trusted key. */
static int choria_v2_delegated(struct choria_v2_verifier *v, EVP_MD_CTX *key_md, EVP_MD_CTX *sig_md,
			       struct jdom_parser *p, const struct choria_decoded *d, int64_t now,
			       const struct choria_v2_who *who, const char **reason, char *detail,
			       size_t detail_len)
{
	struct choria_token_verdict s, c;
	int r;

	memset(&c, 0, sizeof(c));
	r = choria_v2_verdict(v, key_md, sig_md, p, d->signer_token, d->signer_token_len,
			      CHORIA_TOKEN_ANY_KEY, now, &s);
	if (r)
		return choria_v2_fail(reason, detail, detail_len, who, r, "no_memory",
				      "out of memory checking the signer token");
	r = choria_v2_purpose(&s, true, "signer", who, reason, detail, detail_len);
	if (r)
		goto out;
	/* Both purposes before anything else (§7): the caller's claims are
	 * read even when the signer is untrusted, under no key then. */
	r = choria_v2_verdict(v, key_md, sig_md, p, d->caller_token, d->caller_token_len,
			      s.reason ? CHORIA_TOKEN_NO_KEY : s.key_index, now, &c);
	if (r) {
		r = choria_v2_fail(reason, detail, detail_len, who, r, "no_memory",
				   "out of memory checking the caller token");
		goto out;
	}
	r = choria_v2_purpose(&c, true, "caller", who, reason, detail, detail_len);
	if (r == 0)
		r = choria_v2_usable(&s, "signer", now, who, reason, detail, detail_len);
	if (r)
		goto out;
	if (!s.delegator) {
		r = choria_v2_fail(reason, detail, detail_len, who, -EBADMSG, "not_delegator",
				   "the signer token lacks the authentication_delegator "
				   "permission");
		goto out;
	}
	r = choria_v2_usable(&c, "caller", now, who, reason, detail, detail_len);
	if (r)
		goto out;
	r = choria_v2_last(sig_md, &c, &s, "signer",
			   c.fleet_management || c.signed_fleet_management,
			   "the delegated caller token has neither fleet_management nor "
			   "signed_fleet_management",
			   d, who, reason, detail, detail_len);
out:
	choria_token_verdict_clear(&s);
	choria_token_verdict_clear(&c);
	return r;
}

int choria_v2_verify_request(struct choria_v2_verifier *v, EVP_MD_CTX *key_md, EVP_MD_CTX *sig_md,
			     const struct choria_decoded *d, int64_t now, const char **reason,
			     char *detail, size_t detail_len)
{
	struct choria_v2_who who;
	struct jdom_scratch *own = NULL;
	struct jdom_parser *p;
	int r;

	if (reason)
		*reason = NULL;
	if (detail && detail_len)
		detail[0] = '\0';
	cad_text_printable(who.caller, sizeof(who.caller), d->callerid ? d->callerid : "",
			   d->callerid_len);
	cad_text_printable(who.sender, sizeof(who.sender), d->sender ? d->sender : "",
			   d->sender_len);
	if (d->version != 2 || d->kind != CHORIA_REQUEST || !d->caller_token || !d->callerid ||
	    !d->signature_raw)
		return choria_v2_fail(reason, detail, detail_len, &who, -EINVAL, "bad_argument",
				      "not a decoded v2 request");
	/* Tokens are parsed beside the message's documents, which the
	 * decoder holds until the message is cleared. */
	if (!d->priv && !(own = jdom_scratch_take()))
		return choria_v2_fail(reason, detail, detail_len, &who, -ENOMEM, "no_memory",
				      "out of memory for the token parser");
	p = jdom_scratch_parser(own ? own : d->priv, CHORIA_PARSER_TOKEN);
	if (d->signer_token)
		r = choria_v2_delegated(v, key_md, sig_md, p, d, now, &who, reason, detail,
					detail_len);
	else
		r = choria_v2_plain(v, key_md, sig_md, p, d, now, &who, reason, detail, detail_len);
	jdom_scratch_give(own);
	return r;
}
