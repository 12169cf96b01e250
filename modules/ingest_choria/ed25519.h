/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ed25519.h - the few primitives protocol v2 checks are made of, over
 * OpenSSL libcrypto: an ed25519 public key from its 32 raw bytes, a
 * signature check with a digest context the caller reuses, and hex.
 */
#ifndef CHORIA_ED25519_H
#define CHORIA_ED25519_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

#define CHORIA_ED25519_KEY_LEN 32
#define CHORIA_ED25519_SIG_LEN 64

/* A public key (EVP_PKEY_free it), or NULL when OpenSSL refuses it or is
 * out of memory. */
EVP_PKEY *choria_ed25519_key(const unsigned char raw[CHORIA_ED25519_KEY_LEN]);

/* Whether `sig` (sig_len bytes: anything but 64 never verifies) is the
 * key's signature over the `len` bytes at `data`. `md` is reset and
 * reused. Returns 1 (verifies), 0 (does not) or -ENOMEM. */
int choria_ed25519_verify(EVP_MD_CTX *md, EVP_PKEY *key, const unsigned char *sig, size_t sig_len,
			  const void *data, size_t len);

/* Decode exactly `out_len` bytes from 2 * out_len hex digits (either
 * case) at s, n characters long. False for any other length or a byte that
 * is not a hex digit. */
bool choria_hex_decode(const char *s, size_t n, unsigned char *out, size_t out_len);

/* Lower-case hex of `len` bytes into out (2 * len + 1 bytes). */
void choria_hex_encode(const unsigned char *in, size_t len, char *out);

#endif
