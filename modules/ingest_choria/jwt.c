/* SPDX-License-Identifier: Apache-2.0 */
/*
 * jwt.c - see jwt.h. base64url goes through the strict standard decoder
 * (base64.c, OpenSSL underneath) once its two letters are translated and
 * the padding it omits is put back.
 */
#include "jwt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

/* One base64url segment into `out` (n / 4 * 3 + 3 bytes at least), with
 * `tmp` (n + 3 bytes) for its standard form. */
static int choria_jwt_segment(const char *s, size_t n, char *tmp, unsigned char *out,
			      size_t *out_len)
{
	size_t i;

	if (n % 4 == 1)
		return -1;
	for (i = 0; i < n; i++) {
		char c = s[i];
		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (c == '+' || c == '/' || c == '=')
			return -1; /* the standard alphabet, or padding */
		tmp[i] = c;
	}
	while (i % 4)
		tmp[i++] = '=';
	return choria_base64_decode(tmp, i, out, out_len, NULL) == CHORIA_BASE64_OK ? 0 : -1;
}

static int choria_jwt_object(struct jdom_value *out, struct jdom_parser *p,
			     const unsigned char *text, size_t len, const char *what, char *why,
			     size_t why_len)
{
	const char *err;
	int r = jdom_parse(p, (const char *)text, len, false, out, &err);

	if (r == -ENOMEM)
		return r;
	if (r) {
		snprintf(why, why_len, "its %s is not JSON: %s", what, err);
		return -EBADMSG;
	}
	if (jdom_type(out) != JDOM_OBJECT) {
		snprintf(why, why_len, "its %s is not a JSON object", what);
		return -EBADMSG;
	}
	return 0;
}

int choria_jwt_parse(struct choria_jwt *out, struct jdom_parser *p, const char *token, size_t len,
		     char *why, size_t why_len)
{
	const char *dot1, *dot2, *claims, *sig;
	struct jdom_value header, alg;
	size_t hlen, clen, slen, got;
	unsigned char *buf;
	char *tmp;
	int r;

	memset(out, 0, sizeof(*out));
	if (len > CHORIA_JWT_MAX_LEN) {
		snprintf(why, why_len, "it is longer than %d bytes", CHORIA_JWT_MAX_LEN);
		return -EBADMSG;
	}
	dot1 = memchr(token, '.', len);
	dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token))) {
		snprintf(why, why_len, "it is not three segments joined by '.'");
		return -EBADMSG;
	}
	hlen = (size_t)(dot1 - token);
	claims = dot1 + 1;
	clen = (size_t)(dot2 - claims);
	sig = dot2 + 1;
	slen = len - (size_t)(sig - token);
	if (!hlen || !clen || !slen) {
		snprintf(why, why_len, "it has an empty segment");
		return -EBADMSG;
	}

	buf = malloc(len / 4 * 3 + 3 + JDOM_PADDING);
	tmp = malloc(len + 3);
	if (!buf || !tmp) {
		r = -ENOMEM;
		goto out;
	}
	r = -EBADMSG;
	if (choria_jwt_segment(token, hlen, tmp, buf, &got) != 0) {
		snprintf(why, why_len, "its header is not base64url without padding");
		goto out;
	}
	r = choria_jwt_object(&header, p, buf, got, "header", why, why_len);
	if (r)
		goto out;
	const char *a = NULL;
	size_t an = 0;
	if (jdom_member(&header, "alg", &alg) && jdom_type(&alg) == JDOM_STRING)
		jdom_string(&alg, &a, &an);
	if (an != 5 || memcmp(a, "EdDSA", 5) != 0) {
		snprintf(why, why_len, "its alg is not EdDSA");
		r = -EBADMSG;
		goto out;
	}
	r = -EBADMSG;
	if (choria_jwt_segment(sig, slen, tmp, buf, &got) != 0) {
		snprintf(why, why_len, "its signature is not base64url without padding");
		goto out;
	}
	if (got != CHORIA_ED25519_SIG_LEN) {
		snprintf(why, why_len, "its signature is %zu bytes, not %d", got,
			 CHORIA_ED25519_SIG_LEN);
		goto out;
	}
	memcpy(out->sig, buf, got);
	if (choria_jwt_segment(claims, clen, tmp, buf, &got) != 0) {
		snprintf(why, why_len, "its claims are not base64url without padding");
		goto out;
	}
	/* The header is done with: the parser takes the claims. */
	r = choria_jwt_object(&out->claims, p, buf, got, "claims", why, why_len);
	if (r)
		goto out;
	out->signing_input = token;
	out->signing_input_len = (size_t)(dot2 - token);
out:
	free(buf);
	free(tmp);
	return r;
}
