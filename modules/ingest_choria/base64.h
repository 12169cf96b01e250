/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one base64 the Choria protocol uses, checked strictly: standard
 * alphabet (RFC 4648, table 1), length a multiple of 4, at most two '=' and
 * only at the end. The transport's data and a request's signature are both
 * read with it.
 */
#ifndef CHORIA_BASE64_H
#define CHORIA_BASE64_H

#include <stddef.h>

enum choria_base64_result {
	CHORIA_BASE64_OK = 0,
	CHORIA_BASE64_LENGTH,  /* not a multiple of 4, or too long to decode */
	CHORIA_BASE64_BYTE,    /* a byte outside the alphabet, or '=' before the end */
	CHORIA_BASE64_OPENSSL, /* OpenSSL refused what the checks let through */
};

/* Decode s (n bytes, NUL bytes included) into out, which holds n / 4 * 3
 * bytes; *out_len receives the decoded length. On CHORIA_BASE64_BYTE,
 * *bad_at (when not NULL) receives the offset of the first stray byte.
 * Empty text decodes to nothing. */
enum choria_base64_result choria_base64_decode(const char *s, size_t n, unsigned char *out,
					       size_t *out_len, size_t *bad_at);

#endif
