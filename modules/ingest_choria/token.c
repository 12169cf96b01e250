/* SPDX-License-Identifier: Apache-2.0 */
/*
 * token.c - see token.h. The order of the checks follows PROTOCOL-v2.md:
 * the token's shape and claims first (bad_token), then which trusted key K
 * it must be under and whether K, directly or through a chain issuer that
 * K vouched for, signed it (untrusted_issuer).
 */
#include "token.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <choria-adapterd/cad_text.h>

#include "jwt.h"

#define CHORIA_KSUID_CHARS 27
#define CHORIA_KSUID_BYTES 20
#define CHORIA_KSUID_EPOCH 1400000000LL
#define CHORIA_TOKEN_SIG_HEX (2 * CHORIA_ED25519_SIG_LEN)
/* NumericDates beyond this are refused rather than overflow. */
#define CHORIA_TOKEN_TIME_MAX 9000000000000000000LL

/* ------------------------------------------------------------- trust */

int choria_trust_add(struct choria_trust *t, const char *entry, bool issuer, char *why,
		     size_t why_len)
{
	struct choria_trust_key k = {0}, *grown;
	const char *hex = entry;
	char q[80];

	if (issuer) {
		const char *eq = strchr(entry, '=');
		if (!eq || eq == entry) {
			snprintf(why, why_len, "'%s' is not <name>=<64 hex digits>",
				 cad_text_printable(q, sizeof(q), entry, strlen(entry)));
			return -EINVAL;
		}
		k.name = strndup(entry, (size_t)(eq - entry));
		if (!k.name)
			return -ENOMEM;
		hex = eq + 1;
	}
	if (!choria_hex_decode(hex, strlen(hex), k.raw, sizeof(k.raw))) {
		snprintf(why, why_len, "'%s' is not an ed25519 public key of 64 hex digits",
			 cad_text_printable(q, sizeof(q), hex, strlen(hex)));
		free(k.name);
		return -EINVAL;
	}
	for (unsigned i = 0; i < t->n; i++) {
		if (issuer && strcmp(t->keys[i].name, k.name) == 0) {
			snprintf(why, why_len, "the issuer '%s' is listed twice",
				 cad_text_printable(q, sizeof(q), k.name, strlen(k.name)));
			free(k.name);
			return -EINVAL;
		}
	}
	choria_hex_encode(k.raw, sizeof(k.raw), k.hex);
	k.pkey = choria_ed25519_key(k.raw);
	grown = realloc(t->keys, (t->n + 1) * sizeof(*t->keys));
	if (!k.pkey || !grown) {
		if (grown)
			t->keys = grown;
		EVP_PKEY_free(k.pkey);
		free(k.name);
		return -ENOMEM;
	}
	t->keys = grown;
	t->keys[t->n++] = k;
	t->by_ou = issuer;
	return 0;
}

void choria_trust_clear(struct choria_trust *t)
{
	for (unsigned i = 0; i < t->n; i++) {
		EVP_PKEY_free(t->keys[i].pkey);
		free(t->keys[i].name);
	}
	free(t->keys);
	memset(t, 0, sizeof(*t));
}

/* ------------------------------------------------------------- KSUID */

static int choria_base62_digit(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'Z')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 36;
	return -1;
}

bool choria_ksuid_time(const char *s, size_t n, int64_t *unix_s)
{
	unsigned char b[CHORIA_KSUID_BYTES] = {0};

	if (n != CHORIA_KSUID_CHARS)
		return false;
	for (size_t i = 0; i < n; i++) {
		int d = choria_base62_digit((unsigned char)s[i]);
		unsigned carry;
		if (d < 0)
			return false;
		carry = (unsigned)d;
		for (int j = CHORIA_KSUID_BYTES - 1; j >= 0; j--) {
			unsigned v = b[j] * 62u + carry;
			b[j] = (unsigned char)(v & 0xff);
			carry = v >> 8;
		}
		if (carry) /* 2^160 or more */
			return false;
	}
	*unix_s = (int64_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
			    b[3]) +
		  CHORIA_KSUID_EPOCH;
	return true;
}

/* ------------------------------------------------------------ claims */

