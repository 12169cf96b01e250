/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OpenSSL decodes; this checks what EVP_DecodeBlock() would let through.
 * It refuses every byte outside the alphabet but '=', which it reads as
 * zero bits anywhere, and trims white space at either end (which shortens
 * its result). So: no '=' before the padding, and a result of full length,
 * is exactly "only the alphabet, then the padding"; the byte-by-byte scan
 * that finds the culprit runs only for bad text.
 */
#include "base64.h"

#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include <openssl/evp.h>

static bool choria_base64_alphabet(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

enum choria_base64_result choria_base64_decode(const char *s, size_t n, unsigned char *out,
					       size_t *out_len, size_t *bad_at)
{
	size_t pad = 0;
	int got;

	*out_len = 0;
	if (n % 4 || n > INT_MAX)
		return CHORIA_BASE64_LENGTH;
	if (n == 0)
		return CHORIA_BASE64_OK;
	if (s[n - 1] == '=')
		pad++;
	if (s[n - 2] == '=')
		pad++;
	got = memchr(s, '=', n - pad) ? -1 : EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
	if (got < 0 || (size_t)got != n / 4 * 3) {
		for (size_t i = 0; i < n - pad; i++) {
			if (!choria_base64_alphabet((unsigned char)s[i])) {
				if (bad_at)
					*bad_at = i;
				return CHORIA_BASE64_BYTE;
			}
		}
		return CHORIA_BASE64_OPENSSL;
	}
	*out_len = (size_t)got - pad;
	return CHORIA_BASE64_OK;
}
