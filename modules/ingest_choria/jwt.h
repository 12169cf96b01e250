/* SPDX-License-Identifier: Apache-2.0 */
/*
 * jwt.h - the compact JWTs of Choria's protocol v2 tokens, read strictly:
 * exactly three base64url segments without padding, a header object whose
 * `alg` is EdDSA (`typ`, `kid` and the rest ignored), a claims object, and
 * a 64-byte signature. The signature itself is checked by the caller, who
 * knows which key should have made it (token.c).
 */
#ifndef CHORIA_JWT_H
#define CHORIA_JWT_H

#include <stddef.h>

#include "ed25519.h"
#include "json_dom.h"

/* Longer tokens are refused: the fleet's are about 1 KiB. */
#define CHORIA_JWT_MAX_LEN 16384

struct choria_jwt {
	const char *signing_input; /* "<header>.<claims>", in the token text */
	size_t signing_input_len;
	unsigned char sig[CHORIA_ED25519_SIG_LEN];
	struct jdom_value claims; /* an object, in the parser given */
};

/*
 * Parse `len` bytes of token text with parser `p` (which then holds the
 * claims). Returns 0, -EBADMSG with `why` saying what is wrong in
 * printable ASCII, or -ENOMEM.
 */
int choria_jwt_parse(struct choria_jwt *out, struct jdom_parser *p, const char *token, size_t len,
		     char *why, size_t why_len);

#endif