/* What the checks need of the claims; strings point into the parser. */
struct choria_claims {
	const char *purpose, *sub, *public_key, *iss, *tcs, *jti, *ou, *callerid, *identity;
	size_t purpose_len, sub_len, public_key_len, iss_len, tcs_len, jti_len, ou_len,
		callerid_len, identity_len;
	bool has_exp, has_nbf, has_iat, has_issexp;
	int64_t exp, nbf, iat, issexp; /* whole seconds, fractions dropped */
};

static int choria_token_bad(struct choria_token_verdict *v, const char *reason, const char *fmt,
			    ...) __attribute__((format(printf, 3, 4)));

static int choria_token_bad(struct choria_token_verdict *v, const char *reason, const char *fmt,
			    ...)
{
	va_list ap;

	v->reason = reason;
	va_start(ap, fmt);
	vsnprintf(v->detail, sizeof(v->detail), fmt, ap);
	va_end(ap);
	cad_text_scrub(v->detail);
	return 0;
}

/* A string claim: absent is fine (NULL), another type is not. */
static bool choria_claim_str(const struct jdom_value *c, const char *key, const char **s, size_t *n)
{
	struct jdom_value v;

	*s = NULL;
	*n = 0;
	if (!jdom_member(c, key, &v))
		return true;
	if (jdom_type(&v) != JDOM_STRING)
		return false;
	jdom_string(&v, s, n);
	return true;
}

/* A NumericDate: a JSON number of seconds, which may have a fraction.
 * golang-jwt truncates it to the second, so a fraction is dropped: a token
 * with exp 10.5 is expired at 10, as in Go. */
static bool choria_claim_time(const struct jdom_value *c, const char *key, bool *has, int64_t *out)
{
	struct jdom_value v;
	double d;

	*has = false;
	if (!jdom_member(c, key, &v))
		return true;
	if (jdom_type(&v) == JDOM_INTEGER) {
		*out = jdom_integer(&v);
		*has = true;
		/* Far enough from the int64 limits that the checks cannot
		 * overflow with any clock. */
		return *out > -CHORIA_TOKEN_TIME_MAX && *out < CHORIA_TOKEN_TIME_MAX;
	}
	if (jdom_type(&v) != JDOM_REAL)
		return false;
	d = floor(jdom_number(&v));
	if (!(d > (double)-CHORIA_TOKEN_TIME_MAX && d < (double)CHORIA_TOKEN_TIME_MAX))
		return false;
	*out = (int64_t)d;
	*has = true;
	return true;
}

/* permissions.<key>: absent is false, another type than boolean is bad. */
static bool choria_claim_perm(const struct jdom_value *perms, const char *key, bool *out)
{
	struct jdom_value v;

	*out = false;
	if (!perms || !jdom_member(perms, key, &v))
		return true;
	if (jdom_type(&v) != JDOM_BOOL)
		return false;
	*out = jdom_bool(&v);
	return true;
}

