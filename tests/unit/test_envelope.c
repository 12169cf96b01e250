/* SPDX-License-Identifier: Apache-2.0 */
/* The published envelope and the subjects it goes to. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "subject.h"

static struct cad_msg msg(const char *sender, const char *id, int64_t t, const char *body,
			  size_t body_len)
{
	return (struct cad_msg){.sender = sender, .sender_len = strlen(sender), .request_id = id,
				.request_id_len = strlen(id), .time = t, .body = body,
				.body_len = body_len};
}

Test(envelope, has_the_design_fields_in_order)
{
	struct cad_msg m = msg("web1.ldn.example.net", "5e8b2f0e1a4c4d8f9b7a6c5d4e3f2a1b",
			       1520088557, "{\"a\":1}", 7);
	char *out;
	size_t len;
	cr_assert_eq(envelope_encode(&out, &len, ENVELOPE_PROTOCOL_JETSTREAM, &m), 0);
	const char *want = "{\"protocol\":\"choria:adapters:jetstream:output:1\","
			   "\"data\":\"{\\\"a\\\":1}\",\"sender\":\"web1.ldn.example.net\","
			   "\"time\":\"2018-03-03T14:49:17Z\","
			   "\"requestid\":\"5e8b2f0e1a4c4d8f9b7a6c5d4e3f2a1b\"}";
	cr_assert_eq(len, strlen(want));
	cr_assert_arr_eq(out, want, len);
	free(out);
}

Test(envelope, data_round_trips_byte_for_byte)
{
	/* Quotes, escapes, <>&, a NUL and multi-byte UTF-8 all survive. */
	static const char body[] = "{\"x\":\"<b>&amp;\\u2028\"}\0tail \xe2\x9c\x93";
	size_t blen = sizeof(body) - 1;
	struct cad_msg m = msg("n1", "0123456789abcdef0123456789abcdef", 0, body, blen);
	char *out;
	size_t len;
	cr_assert_eq(envelope_encode(&out, &len, ENVELOPE_PROTOCOL_NATSSTREAM, &m), 0);
	json_error_t e;
	json_t *o = json_loadb(out, len, JSON_ALLOW_NUL, &e);
	cr_assert_not_null(o, "%s", e.text);
	json_t *data = json_object_get(o, "data");
	cr_assert_eq(json_string_length(data), blen);
	cr_assert_arr_eq(json_string_value(data), body, blen);
	cr_assert_str_eq(json_string_value(json_object_get(o, "protocol")),
			 "choria:adapters:natsstream:output:1");
	cr_assert_str_eq(json_string_value(json_object_get(o, "time")), "1970-01-01T00:00:00Z");
	json_decref(o);
	free(out);
}

Test(envelope, refuses_invalid_utf8_and_unrepresentable_time)
{
	char *out;
	size_t len;
	struct cad_msg bad_utf8 = msg("n1", "r", 0, "\xff\xfe", 2);
	cr_assert_eq(envelope_encode(&out, &len, ENVELOPE_PROTOCOL_JETSTREAM, &bad_utf8), -EINVAL);
	struct cad_msg far = msg("n1", "r", 400000000000LL, "{}", 2);
	cr_assert_eq(envelope_encode(&out, &len, ENVELOPE_PROTOCOL_JETSTREAM, &far), -EINVAL);
}

Test(subject, replaces_the_sender)
{
	char buf[128];
	int n = subject_build(buf, sizeof(buf), "choria.node_metadata.%s", "web1.ldn.example.net",
			      20);
	cr_assert_eq(n, (int)strlen("choria.node_metadata.web1.ldn.example.net"));
	cr_assert_str_eq(buf, "choria.node_metadata.web1.ldn.example.net");
	cr_assert_gt(subject_build(buf, sizeof(buf), "%s.metadata", "n1", 2), 0);
	cr_assert_str_eq(buf, "n1.metadata");
	cr_assert_gt(subject_build(buf, sizeof(buf), "fixed.subject", "any thing", 9), 0);
	cr_assert_str_eq(buf, "fixed.subject");
}

Test(subject, rejects_senders_that_would_be_wildcards_or_invalid)
{
	char buf[128];
	const char *bad[] = {"", "*", ">", "a.*", "a.>", "a b", "a..b", ".a", "a.", "a\tb",
			     "a\nb"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		cr_assert_eq(subject_build(buf, sizeof(buf), "choria.%s", bad[i], strlen(bad[i])),
			     -EINVAL, "sender '%s' must be refused", bad[i]);
	cr_assert_eq(subject_build(buf, sizeof(buf), "choria.%s", "a\0b", 3), -EINVAL);
	cr_assert_eq(subject_build(buf, 8, "choria.%s", "longname", 8), -ENOSPC);
}

Test(subject, checks_topics)
{
	const char *why;
	cr_assert(subject_topic_valid("choria.node_metadata.%s", &why));
	cr_assert(subject_topic_valid("%s", &why));
	cr_assert(subject_topic_valid("node_data", &why));
	const char *bad[] = {"choria.%d", "a.%s.%s", "a.x%s", "a.*", "a.>.%s", "a..b", "", "a b"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		cr_assert_not(subject_topic_valid(bad[i], &why), "topic '%s' must be refused",
			      bad[i]);
}
