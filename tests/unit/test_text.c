/* SPDX-License-Identifier: Apache-2.0 */
/* Untrusted text made safe for a log line (cad_text.h), as the daemon and
 * the modules all write it. */
#include <criterion/criterion.h>

#include <choria-adapterd/cad_text.h>

Test(text, printable_ascii_is_kept_and_the_rest_escaped)
{
	char buf[16];
	cr_assert_str_eq(cad_text_printable(buf, sizeof(buf), "abc", 3), "abc");
	cr_assert_str_eq(cad_text_printable(buf, sizeof(buf), "a\nb\"", 4), "a\\x0ab\\x22");
	cr_assert_str_eq(cad_text_printable(buf, sizeof(buf), "\\ \x7f", 3), "\\x5c \\x7f");
	cr_assert_str_eq(cad_text_printable(buf, sizeof(buf), "a\0b", 3), "a\\x00b",
			 "a NUL byte does not end the value");
	cr_assert_str_eq(cad_text_printable(buf, sizeof(buf), "\xff", 1), "\\xff");
}

Test(text, a_long_value_is_cut_after_a_whole_byte_with_dots)
{
	char buf[16];
	cr_assert_str_eq(cad_text_printable(buf, sizeof(buf), "0123456789abcdefgh", 18),
			 "0123456789ab...");
	cr_assert_str_eq(cad_text_printable(buf, sizeof(buf), "0123456789abcde", 15),
			 "0123456789abcde", "exactly full: no dots");
	cr_assert_str_eq(cad_text_printable(buf, sizeof(buf), "\xc3\xa9\xc3\xa9\xc3\xa9", 6),
			 "\\xc3\\xa9\\xc3...");
	cr_assert_str_eq(cad_text_printable(buf, 2, "abc", 3), "a", "no room for dots");
	cr_assert_str_eq(cad_text_printable(buf, 1, "abc", 3), "");
}

Test(text, empty_and_absent)
{
	char buf[4] = "xyz";
	cr_assert_str_eq(cad_text_printable(buf, sizeof(buf), NULL, 0), "");
	cr_assert_null(cad_text_printable(NULL, 8, "abc", 3));
	buf[0] = 'q';
	cr_assert_eq(cad_text_printable(buf, 0, "abc", 3), buf);
	cr_assert_eq(buf[0], 'q', "a zero-length buffer is left alone");
}

Test(text, every_byte_value_stays_inside_the_buffer_and_printable)
{
	char in[256], buf[64];
	for (int i = 0; i < 256; i++)
		in[i] = (char)i;
	for (size_t len = 1; len <= sizeof(buf); len++) {
		memset(buf, 'Z', sizeof(buf));
		cad_text_printable(buf, len, in, sizeof(in));
		size_t n = strlen(buf);
		cr_assert_lt(n, len);
		for (size_t i = len; i < sizeof(buf); i++)
			cr_assert_eq(buf[i], 'Z', "byte %zu written with len %zu", i, len);
		for (size_t i = 0; i < n; i++)
			cr_assert(buf[i] >= 0x20 && buf[i] < 0x7f && buf[i] != '"');
	}
}

Test(text, scrub_replaces_what_is_not_printable_ascii)
{
	char s[] = "bad \x01 byte \xc3\xa9 and\ttab \"quoted\"";
	cr_assert_eq(cad_text_scrub(s), s);
	cr_assert_str_eq(s, "bad ? byte ?? and?tab \"quoted\"");
	cr_assert_null(cad_text_scrub(NULL));
	char e[] = "";
	cr_assert_str_eq(cad_text_scrub(e), "");
}