static void choria_claims_read(const struct jdom_value *c, struct choria_claims *cl,
			       struct choria_token_verdict *v)
{
	static const char *const strs[] = {"purpose", "sub", "public_key", "iss",     "tcs",
					   "jti",     "ou",  "callerid",   "identity"};
	const char **sp[] = {&cl->purpose, &cl->sub, &cl->public_key, &cl->iss,     &cl->tcs,
			     &cl->jti,     &cl->ou,  &cl->callerid,   &cl->identity};
	size_t *np[] = {&cl->purpose_len, &cl->sub_len,      &cl->public_key_len,
			&cl->iss_len,     &cl->tcs_len,      &cl->jti_len,
			&cl->ou_len,      &cl->callerid_len, &cl->identity_len};
	struct jdom_value perms;
	bool has_perms;

	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if (!choria_claim_str(c, strs[i], sp[i], np[i])) {
			choria_token_bad(v, "bad_token", "its %s claim is not a string", strs[i]);
			return;
		}
	if (!choria_claim_time(c, "exp", &cl->has_exp, &cl->exp) ||
	    !choria_claim_time(c, "nbf", &cl->has_nbf, &cl->nbf) ||
	    !choria_claim_time(c, "iat", &cl->has_iat, &cl->iat) ||
	    !choria_claim_time(c, "issexp", &cl->has_issexp, &cl->issexp)) {
		choria_token_bad(v, "bad_token",
				 "a time claim (exp, nbf, iat, issexp) is not a "
				 "number of seconds");
		return;
	}
	has_perms = jdom_member(c, "permissions", &perms);
	if (has_perms && jdom_type(&perms) != JDOM_OBJECT) {
		choria_token_bad(v, "bad_token", "its permissions claim is not an object");
		return;
	}
	if (!choria_claim_perm(has_perms ? &perms : NULL, "fleet_management",
			       &v->fleet_management) ||
	    !choria_claim_perm(has_perms ? &perms : NULL, "signed_fleet_management",
			       &v->signed_fleet_management) ||
	    !choria_claim_perm(has_perms ? &perms : NULL, "authentication_delegator",
			       &v->delegator)) {
		choria_token_bad(v, "bad_token", "a permission is not a boolean");
		return;
	}
	v->parsed = true;
	if (cl->purpose_len == 16 && memcmp(cl->purpose, "choria_client_id", 16) == 0)
		v->purpose = CHORIA_TOKEN_CLIENT;
	else if (cl->purpose_len == 13 && memcmp(cl->purpose, "choria_server", 13) == 0)
		v->purpose = CHORIA_TOKEN_SERVER;
	else
		v->purpose = CHORIA_TOKEN_OTHER; /* provisioning (also by sub) or unknown */
}

/* ------------------------------------------------------------- trust */

/* A chain-issued token's parts: X, C, A, B (PROTOCOL-v2.md §6). */
struct choria_chain {
	const char *x;
	size_t x_len;
	unsigned char c[CHORIA_ED25519_KEY_LEN];
	const char *a;
	size_t a_len;
	unsigned char a_sig[CHORIA_ED25519_SIG_LEN];
	unsigned char b_sig[CHORIA_ED25519_SIG_LEN];
};

/* The shape of a chain-issued token, independent of any key. */
static bool choria_chain_read(const struct choria_claims *cl, struct choria_chain *ch,
			      struct choria_token_verdict *v)
{
	const char *rest, *dot, *b;
	size_t rest_len, b_len;
	int64_t t;

	if (!cl->public_key_len || !cl->tcs_len || !cl->jti_len || !cl->has_iat || !cl->iat ||
	    !cl->has_exp || !cl->exp || !cl->has_issexp || !cl->issexp) {
		choria_token_bad(v, "bad_token",
				 "a chain-issued token needs public_key, tcs, jti, iat, exp and "
				 "issexp");
		return false;
	}
	if (!choria_ksuid_time(cl->jti, cl->jti_len, &t)) {
		choria_token_bad(v, "bad_token", "its jti is not a KSUID");
		return false;
	}
	if (t != cl->iat) {
		choria_token_bad(v, "bad_token", "its iat %lld is not the time of its jti (%lld)",
				 (long long)cl->iat, (long long)t);
		return false;
	}
	rest = cl->iss + 2;
	rest_len = cl->iss_len - 2;
	dot = memchr(rest, '.', rest_len);
	if (!dot || dot == rest || memchr(dot + 1, '.', rest_len - (size_t)(dot + 1 - rest)) ||
	    !choria_hex_decode(dot + 1, rest_len - (size_t)(dot + 1 - rest), ch->c,
			       sizeof(ch->c))) {
		choria_token_bad(v, "bad_token",
				 "its iss is not C-<chain id>.<64 hex digits of the chain key>");
		return false;
	}
	ch->x = rest;
	ch->x_len = (size_t)(dot - rest);
	dot = memchr(cl->tcs, '.', cl->tcs_len);
	if (!dot) {
		choria_token_bad(v, "bad_token", "its tcs is not <hex>.<hex>");
		return false;
	}
	ch->a = cl->tcs;
	ch->a_len = (size_t)(dot - cl->tcs);
	b = dot + 1;
	b_len = cl->tcs_len - ch->a_len - 1;
	if (!ch->a_len || !b_len || memchr(b, '.', b_len)) {
		choria_token_bad(v, "bad_token", "its tcs is not <hex>.<hex>");
		return false;
	}
	/* Hex of another length than a signature's never verifies. */
	if (!choria_hex_decode(ch->a, ch->a_len, ch->a_sig, sizeof(ch->a_sig)) ||
	    !choria_hex_decode(b, b_len, ch->b_sig, sizeof(ch->b_sig))) {
		choria_token_bad(v, "bad_token", "its tcs is not two hex signatures");
		return false;
	}
	return true;
}

