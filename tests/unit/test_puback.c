/* SPDX-License-Identifier: Apache-2.0 */
/* Reading JetStream's answers to a publish: what the server sends, and
 * what it should never send. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "puback.h"

static struct puback parse(const char *text)
{
	struct puback pa;
	puback_parse(&pa, text, strlen(text));
	return pa;
}

Test(puback, a_stored_message_gives_its_stream_and_sequence)
{
	struct puback pa = parse("{\"stream\":\"NODES\",\"seq\":42}");
	cr_assert_eq(pa.kind, PUBACK_STORED);
	cr_assert_str_eq(pa.stream, "NODES");
	cr_assert_eq(pa.seq, 42);
	cr_assert_not(pa.duplicate);
}

Test(puback, a_duplicate_and_a_domain_are_read_too)
{
	struct puback pa = parse(
		"{\"stream\":\"NODES\",\"domain\":\"hub\",\"seq\":18446744073709551,\"duplicate\":true}");
	cr_assert_eq(pa.kind, PUBACK_STORED);
	cr_assert_eq(pa.seq, 18446744073709551ULL);
	cr_assert(pa.duplicate);
}

Test(puback, an_error_gives_its_code_and_description)
{
	struct puback pa = parse("{\"error\":{\"code\":400,\"err_code\":10054,"
				 "\"description\":\"message size exceeds maximum allowed\"}}");
	cr_assert_eq(pa.kind, PUBACK_REFUSED);
	cr_assert_eq(pa.err_code, PUBACK_ERR_TOO_LARGE);
	cr_assert_str_eq(pa.text, "message size exceeds maximum allowed");
}

Test(puback, an_error_without_a_jetstream_code_falls_back_to_the_status_code)
{
	struct puback pa = parse("{\"error\":{\"code\":503}}");
	cr_assert_eq(pa.kind, PUBACK_REFUSED);
	cr_assert_eq(pa.err_code, 503);
	cr_assert_str_eq(pa.text, "an error without a description");
}

Test(puback, an_error_wins_over_a_sequence)
{
	struct puback pa = parse("{\"stream\":\"NODES\",\"seq\":3,\"error\":{\"err_code\":10077}}");
	cr_assert_eq(pa.kind, PUBACK_REFUSED);
	cr_assert_eq(pa.err_code, 10077);
}

Test(puback, anything_else_is_unreadable_with_a_reason)
{
	const char *bad[] = {
		"",
		"not json",
		"{\"stream\":\"NODES\"}",
		"{\"seq\":4}",
		"{\"stream\":\"NODES\",\"seq\":0}",
		"{\"stream\":\"NODES\",\"seq\":-1}",
		"{\"stream\":7,\"seq\":4}",
		"{\"stream\":\"NODES\",\"seq\":\"4\"}",
		"{\"stream\":\"NODES\",\"seq\":4,\"seq\":5}",
		"[1,2]",
		"{\"stream\":\"NODES\",\"seq\":4",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct puback pa = parse(bad[i]);
		cr_assert_eq(pa.kind, PUBACK_UNREADABLE, "'%s' read as %d", bad[i], pa.kind);
		cr_assert_neq(pa.text[0], '\0', "'%s' has no reason", bad[i]);
	}
}

Test(puback, a_long_description_is_cut_not_overrun)
{
	char text[1200];
	char desc[1000];
	memset(desc, 'x', sizeof(desc) - 1);
	desc[sizeof(desc) - 1] = '\0';
	snprintf(text, sizeof(text), "{\"error\":{\"err_code\":1,\"description\":\"%s\"}}", desc);
	struct puback pa = parse(text);
	cr_assert_eq(pa.kind, PUBACK_REFUSED);
	cr_assert_eq(strlen(pa.text), sizeof(pa.text) - 1);
}

Test(puback, no_bytes_at_all_is_unreadable)
{
	struct puback pa;
	puback_parse(&pa, NULL, 0);
	cr_assert_eq(pa.kind, PUBACK_UNREADABLE);
}
