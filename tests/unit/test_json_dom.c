/* SPDX-License-Identifier: Apache-2.0 */
/* json_dom, the decoder's JSON parser, against jansson with the flags the
 * decoder used before it: the same documents are accepted and rejected,
 * and accepted ones hold the same values. Edge cases by name, then random
 * and mutated documents. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_dom.h"

#define JANSSON_FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES)

static struct jdom_scratch *scratch;

static void setup(void)
{
	scratch = jdom_scratch_take();
	cr_assert_not_null(scratch);
}

static void teardown(void)
{
	jdom_scratch_give(scratch);
}

/* Same tree? Objects: every jansson member is found with the same value
 * (both refuse duplicates, so the member counts agree). */
static bool same(const json_t *j, const struct jdom_value *v)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		const char *k;
		json_t *jv;
		if (jdom_type(v) != JDOM_OBJECT)
			return false;
		json_object_foreach((json_t *)j, k, jv)
		{
			struct jdom_value m;
			if (!jdom_member(v, k, &m) || !same(jv, &m))
				return false;
		}
		return true;
	}
	case JSON_ARRAY: {
		struct jdom_iter it;
		struct jdom_value e;
		size_t i = 0;
		if (jdom_type(v) != JDOM_ARRAY)
			return false;
		for (bool more = jdom_array_first(v, &it, &e); more;
		     more = jdom_array_next(&it, &e))
			if (i >= json_array_size(j) || !same(json_array_get(j, i++), &e))
				return false;
		return i == json_array_size(j);
	}
	case JSON_STRING: {
		const char *s;
		size_t n;
		if (jdom_type(v) != JDOM_STRING)
			return false;
		jdom_string(v, &s, &n);
		return n == json_string_length(j) && memcmp(s, json_string_value(j), n) == 0 &&
		       s[n] == '\0';
	}
	case JSON_INTEGER:
		return jdom_type(v) == JDOM_INTEGER && jdom_integer(v) == json_integer_value(j);
	case JSON_REAL:
		return jdom_type(v) == JDOM_REAL;
	case JSON_TRUE:
	case JSON_FALSE:
		return jdom_type(v) == JDOM_BOOL;
	case JSON_NULL:
		return jdom_type(v) == JDOM_NULL;
	}
	return false;
}

