/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ed25519.c - see ed25519.h. Ed25519 is "pure": EVP_DigestVerify() with no
 * digest of its own, over the whole message at once.
 */
#include "ed25519.h"

#include <errno.h>

#include <openssl/err.h>

EVP_PKEY *choria_ed25519_key(const unsigned char raw[CHORIA_ED25519_KEY_LEN])
{
	EVP_PKEY *k =
		EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, CHORIA_ED25519_KEY_LEN);
	ERR_clear_error();
	return k;
}

int choria_ed25519_verify(EVP_MD_CTX *md, EVP_PKEY *key, const unsigned char *sig, size_t sig_len,
			  const void *data, size_t len)
{
	int rc;

	if (sig_len != CHORIA_ED25519_SIG_LEN)
		return 0;
	EVP_MD_CTX_reset(md);
	if (EVP_DigestVerifyInit(md, NULL, NULL, NULL, key) != 1) {
		ERR_clear_error();
		return -ENOMEM;
	}
	rc = EVP_DigestVerify(md, sig, sig_len, data, len);
	ERR_clear_error();
	return rc == 1 ? 1 : 0;
}

static int choria_hex_digit(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool choria_hex_decode(const char *s, size_t n, unsigned char *out, size_t out_len)
{
	if (n != 2 * out_len)
		return false;
	for (size_t i = 0; i < out_len; i++) {
		int hi = choria_hex_digit((unsigned char)s[2 * i]);
		int lo = choria_hex_digit((unsigned char)s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return true;
}

void choria_hex_encode(const unsigned char *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}
