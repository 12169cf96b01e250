/* SPDX-License-Identifier: Apache-2.0 */
/* The strict base64 the choria decoder and verifier share. */
#include <criterion/criterion.h>
#include <string.h>

#include "base64.h"

static enum choria_base64_result decode(const char *s, char *out, size_t *out_len, size_t *bad)
{
	static unsigned char buf[256];
	memset(buf, 0, sizeof(buf));
	enum choria_base64_result r = choria_base64_decode(s, strlen(s), buf, out_len, bad);
	memcpy(out, buf, *out_len);
	out[*out_len] = '\0';
	return r;
}

Test(base64, every_padding_decodes)
{
	char out[64];
	size_t n = 99, bad = 99;
	cr_assert_eq(decode("", out, &n, &bad), CHORIA_BASE64_OK);
	cr_assert_eq(n, 0);
	cr_assert_eq(decode("Zm9v", out, &n, &bad), CHORIA_BASE64_OK);
	cr_assert_str_eq(out, "foo");
	cr_assert_eq(decode("Zm9vYg==", out, &n, &bad), CHORIA_BASE64_OK);
	cr_assert_str_eq(out, "foob");
	cr_assert_eq(decode("Zm9vYmE=", out, &n, &bad), CHORIA_BASE64_OK);
	cr_assert_str_eq(out, "fooba");
	cr_assert_eq(decode("+/+/", out, &n, &bad), CHORIA_BASE64_OK);
	cr_assert_eq(n, 3);
	cr_assert_eq(bad, 99, "untouched when nothing is wrong");
}

Test(base64, the_length_must_be_a_multiple_of_4)
{
	char out[64];
	size_t n, bad = 99;
	cr_assert_eq(decode("Zm9", out, &n, &bad), CHORIA_BASE64_LENGTH);
	cr_assert_eq(decode("Zm9vY", out, &n, &bad), CHORIA_BASE64_LENGTH);
	cr_assert_eq(decode("Zm9vYg=", out, &n, &bad), CHORIA_BASE64_LENGTH, "missing padding");
	cr_assert_eq(n, 0);
}

Test(base64, stray_bytes_are_refused_and_located)
{
	static const struct {
		const char *text;
		size_t at;
	} bad[] = {
		{"Zm9v!A==", 4},  {"Zm-v", 2},      {"Zm_v", 2},     {"Zm=v", 2},
		{"Z===", 1},      {"Zm9v\nYg=", 4}, {" Zm9vYmE", 0}, {"Zm9vYmE ", 7},
		{"Zm9v\tYmE", 4}, {"Zm9vY=E=", 5},  {"=Zm9", 0},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		char out[64];
		size_t n, at = 99;
		cr_expect_eq(decode(bad[i].text, out, &n, &at), CHORIA_BASE64_BYTE, "'%s'",
			     bad[i].text);
		cr_expect_eq(at, bad[i].at, "'%s': offset %zu", bad[i].text, at);
		cr_expect_eq(n, 0);
	}
}

Test(base64, a_nul_byte_is_a_stray_byte)
{
	unsigned char buf[8];
	size_t n, at = 99;
	cr_assert_eq(choria_base64_decode("Zm\0v", 4, buf, &n, &at), CHORIA_BASE64_BYTE);
	cr_assert_eq(at, 2);
	cr_assert_eq(choria_base64_decode("Zm9v\0\0\0\0", 8, buf, &n, NULL), CHORIA_BASE64_BYTE,
		     "bad_at may be NULL");
}