/* Both accept with the same values, or both reject. */
static void agree(const char *text, size_t len)
{
	json_error_t jerr;
	json_t *j = json_loadb(text, len, JANSSON_FLAGS, &jerr);
	struct jdom_value root;
	const char *why = NULL;
	int r = jdom_parse(jdom_scratch_parser(scratch, 0), text, len, false, &root, &why);
	char shown[200];

	snprintf(shown, sizeof(shown), "%.*s", (int)(len < 120 ? len : 120), text);
	for (char *p = shown; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	if (j) {
		cr_assert_eq(r, 0, "jansson accepts, json_dom refuses (%s): %s", why, shown);
		cr_assert(same(j, &root), "values differ: %s", shown);
		json_decref(j);
	} else {
		cr_assert(r == -EBADMSG || r == -ERANGE,
			  "jansson refuses (%s), json_dom accepts: %s", jerr.text, shown);
		cr_assert_not_null(why);
	}
}

#define AGREE(lit) agree(lit, sizeof(lit) - 1)

TestSuite(json_dom, .init = setup, .fini = teardown);

/* Integers jansson refuses but simdjson reads as uint64 are told apart
 * (-ERANGE), so that callers can call them a wrong value, not bad JSON. */
Test(json_dom, integers_past_int64_are_a_range_error)
{
	static const char *const big[] = {"{\"a\":9223372036854775808}",
					  "[1,{\"b\":[18446744073709551615]}]"};
	static const char *const bad[] = {"{\"a\":18446744073709551616}", "[01]",
					  "{\"a\":9223372036854775808,}"};
	struct jdom_value root;
	const char *why;
	for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
		cr_expect_eq(jdom_parse(jdom_scratch_parser(scratch, 0), big[i], strlen(big[i]),
					false, &root, &why),
			     -ERANGE, "%s", big[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(jdom_parse(jdom_scratch_parser(scratch, 0), bad[i], strlen(bad[i]),
					false, &root, &why),
			     -EBADMSG, "%s", bad[i]);
}

Test(json_dom, numbers)
{
	AGREE("{\"a\":-0}");
	AGREE("{\"a\":-0.0}");
	AGREE("{\"a\":9223372036854775807}");
	AGREE("{\"a\":9223372036854775808}");
	AGREE("{\"a\":18446744073709551615}");
	AGREE("{\"a\":18446744073709551616}");
	AGREE("{\"a\":[1,{\"b\":[18446744073709551615]}]}");
	AGREE("{\"a\":-9223372036854775808}");
	AGREE("{\"a\":-9223372036854775809}");
	AGREE("{\"a\":99999999999999999999}");
	AGREE("{\"a\":1e400}");
	AGREE("{\"a\":-1e400}");
	AGREE("{\"a\":1e-400}");
	AGREE("{\"a\":4.9e-324}");
	AGREE("{\"a\":60.0}");
	AGREE("{\"a\":1E5}");
	AGREE("{\"a\":1e+5}");
	AGREE("[01]");
	AGREE("[-01]");
	AGREE("[1.]");
	AGREE("[.5]");
	AGREE("[-]");
	AGREE("[1e]");
	AGREE("[+1]");
	AGREE("[0x10]");
	AGREE("[1.5e-7, -2.25E+3]");
}

Test(json_dom, strings)
{
	AGREE("[\"\\ud83d\\ude00\"]");
	AGREE("[\"\\ud800\"]");
	AGREE("[\"\\udc00\"]");
	AGREE("[\"\\ud800\\u0041\"]");
	AGREE("[\"\\ud800\\n\"]");
	AGREE("[\"\\u0000\"]");
	AGREE("[\"a\\u0000b\"]");
	AGREE("[\"\\uZZZZ\"]");
	AGREE("[\"\\u12\"]");
	AGREE("[\"\\x\"]");
	AGREE("[\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"]");
	AGREE("[\"\x01\"]");
	AGREE("[\"\x1f\"]");
	AGREE("[\"\x7f\"]");
	AGREE("[\"\xc3\xa9\"]");
	AGREE("[\"\xc0\x80\"]");
	AGREE("[\"\xc3\"]");
	AGREE("[\"\xed\xa0\x80\"]");
	AGREE("[\"\xf4\x8f\xbf\xbf\"]");
	AGREE("[\"\xf4\x90\x80\x80\"]");
	AGREE("[\"\xff\"]");
	AGREE("[\"a\0b\"]");
	AGREE("[\"unterminated]");
}

Test(json_dom, objects)
{
	AGREE("{\"a\":1,\"a\":2}");
	AGREE("{\"a\":{\"b\":1,\"b\":1}}");
	AGREE("{\"\\u00e9\":1,\"\xc3\xa9\":2}");
	AGREE("{\"a\":1,\"A\":2}");
	AGREE("{\"\\u0000\":1}");
	AGREE("{\"a\\u0000\":1}");
	AGREE("{\"\":1}");
	AGREE("{\"\":1,\"\":2}");
	AGREE("{\"a\":1,}");
	AGREE("{\"a\" 1}");
	AGREE("{a:1}");
	AGREE("{\"a\":1");
	AGREE("{}");
	AGREE("[1,2,]");
	AGREE("[]");
	/* Many keys: the sorted duplicate check. */
	char big[4096];
	size_t n = 0;
	n += (size_t)snprintf(big + n, sizeof(big) - n, "{");
	for (int i = 0; i < 100; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n, "%s\"k%d\":%d", i ? "," : "", i, i);
	big[n++] = '}';
	agree(big, n);
	memcpy(big + n - 1, ",\"k57\":1}", 9);
	agree(big, n + 8);
}

Test(json_dom, documents)
{
	AGREE("");
	AGREE(" ");
	AGREE("1");
	AGREE(" \"x\" ");
	AGREE("1 2");
	AGREE("{} {}");
	AGREE("{}\0");
	AGREE("\xef\xbb\xbf{}");
	AGREE("{}\x0c");
	AGREE(" \t\r\n{ \"a\" : [ true , false , null ] } \n");
	AGREE("[tru]");
	AGREE("[truex]");
	AGREE("[nul]");
	AGREE("[True]");
}

Test(json_dom, depth)
{
	static const size_t depths[] = {2047, 2048, 2049, 3000};
	for (size_t k = 0; k < sizeof(depths) / sizeof(depths[0]); k++) {
		size_t d = depths[k];
		char *s = malloc(2 * d + 16);
		cr_assert_not_null(s);
		memset(s, '[', d);
		memset(s + d, ']', d);
		agree(s, 2 * d);
		free(s);
		/* Objects count the same. */
		s = malloc(6 * d + 16);
		cr_assert_not_null(s);
		for (size_t i = 0; i < d; i++)
			memcpy(s + 5 * i, "{\"a\":", 5);
		s[5 * d] = '1';
		memset(s + 5 * d + 1, '}', d);
		agree(s, 6 * d + 1);
		free(s);
	}
}

/* ------------------------------------------------------------ random */

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

struct buf {
	char s[8192];
	size_t n;
};

static void put(struct buf *b, const char *s, size_t n)
{
	if (b->n + n < sizeof(b->s)) {
		memcpy(b->s + b->n, s, n);
		b->n += n;
	}
}

static void puts_(struct buf *b, const char *s)
{
	put(b, s, strlen(s));
}

static void gen_string(struct buf *b)
{
	static const char *const parts[] = {
		"a",
		"Z",
		" ",
		"\\\"",
		"\\\\",
		"\\/",
		"\\n",
		"\\t",
		"\\b",
		"\\f",
		"\\r",
		"\\u0041",
		"\\u00e9",
		"\\u2028",
		"\\u0000",
		"\\ud83d\\ude00",
		"\\uD834\\uDD1E",
		"\xc3\xa9",
		"\xe2\x9c\x93",
		"\xf0\x9f\x98\x80",
		"<",
		"&",
		"\x7f",
		"\\uffff",
	};
	unsigned n = rnd() % 6;
	puts_(b, "\"");
	for (unsigned i = 0; i < n; i++)
		puts_(b, parts[rnd() % (sizeof(parts) / sizeof(parts[0]))]);
	puts_(b, "\"");
}

static void gen_value(struct buf *b, int depth)
{
	static const char *const scalars[] = {
		"0",
		"-0",
		"1",
		"-1",
		"42",
		"9223372036854775807",
		"-9223372036854775808",
		"9223372036854775808",
		"1.5",
		"-2.5e10",
		"1e308",
		"1e-308",
		"0.0",
		"1E2",
		"true",
		"false",
		"null",
	};
	unsigned pick = rnd() % 10;
	if (depth > 6)
		pick = 9;
	if (pick < 2) {
		unsigned n = rnd() % 5;
		puts_(b, "{");
		for (unsigned i = 0; i < n; i++) {
			char key[16];
			if (i)
				puts_(b, ",");
			/* Small key space: duplicates happen now and then. */
			snprintf(key, sizeof(key), "\"k%u\":", rnd() % 12);
			puts_(b, key);
			gen_value(b, depth + 1);
		}
		puts_(b, "}");
	} else if (pick < 4) {
		unsigned n = rnd() % 5;
		puts_(b, "[");
		for (unsigned i = 0; i < n; i++) {
			if (i)
				puts_(b, ",");
			gen_value(b, depth + 1);
		}
		puts_(b, "]");
	} else if (pick < 7) {
		gen_string(b);
	} else {
		puts_(b, scalars[rnd() % (sizeof(scalars) / sizeof(scalars[0]))]);
	}
}

static void mutate(struct buf *b)
{
	static const char junk[] = "{}[]\":,0123456789-+.eE \\u\t\n\x01\x7f\xc3\xa9\xff\xed\xa0tfn";
	unsigned n = 1 + rnd() % 3;
	for (unsigned i = 0; i < n && b->n; i++) {
		size_t at = rnd() % b->n;
		switch (rnd() % 3) {
		case 0:
			b->s[at] = junk[rnd() % (sizeof(junk) - 1)];
			break;
		case 1: /* delete */
			memmove(b->s + at, b->s + at + 1, b->n - at - 1);
			b->n--;
			break;
		default: /* insert */
			if (b->n + 1 < sizeof(b->s)) {
				memmove(b->s + at + 1, b->s + at, b->n - at);
				b->s[at] = junk[rnd() % (sizeof(junk) - 1)];
				b->n++;
			}
			break;
		}
	}
}

Test(json_dom, random_documents_agree)
{
	for (int i = 0; i < 20000; i++) {
		struct buf b = {.n = 0};
		gen_value(&b, 0);
		agree(b.s, b.n);
	}
}

Test(json_dom, mutated_documents_agree)
{
	unsigned accepted = 0;
	for (int i = 0; i < 40000; i++) {
		struct buf b = {.n = 0};
		gen_value(&b, 0);
		mutate(&b);
		json_t *j = json_loadb(b.s, b.n, JANSSON_FLAGS, NULL);
		accepted += j != NULL;
		json_decref(j);
		agree(b.s, b.n);
	}
	/* Both outcomes were exercised. */
	cr_assert_gt(accepted, 1000);
	cr_assert_lt(accepted, 39000);
}

Test(json_dom, scratch_is_reused_per_thread)
{
	struct jdom_scratch *again;
	jdom_scratch_give(scratch);
	again = jdom_scratch_take();
	cr_assert_eq(again, scratch, "the thread's cached scratch comes back");
	scratch = jdom_scratch_take(); /* none cached now: a new one */
	cr_assert_neq(scratch, again);
	jdom_scratch_give(again);
}

Test(json_dom, a_new_scratch_buffer_has_its_padding_zeroed)
{
	/* simdjson reads the padding after a document parsed in place. */
	for (size_t len = 1; len < 100000; len *= 7) {
		unsigned char *b = jdom_scratch_buffer(scratch, len);
		cr_assert_not_null(b);
		for (size_t i = len; i < len + JDOM_PADDING; i++)
			cr_assert_eq(b[i], 0, "byte %zu of a %zu-byte buffer", i, len);
		memset(b, '{', len);
	}
}