/* Whether trusted key `k` vouched for the chain issuer: A is K's signature
 * over "<X>.<lower-case hex of C>". 1, 0 or -ENOMEM. */
static int choria_chain_vouched(const struct choria_trust_key *k, const struct choria_chain *ch,
				EVP_MD_CTX *md)
{
	char text[CHORIA_JWT_MAX_LEN + 2 * CHORIA_ED25519_KEY_LEN + 2];
	size_t n = ch->x_len;

	if (n > CHORIA_JWT_MAX_LEN)
		return 0;
	memcpy(text, ch->x, n);
	text[n++] = '.';
	choria_hex_encode(ch->c, sizeof(ch->c), text + n);
	n += 2 * CHORIA_ED25519_KEY_LEN;
	return choria_ed25519_verify(md, k->pkey, ch->a_sig, sizeof(ch->a_sig), text, n);
}

/* The chain issuer's own signatures: B over "<jti>.<A>" and the JWT. */
static int choria_chain_signed(const struct choria_chain *ch, const struct choria_claims *cl,
			       const struct choria_jwt *jwt, EVP_MD_CTX *md,
			       struct choria_token_verdict *v)
{
	char text[CHORIA_JWT_MAX_LEN + 1]; /* jti and A are parts of the token */
	EVP_PKEY *c;
	size_t n = 0;
	int r;

	if (cl->jti_len + 1 + ch->a_len > sizeof(text))
		return choria_token_bad(v, "bad_token", "its jti and tcs are too long");
	c = choria_ed25519_key(ch->c);
	if (!c)
		return choria_token_bad(v, "untrusted_issuer",
					"its chain issuer's key is not an ed25519 key");
	memcpy(text, cl->jti, cl->jti_len);
	n = cl->jti_len;
	text[n++] = '.';
	memcpy(text + n, ch->a, ch->a_len);
	n += ch->a_len;
	r = choria_ed25519_verify(md, c, ch->b_sig, sizeof(ch->b_sig), text, n);
	if (r == 1)
		r = choria_ed25519_verify(md, c, jwt->sig, sizeof(jwt->sig), jwt->signing_input,
					  jwt->signing_input_len);
	else if (r == 0)
		choria_token_bad(v, "untrusted_issuer",
				 "its tcs is not its chain issuer's signature over its jti");
	if (r == 0 && !v->reason)
		choria_token_bad(v, "untrusted_issuer",
				 "it is not signed by its chain issuer's key");
	EVP_PKEY_free(c);
	return r < 0 ? r : 0;
}

/* The keys to try: one index, the `ou`'s issuer, or every trusted signer.
 * Returns false (verdict set) when there is none. */
static bool choria_token_keys(const struct choria_trust *t, const struct choria_claims *cl,
			      uint32_t key, uint32_t *first, uint32_t *end,
			      struct choria_token_verdict *v)
{
	char q[64];

	if (key != CHORIA_TOKEN_ANY_KEY) {
		*first = key;
		*end = key + 1;
		return key < t->n;
	}
	if (!t->by_ou) {
		*first = 0;
		*end = t->n;
		return t->n > 0;
	}
	if (!cl->ou) {
		choria_token_bad(v, "untrusted_issuer", "it has no ou to pick its issuer by");
		return false;
	}
	for (uint32_t i = 0; i < t->n; i++) {
		if (strlen(t->keys[i].name) == cl->ou_len &&
		    memcmp(t->keys[i].name, cl->ou, cl->ou_len) == 0) {
			*first = i;
			*end = i + 1;
			return true;
		}
	}
	choria_token_bad(v, "untrusted_issuer", "its ou '%s' names no configured issuer",
			 cad_text_printable(q, sizeof(q), cl->ou, cl->ou_len));
	return false;
}

/* Find the trusted key that vouches for the token; sets v->key_index, or
 * the verdict's reason. 0 or -ENOMEM. */
static int choria_token_trust(const struct choria_trust *t, const struct choria_claims *cl,
			      const struct choria_jwt *jwt, EVP_MD_CTX *md, uint32_t key,
			      struct choria_token_verdict *v)
{
	bool chained = cl->iss_len >= 2 && memcmp(cl->iss, "C-", 2) == 0;
	struct choria_chain ch;
	uint32_t first, end;
	int r;

	if (chained && !choria_chain_read(cl, &ch, v))
		return 0;
	if (!choria_token_keys(t, cl, key, &first, &end, v)) {
		if (!v->reason)
			choria_token_bad(v, "untrusted_issuer", "no trusted key to check it with");
		return 0;
	}
	for (uint32_t i = first; i < end; i++) {
		r = chained ? choria_chain_vouched(&t->keys[i], &ch, md)
			    : choria_ed25519_verify(md, t->keys[i].pkey, jwt->sig, sizeof(jwt->sig),
						    jwt->signing_input, jwt->signing_input_len);
		if (r < 0)
			return r;
		if (r == 1) {
			v->key_index = i;
			return chained ? choria_chain_signed(&ch, cl, jwt, md, v) : 0;
		}
	}
	if (chained)
		return choria_token_bad(v, "untrusted_issuer",
					"its chain issuer was not vouched for by %s",
					t->by_ou && end - first == 1 ? "its ou's issuer"
								     : "a trusted key");
	return choria_token_bad(v, "untrusted_issuer", "it is not signed by %s",
				t->by_ou && end - first == 1 ? "its ou's issuer" : "a trusted key");
}

void choria_token_verdict_clear(struct choria_token_verdict *v)
{
	EVP_PKEY_free(v->holder);
	v->holder = NULL;
}

int choria_token_check(const struct choria_trust *t, struct jdom_parser *p, EVP_MD_CTX *md,
		       const char *token, size_t len, uint32_t key, struct choria_token_verdict *v)
{
	struct choria_claims cl = {0};
	struct choria_jwt jwt;
	unsigned char pub[CHORIA_ED25519_KEY_LEN];
	const char *name;
	size_t name_len;
	char why[128];
	int r;

	memset(v, 0, sizeof(*v));
	v->not_before = INT64_MIN;
	r = choria_jwt_parse(&jwt, p, token, len, why, sizeof(why));
	if (r == -ENOMEM)
		return r;
	if (r)
		return choria_token_bad(v, "bad_token", "the token is not an EdDSA JWT: %s", why);
	choria_claims_read(&jwt.claims, &cl, v);
	if (v->reason)
		return 0;
	if (!cl.has_exp)
		return choria_token_bad(v, "bad_token", "it has no exp");
	if (!choria_hex_decode(cl.public_key ? cl.public_key : "", cl.public_key_len, pub,
			       sizeof(pub)))
		return choria_token_bad(v, "bad_token",
					"its public_key is not 64 hex digits of an ed25519 key");
	name = v->purpose == CHORIA_TOKEN_SERVER ? cl.identity : cl.callerid;
	name_len = v->purpose == CHORIA_TOKEN_SERVER ? cl.identity_len : cl.callerid_len;
	if (name_len >= sizeof(v->name))
		return choria_token_bad(v, "bad_token", "its %s is longer than %zu bytes",
					v->purpose == CHORIA_TOKEN_SERVER ? "identity" : "callerid",
					sizeof(v->name) - 1);
	if (name)
		memcpy(v->name, name, name_len);
	v->name[name_len] = '\0';
	v->name_len = name_len;
	v->expires = cl.exp;
	/* Valid up to issexp included, so not from issexp + 1 on. */
	if (cl.iss_len >= 2 && memcmp(cl.iss, "C-", 2) == 0 && cl.has_issexp &&
	    cl.issexp + 1 < v->expires)
		v->expires = cl.issexp + 1;
	if (cl.has_nbf)
		v->not_before = cl.nbf;

	r = choria_token_trust(t, &cl, &jwt, md, key, v);
	if (r || v->reason)
		return r;
	v->holder = choria_ed25519_key(pub);
	if (!v->holder)
		return choria_token_bad(v, "bad_token", "its public_key is not an ed25519 key");
	return 0;
}
