/* SPDX-License-Identifier: Apache-2.0 */
/* The Choria protocol v1 decoder: valid messages, every malformed kind with
 * its label, byte-exact bodies, and arbitrary input that must not crash. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "choria_msg.h"
#include "protocol.h"

#define REQ CHORIA_MSG_REQUEST
#define REP CHORIA_MSG_REPLY

static bool is_label(const char *r)
{
	static const char *const labels[] = {"not_json",   "bad_transport", "bad_base64",
					     "bad_secure", "bad_message",   NULL};
	for (const char *const *l = labels; *l; l++)
		if (r && strcmp(r, *l) == 0)
			return true;
	return false;
}

static bool is_printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

/* Decode wire bytes and expect a rejection with `label` and a detail that
 * contains `part` (when not NULL). */
static void expect_bytes(const char *wire, size_t len, enum choria_kind kind, const char *label,
			 const char *part)
{
	struct choria_decoded d;
	const char *reason = NULL;
	char detail[256];
	int r = choria_decode(&d, kind, wire, len, &reason, detail, sizeof(detail));

	cr_assert_eq(r, -EBADMSG, "rc %d, detail: %s", r, detail);
	cr_assert_not_null(reason);
	cr_assert_str_eq(reason, label, "detail: %s", detail);
	cr_assert(is_printable(detail), "detail not printable");
	if (part)
		cr_assert_not_null(strstr(detail, part), "detail \"%s\" does not say \"%s\"",
				   detail, part);
	cr_assert_null(d.body);
	cr_assert_null(d.priv);
	choria_decoded_clear(&d);
}

static void expect_reject(const struct choria_msg_spec *s, enum choria_kind kind, const char *label,
			  const char *part)
{
	size_t len;
	char *wire = choria_msg_build(s, &len);

	cr_assert_not_null(wire, "the fixture could not build the message");
	expect_bytes(wire, len, kind, label, part);
	free(wire);
}

/* Build and decode, expecting success; *d must be cleared by the caller. */
static void expect_ok(const struct choria_msg_spec *s, enum choria_kind kind,
		      struct choria_decoded *d)
{
	const char *reason = NULL;
	char detail[256];
	size_t len;
	char *wire = choria_msg_build(s, &len);

	cr_assert_not_null(wire, "the fixture could not build the message");
	int r = choria_decode(d, kind, wire, len, &reason, detail, sizeof(detail));
	cr_assert_eq(r, 0, "rc %d, %s: %s", r, reason ? reason : "-", detail);
	cr_assert_null(reason);
	free(wire);
}

static void assert_bytes(const char *got, size_t got_len, const char *want, size_t want_len)
{
	cr_assert_not_null(got);
	cr_assert_eq(got_len, want_len, "length %zu, want %zu", got_len, want_len);
	cr_assert(memcmp(got, want, want_len) == 0, "bytes differ");
	cr_assert_eq(got[got_len], '\0', "not NUL-terminated");
}

/* ------------------------------------------------------------ valid */

Test(valid, request)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	struct choria_decoded d;
	char *text, *sig;
	size_t len, text_len;
	char *wire = choria_msg_build_ex(&s, &len, &text, &text_len);
	const char *reason = NULL;
	char detail[256];

	cr_assert_not_null(wire);
	cr_assert_eq(choria_decode(&d, CHORIA_REQUEST, wire, len, &reason, detail, sizeof(detail)),
		     0, "%s", detail);
	cr_assert_eq(d.version, 1);
	cr_assert_eq(d.kind, CHORIA_REQUEST);
	assert_bytes(d.sender, d.sender_len, "web1.example.net", 16);
	assert_bytes(d.request_id, d.request_id_len, s.request_id, 32);
	cr_assert_eq(d.time, 1520088557);
	assert_bytes(d.body, d.body_len, s.body, strlen(s.body));
	assert_bytes(d.callerid, d.callerid_len, "choria=web1.example.net", 23);
	assert_bytes(d.secure_message, d.secure_message_len, text, text_len);
	sig = choria_msg_base64("insecure registration", 21);
	assert_bytes(d.signature, d.signature_len, sig, strlen(sig));
	cr_assert_not_null(strstr(d.pubcert, "BEGIN CERTIFICATE"));
	cr_assert_null(d.hash);
	choria_decoded_clear(&d);
	cr_assert_null(d.body);
	choria_decoded_clear(&d); /* twice is fine */
	free(sig);
	free(text);
	free(wire);
}

Test(valid, reply)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	struct choria_decoded d;
	char *text, *hash;
	size_t len, text_len;
	char *wire = choria_msg_build_ex(&s, &len, &text, &text_len);

	cr_assert_not_null(wire);
	cr_assert_eq(choria_decode(&d, CHORIA_REPLY, wire, len, NULL, NULL, 0), 0);
	cr_assert_eq(d.kind, CHORIA_REPLY);
	assert_bytes(d.sender, d.sender_len, "web1.example.net", 16);
	assert_bytes(d.request_id, d.request_id_len, s.request_id, 32);
	cr_assert_eq(d.time, 1520088557);
	assert_bytes(d.body, d.body_len, s.body, strlen(s.body));
	assert_bytes(d.secure_message, d.secure_message_len, text, text_len);
	hash = choria_msg_sha256_base64(d.secure_message, d.secure_message_len);
	assert_bytes(d.hash, d.hash_len, hash, strlen(hash));
	cr_assert_null(d.callerid);
	cr_assert_null(d.signature);
	cr_assert_null(d.pubcert);
	choria_decoded_clear(&d);
	free(hash);
	free(text);
	free(wire);
}

Test(valid, ttl_30_is_the_minimum)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	struct choria_decoded d;
	s.ttl = 30;
	expect_ok(&s, CHORIA_REQUEST, &d);
	choria_decoded_clear(&d);
}

Test(bad_message, times_outside_the_years_1_to_9999_the_envelope_can_write)
{
	static const int64_t times[] = {CHORIA_TIME_MAX + 1, CHORIA_TIME_MIN - 1, INT64_MAX,
					INT64_MIN};
	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
		struct choria_msg_spec s = choria_msg_defaults(REP);
		s.time = times[i];
		expect_reject(&s, CHORIA_REPLY, "bad_message", "envelope.time");
	}
}

/* Valid JSON with an integer past int64 is a wrong value in its layer,
 * not text that is not JSON. */
Test(bad_message, time_past_int64)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.message.raw = "{\"protocol\":\"choria:reply:1\",\"message\":\"x\",\"envelope\":{"
			"\"requestid\":\"0123456789abcdef0123456789abcdef\",\"senderid\":\"w\","
			"\"agent\":\"a\",\"time\":18446744073709551615}}";
	expect_reject(&s, CHORIA_REPLY, "bad_message", "beyond 64-bit");
	s = choria_msg_defaults(REP);
	s.transport.raw = "{\"protocol\":\"choria:transport:1\",\"data\":\"e30=\","
			  "\"headers\":{},\"hops\":9223372036854775808}";
	expect_reject(&s, CHORIA_REPLY, "bad_transport", "transport holds an integer beyond");
	/* Past UINT64_MAX the parser cannot tell it from a malformed number. */
	s.transport.raw = "{\"protocol\":\"choria:transport:1\",\"data\":\"e30=\","
			  "\"headers\":{},\"hops\":18446744073709551616}";
	expect_reject(&s, CHORIA_REPLY, "not_json", NULL);
}

Test(valid, negative_and_large_times)
{
	static const int64_t times[] = {0, -1, CHORIA_TIME_MAX, CHORIA_TIME_MIN, 4102444800};
	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
		struct choria_msg_spec s = choria_msg_defaults(REP);
		struct choria_decoded d;
		s.time = times[i];
		expect_ok(&s, CHORIA_REPLY, &d);
		cr_assert_eq(d.time, times[i]);
		choria_decoded_clear(&d);
	}
}

Test(valid, full_headers_and_unknown_members)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	struct choria_decoded d;
	s.reply_to = "choria.reply.x";
	s.transport.patch =
		"{\"headers\":{\"seen-by\":[[\"\",\"web1\",\"nats1\"],[\"a\",\"b\",\"c\"]],"
		"\"federation\":{\"req\":\"5e8b2f0c1d3a4b5c6d7e8f9a0b1c2d3e\","
		"\"reply-to\":\"x.y\",\"targets\":[\"n1\",\"n2\"]}},\"extra\":1}";
	s.secure.patch = "{\"extra\":[1,2]}";
	s.message.patch = "{\"extra\":null,\"envelope\":{\"extra\":true,\"filter\":{\"fact\":"
			  "[{\"fact\":\"os\",\"operator\":\"==\",\"value\":\"linux\"}],"
			  "\"identity\":[\"web1\"],\"compound\":[[{\"expr\":\"x\"}]]}}}";
	expect_ok(&s, CHORIA_REQUEST, &d);
	choria_decoded_clear(&d);
}

Test(valid, filter_without_agent)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	struct choria_decoded d;
	s.message.remove = "envelope.filter.agent";
	expect_ok(&s, CHORIA_REQUEST, &d);
	choria_decoded_clear(&d);
}

Test(valid, every_base64_padding)
{
	/* Grow the secure layer a byte at a time: 0, 1 and 2 '=' at the end. */
	char sender[16] = "n";
	for (int i = 0; i < 6; i++) {
		struct choria_msg_spec s = choria_msg_defaults(REP);
		struct choria_decoded d;
		strcat(sender, "x");
		s.sender = sender;
		expect_ok(&s, CHORIA_REPLY, &d);
		assert_bytes(d.sender, d.sender_len, sender, strlen(sender));
		choria_decoded_clear(&d);
	}
}

Test(valid, senderid_may_hold_any_characters)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	struct choria_decoded d;
	s.sender = "web 1 <\xc3\xa9>";
	expect_ok(&s, CHORIA_REQUEST, &d);
	assert_bytes(d.sender, d.sender_len, s.sender, strlen(s.sender));
	choria_decoded_clear(&d);
}

/* ------------------------------------------------- body byte for byte */

static void check_body(struct choria_msg_spec *s, enum choria_kind kind, const char *body,
		       size_t len)
{
	struct choria_decoded d;
	s->body = body;
	s->body_len = len;
	expect_ok(s, kind, &d);
	assert_bytes(d.body, d.body_len, body, len);
	choria_decoded_clear(&d);
}

static const char tricky[] = "{\"html\":\"<script>a && b > c</script>\",\"q\":\"say \\\"hi\\\"\","
			     "\"esc\":\"\\u003c\\u2028\\\\n\",\"ls\":\"\xe2\x80\xa8|\xe2\x80\xa9\","
			     "\"u\":\"caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80\",\"ctl\":\"\t\"}";

Test(body, go_escapes_are_decoded)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	char *text;
	size_t len, text_len;

	s.body = tricky;
	/* The request layer's text is written as Go writes it. */
	char *wire = choria_msg_build_ex(&s, &len, &text, &text_len);
	cr_assert_not_null(wire);
	cr_assert_null(strchr(text, '<'));
	cr_assert_null(strchr(text, '&'));
	cr_assert_not_null(strstr(text, "\\u003cscript\\u003e"));
	cr_assert_not_null(strstr(text, "\\u2028|\\u2029"));
	free(text);
	free(wire);
	check_body(&s, CHORIA_REQUEST, tricky, strlen(tricky));
	s = choria_msg_defaults(REP);
	check_body(&s, CHORIA_REPLY, tricky, strlen(tricky));
}

Test(body, plain_escapes_are_decoded)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.go_escapes = false;
	check_body(&s, CHORIA_REQUEST, tricky, strlen(tricky));
}

Test(body, ascii_only_escapes_are_decoded)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.ensure_ascii = true; /* non-ASCII as \u escapes, astral as surrogate pairs */
	check_body(&s, CHORIA_REPLY, tricky, strlen(tricky));
}

Test(body, embedded_nul_is_kept)
{
	static const char body[] = "{\"a\":1}\0after the NUL \xc3\xa9";
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	check_body(&s, CHORIA_REQUEST, body, sizeof(body) - 1);
}

Test(body, not_json_text_is_still_a_body)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	check_body(&s, CHORIA_REPLY, "x", 1);
}

Test(body, large)
{
	size_t n = 300 * 1024;
	char *body = malloc(n + 1);
	cr_assert_not_null(body);
	for (size_t i = 0; i < n; i++)
		body[i] = "<>&\"\\ab\xc3\xa9"[i % 7]; /* ASCII only: every 7th cycle stays valid */
	body[n] = '\0';
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	check_body(&s, CHORIA_REQUEST, body, n);
	free(body);
}

/* --------------------------------------------------------- not_json */

Test(not_json, empty_input)
{
	expect_bytes("", 0, CHORIA_REQUEST, "not_json", "transport is empty");
	expect_bytes(NULL, 0, CHORIA_REPLY, "not_json", "transport is empty");
}

Test(not_json, transport_not_json)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.raw = "this is not JSON";
	expect_reject(&s, CHORIA_REQUEST, "not_json", "transport is not valid JSON");
}

Test(not_json, transport_not_an_object)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.raw = "[\"choria:transport:1\"]";
	expect_reject(&s, CHORIA_REQUEST, "not_json", "transport is an array, not a JSON object");
}

Test(not_json, truncated_input)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	size_t len;
	char *wire = choria_msg_build(&s, &len);
	cr_assert_not_null(wire);
	expect_bytes(wire, len / 2, CHORIA_REQUEST, "not_json", "transport is not valid JSON");
	expect_bytes(wire, len - 1, CHORIA_REQUEST, "not_json", NULL);
	expect_bytes(wire, 1, CHORIA_REQUEST, "not_json", NULL);
	free(wire);
}

Test(not_json, trailing_garbage)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	size_t len;
	char *wire = choria_msg_build(&s, &len);
	cr_assert_not_null(wire);
	char *more = malloc(len + 3);
	memcpy(more, wire, len);
	memcpy(more + len, " {}", 3);
	expect_bytes(more, len + 3, CHORIA_REPLY, "not_json", NULL);
	free(more);
	free(wire);
}

Test(not_json, duplicate_members)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.raw =
		"{\"protocol\":\"choria:transport:1\",\"protocol\":\"choria:transport:1\","
		"\"data\":\"\",\"headers\":{}}";
	expect_reject(&s, CHORIA_REQUEST, "not_json", "duplicate");
}

Test(not_json, secure_layer_not_json)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.secure.raw = "{\"protocol\": choria";
	expect_reject(&s, CHORIA_REQUEST, "not_json",
		      "secure request (transport.data) is not valid JSON");
}

Test(not_json, secure_layer_not_an_object)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.secure.raw = "\"choria:secure:reply:1\"";
	expect_reject(&s, CHORIA_REPLY, "not_json", "secure reply (transport.data) is a string");
}

Test(not_json, secure_layer_empty)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.patch = "{\"data\":\"\"}";
	expect_reject(&s, CHORIA_REQUEST, "not_json", "secure request (transport.data) is empty");
}

Test(not_json, message_layer_not_json)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.message.raw = "{\"protocol\":\"choria:request:1\",";
	expect_reject(&s, CHORIA_REQUEST, "not_json", "request (secure.message) is not valid JSON");
}

Test(not_json, message_layer_not_an_object)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.message.raw = "42";
	expect_reject(&s, CHORIA_REPLY, "not_json", "reply (secure.message) is an integer");
}

Test(not_json, control_bytes_in_detail_are_masked)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.raw = "{\"a\":\x01\x02\x1b[31m}";
	expect_reject(&s, CHORIA_REQUEST, "not_json", NULL); /* expect_bytes checks printable */
}

/* ---------------------------------------------------- bad_transport */

Test(bad_transport, wrong_protocol)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport_protocol = "choria:transport:2";
	expect_reject(
		&s, CHORIA_REQUEST, "bad_transport",
		"transport.protocol is \"choria:transport:2\", expected \"choria:transport:1\"");
}

Test(bad_transport, protocol_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.remove = "protocol";
	expect_reject(&s, CHORIA_REQUEST, "bad_transport", "transport.protocol is missing");
}

Test(bad_transport, protocol_not_a_string)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.transport.patch = "{\"protocol\":1}";
	expect_reject(&s, CHORIA_REPLY, "bad_transport",
		      "transport.protocol must be a string, got an integer");
}

Test(bad_transport, data_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.remove = "data";
	expect_reject(&s, CHORIA_REQUEST, "bad_transport", "transport.data is missing");
}

Test(bad_transport, data_not_a_string)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.patch = "{\"data\":{\"protocol\":\"choria:secure:request:1\"}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_transport",
		      "transport.data must be a string, got an object");
}

Test(bad_transport, headers_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.transport.remove = "headers";
	expect_reject(&s, CHORIA_REPLY, "bad_transport", "transport.headers is missing");
}

Test(bad_transport, headers_not_an_object)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.patch = "{\"headers\":[]}";
	expect_reject(&s, CHORIA_REQUEST, "bad_transport",
		      "transport.headers must be an object, got an array");
}

Test(bad_transport, header_mc_sender_empty)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.patch = "{\"headers\":{\"mc_sender\":\"\"}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_transport",
		      "transport.headers.mc_sender must not be empty");
}

Test(bad_transport, header_reply_to_not_a_string)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.patch = "{\"headers\":{\"reply-to\":false}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_transport",
		      "transport.headers.reply-to must be a string, got a boolean");
}

Test(bad_transport, header_seen_by_not_strings)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.patch = "{\"headers\":{\"seen-by\":[[\"a\",\"b\",\"c\"],[\"a\",2,\"c\"]]}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_transport",
		      "transport.headers.seen-by[1][1] must be a string, got an integer");
}

Test(bad_transport, header_federation_req_wrong_length)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.transport.patch = "{\"headers\":{\"federation\":{\"req\":\"abc\"}}}";
	expect_reject(&s, CHORIA_REPLY, "bad_transport",
		      "transport.headers.federation.req must be 32 characters, got 3");
}

/* ------------------------------------------------------- bad_base64 */

Test(bad_base64, not_base64)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.patch = "{\"data\":\"{\\\"protocol\\\":1}\"}";
	expect_reject(&s, CHORIA_REQUEST, "bad_base64", "not valid base64");
}

Test(bad_base64, bad_character)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.patch = "{\"data\":\"QUJD!UJD\"}";
	expect_reject(&s, CHORIA_REQUEST, "bad_base64", "unexpected \"!\" at offset 4");
}

Test(bad_base64, url_alphabet)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.transport.patch = "{\"data\":\"QU-D\"}";
	expect_reject(&s, CHORIA_REPLY, "bad_base64", "unexpected \"-\" at offset 2");
}

Test(bad_base64, missing_padding)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.patch = "{\"data\":\"QUI\"}";
	expect_reject(&s, CHORIA_REQUEST, "bad_base64", "length 3 is not a multiple of 4");
}

Test(bad_base64, padding_in_the_middle)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.patch = "{\"data\":\"QQ==QUJD\"}";
	expect_reject(&s, CHORIA_REQUEST, "bad_base64", "unexpected \"=\" at offset 2");
}

Test(bad_base64, three_padding_characters)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.patch = "{\"data\":\"Q===\"}";
	expect_reject(&s, CHORIA_REQUEST, "bad_base64", "unexpected \"=\" at offset 1");
}

Test(bad_base64, whitespace_and_newlines)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.patch = "{\"data\":\"QUJD\\nQUJ\"}";
	expect_reject(&s, CHORIA_REQUEST, "bad_base64", "unexpected \"\\x0a\" at offset 4");
	s.transport.patch = "{\"data\":\" QUJ\"}";
	expect_reject(&s, CHORIA_REQUEST, "bad_base64", "at offset 0");
}

Test(bad_base64, embedded_nul)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.transport.patch = "{\"data\":\"QU\\u0000D\"}";
	expect_reject(&s, CHORIA_REQUEST, "bad_base64", "unexpected \"\\x00\" at offset 2");
}

/* ------------------------------------------------------- bad_secure */

Test(bad_secure, wrong_protocol)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.secure_protocol = "choria:secure:request:2";
	expect_reject(
		&s, CHORIA_REQUEST, "bad_secure",
		"secure.protocol is \"choria:secure:request:2\", expected \"choria:secure:request:1\"");
}

Test(bad_secure, protocol_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.secure.remove = "protocol";
	expect_reject(&s, CHORIA_REPLY, "bad_secure", "secure.protocol is missing");
}

Test(bad_secure, reply_sent_to_a_request_decoder)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	expect_reject(
		&s, CHORIA_REQUEST, "bad_secure",
		"secure.protocol is \"choria:secure:reply:1\", expected \"choria:secure:request:1\" (a secure reply where requests are expected)");
}

Test(bad_secure, request_sent_to_a_reply_decoder)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	expect_reject(&s, CHORIA_REPLY, "bad_secure",
		      "(a secure request where replies are expected)");
}

Test(bad_secure, message_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.secure.remove = "message";
	expect_reject(&s, CHORIA_REQUEST, "bad_secure", "secure.message is missing");
}

Test(bad_secure, message_empty)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.secure.patch = "{\"message\":\"\"}";
	expect_reject(&s, CHORIA_REPLY, "bad_secure", "secure.message must not be empty");
}

Test(bad_secure, message_not_a_string)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.secure.patch = "{\"message\":{\"protocol\":\"choria:request:1\"}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_secure",
		      "secure.message must be a string, got an object");
}

Test(bad_secure, signature_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.secure.remove = "signature";
	expect_reject(&s, CHORIA_REQUEST, "bad_secure", "secure.signature is missing");
}

Test(bad_secure, signature_empty)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.signature = "";
	expect_reject(&s, CHORIA_REQUEST, "bad_secure", "secure.signature must not be empty");
}

Test(bad_secure, signature_not_a_string)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.secure.patch = "{\"signature\":null}";
	expect_reject(&s, CHORIA_REQUEST, "bad_secure",
		      "secure.signature must be a string, got null");
}

Test(bad_secure, pubcert_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.secure.remove = "pubcert";
	expect_reject(&s, CHORIA_REQUEST, "bad_secure", "secure.pubcert is missing");
}

Test(bad_secure, pubcert_empty)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.pubcert = "";
	expect_reject(&s, CHORIA_REQUEST, "bad_secure", "secure.pubcert must not be empty");
}

Test(bad_secure, hash_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.secure.remove = "hash";
	expect_reject(&s, CHORIA_REPLY, "bad_secure", "secure.hash is missing");
}

Test(bad_secure, hash_empty)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.hash = "";
	expect_reject(&s, CHORIA_REPLY, "bad_secure", "secure.hash must not be empty");
}

Test(bad_secure, hash_not_a_string)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.secure.patch = "{\"hash\":[\"abc\"]}";
	expect_reject(&s, CHORIA_REPLY, "bad_secure", "secure.hash must be a string, got an array");
}

/* ------------------------------------------------------ bad_message */

Test(bad_message, request_protocol_wrong)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.protocol = "choria:request:2";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "request.protocol is \"choria:request:2\", expected \"choria:request:1\"");
}

Test(bad_message, reply_inside_a_secure_request)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.protocol = "choria:reply:1";
	expect_reject(&s, CHORIA_REQUEST, "bad_message", "(a reply where requests are expected)");
}

Test(bad_message, request_inside_a_secure_reply)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.protocol = "choria:request:1";
	expect_reject(&s, CHORIA_REPLY, "bad_message", "(a request where replies are expected)");
}

Test(bad_message, protocol_value_is_quoted_safely)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.protocol =
		"\"evil\"\n\x1b[2J and a very long tail that will not fit in the detail at all";
	expect_reject(&s, CHORIA_REPLY, "bad_message",
		      "reply.protocol is \"\\x22evil\\x22\\x0a\\x1b[2J");
}

Test(bad_message, protocol_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.message.remove = "protocol";
	expect_reject(&s, CHORIA_REQUEST, "bad_message", "request.protocol is missing");
}

Test(bad_message, body_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.body = NULL;
	expect_reject(&s, CHORIA_REQUEST, "bad_message", "request.message is missing");
}

Test(bad_message, body_empty)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.body = "";
	expect_reject(&s, CHORIA_REPLY, "bad_message", "reply.message must not be empty");
}

Test(bad_message, body_not_a_string)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.message.patch = "{\"message\":{\"identity\":\"web1\"}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "request.message must be a string, got an object");
}

Test(bad_message, envelope_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.message.remove = "envelope";
	expect_reject(&s, CHORIA_REPLY, "bad_message", "reply.envelope is missing");
}

Test(bad_message, envelope_not_an_object)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.message.patch = "{\"envelope\":\"x\"}";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "request.envelope must be an object, got a string");
}

Test(bad_message, requestid_too_short)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.request_id = "5e8b2f0c1d3a";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "envelope.requestid must be 32 characters, got 12");
}

Test(bad_message, requestid_too_long)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.request_id = "5e8b2f0c1d3a4b5c6d7e8f9a0b1c2d3e4";
	expect_reject(&s, CHORIA_REPLY, "bad_message",
		      "envelope.requestid must be 32 characters, got 33");
}

Test(bad_message, requestid_counts_characters_not_bytes)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.request_id = "5e8b2f0c1d3a4b5c6d7e8f9a0b1c2d\xc3\xa9"; /* 32 bytes, 31 characters */
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "envelope.requestid must be 32 characters, got 31");
	s.request_id = "5e8b2f0c1d3a4b5c6d7e8f9a0b1c2d\xc3\xa9\xc3\xa9"; /* 32 characters */
	struct choria_decoded d;
	expect_ok(&s, CHORIA_REQUEST, &d);
	cr_assert_eq(d.request_id_len, 34);
	choria_decoded_clear(&d);
}

Test(bad_message, requestid_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.request_id = NULL;
	expect_reject(&s, CHORIA_REQUEST, "bad_message", "envelope.requestid is missing");
}

Test(bad_message, requestid_not_a_string)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.message.patch = "{\"envelope\":{\"requestid\":1.2e31}}";
	expect_reject(&s, CHORIA_REPLY, "bad_message",
		      "envelope.requestid must be a string, got a non-integer number");
}

Test(bad_message, requestid_with_nul)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.message.patch =
		"{\"envelope\":{\"requestid\":\"5e8b2f0c1d3a4b5c\\u00006d7e8f9a0b1c2d3\"}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "envelope.requestid must not contain a NUL character");
}

Test(bad_message, senderid_empty)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.sender = "";
	expect_reject(&s, CHORIA_REQUEST, "bad_message", "envelope.senderid must not be empty");
	s = choria_msg_defaults(REP);
	s.sender = "";
	expect_reject(&s, CHORIA_REPLY, "bad_message", "envelope.senderid must not be empty");
}

Test(bad_message, senderid_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.message.remove = "envelope.senderid";
	expect_reject(&s, CHORIA_REPLY, "bad_message", "envelope.senderid is missing");
}

Test(bad_message, senderid_not_a_string)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.message.patch = "{\"envelope\":{\"senderid\":[\"web1\"]}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "envelope.senderid must be a string, got an array");
}

Test(bad_message, senderid_with_nul)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.message.patch = "{\"envelope\":{\"senderid\":\"web1\\u0000.evil\"}}";
	expect_reject(&s, CHORIA_REPLY, "bad_message",
		      "envelope.senderid must not contain a NUL character");
}

Test(bad_message, callerid_empty)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.callerid = "";
	expect_reject(&s, CHORIA_REQUEST, "bad_message", "envelope.callerid must not be empty");
}

Test(bad_message, callerid_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.callerid = NULL;
	expect_reject(&s, CHORIA_REQUEST, "bad_message", "envelope.callerid is missing");
}

Test(bad_message, callerid_not_a_string)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.message.patch = "{\"envelope\":{\"callerid\":1}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "envelope.callerid must be a string, got an integer");
}

Test(bad_message, collective_empty)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.collective = "";
	expect_reject(&s, CHORIA_REQUEST, "bad_message", "envelope.collective must not be empty");
}

Test(bad_message, collective_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.collective = NULL;
	expect_reject(&s, CHORIA_REQUEST, "bad_message", "envelope.collective is missing");
}

Test(bad_message, agent_empty)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.agent = "";
	expect_reject(&s, CHORIA_REQUEST, "bad_message", "envelope.agent must not be empty");
}

Test(bad_message, reply_agent_empty)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.agent = "";
	expect_reject(&s, CHORIA_REPLY, "bad_message", "envelope.agent must not be empty");
}

Test(bad_message, reply_agent_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.agent = NULL;
	expect_reject(&s, CHORIA_REPLY, "bad_message", "envelope.agent is missing");
}

Test(bad_message, ttl_below_30)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.ttl = 10;
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "envelope.ttl must be at least 30, got 10");
	s.ttl = -60;
	expect_reject(&s, CHORIA_REQUEST, "bad_message", "got -60");
	s.ttl = 29;
	expect_reject(&s, CHORIA_REQUEST, "bad_message", "got 29");
}

Test(bad_message, ttl_not_an_integer)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.message.patch = "{\"envelope\":{\"ttl\":60.5}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "envelope.ttl must be an integer, got a non-integer number");
	s.message.patch = "{\"envelope\":{\"ttl\":60.0}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "envelope.ttl must be an integer, got a non-integer number");
	s.message.patch = "{\"envelope\":{\"ttl\":\"60\"}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "envelope.ttl must be an integer, got a string");
}

Test(bad_message, ttl_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.message.remove = "envelope.ttl";
	expect_reject(&s, CHORIA_REQUEST, "bad_message", "envelope.ttl is missing");
}

Test(bad_message, time_not_an_integer)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.message.patch = "{\"envelope\":{\"time\":1520088557.5}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "envelope.time must be an integer, got a non-integer number");
	s = choria_msg_defaults(REP);
	s.message.patch = "{\"envelope\":{\"time\":\"2018-03-03T14:49:17Z\"}}";
	expect_reject(&s, CHORIA_REPLY, "bad_message",
		      "envelope.time must be an integer, got a string");
}

Test(bad_message, time_out_of_range)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.message.raw = "{\"protocol\":\"choria:reply:1\",\"message\":\"x\",\"envelope\":{"
			"\"requestid\":\"5e8b2f0c1d3a4b5c6d7e8f9a0b1c2d3e\",\"senderid\":\"a\","
			"\"agent\":\"b\",\"time\":99999999999999999999}}";
	expect_reject(&s, CHORIA_REPLY, "not_json", "reply (secure.message) is not valid JSON");
}

Test(bad_message, time_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REP);
	s.message.remove = "envelope.time";
	expect_reject(&s, CHORIA_REPLY, "bad_message", "envelope.time is missing");
}

Test(bad_message, filter_missing)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.message.remove = "envelope.filter";
	expect_reject(&s, CHORIA_REQUEST, "bad_message", "envelope.filter is missing");
}

Test(bad_message, filter_not_an_object)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.message.patch = "{\"envelope\":{\"filter\":[]}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "envelope.filter must be an object, got an array");
}

Test(bad_message, filter_members_missing)
{
	static const char *const members[] = {"fact", "cf_class", "identity", "compound"};
	for (size_t i = 0; i < 4; i++) {
		struct choria_msg_spec s = choria_msg_defaults(REQ);
		char path[64], want[64];
		snprintf(path, sizeof(path), "envelope.filter.%s", members[i]);
		snprintf(want, sizeof(want), "envelope.filter.%s is missing", members[i]);
		s.message.remove = path;
		expect_reject(&s, CHORIA_REQUEST, "bad_message", want);
	}
}

Test(bad_message, filter_member_types)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.message.patch = "{\"envelope\":{\"filter\":{\"identity\":\"web1\"}}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "envelope.filter.identity must be an array, got a string");
	s.message.patch = "{\"envelope\":{\"filter\":{\"agent\":[\"rpcutil\",3]}}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "envelope.filter.agent[1] must be a string, got an integer");
	s.message.patch = "{\"envelope\":{\"filter\":{\"compound\":[{\"a\":1}]}}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "envelope.filter.compound[0] must be an array, got an object");
	s.message.patch = "{\"envelope\":{\"filter\":{\"compound\":[[{\"a\":1},\"x\"]]}}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "envelope.filter.compound[0][1] must be an object, got a string");
}

Test(bad_message, filter_fact_shape)
{
	struct choria_msg_spec s = choria_msg_defaults(REQ);
	s.message.patch = "{\"envelope\":{\"filter\":{\"fact\":[\"os=linux\"]}}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "envelope.filter.fact[0] must be an object, got a string");
	s.message.patch =
		"{\"envelope\":{\"filter\":{\"fact\":[{\"fact\":\"os\",\"operator\":\"~~\","
		"\"value\":\"linux\"}]}}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "envelope.filter.fact[0].operator \"~~\" is not a known operator");
	s.message.patch =
		"{\"envelope\":{\"filter\":{\"fact\":[{\"fact\":\"os\",\"operator\":\"==\","
		"\"value\":\"\"}]}}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_message",
		      "envelope.filter.fact[0].value must not be empty");
	s.message.patch =
		"{\"envelope\":{\"filter\":{\"fact\":[{\"operator\":\"==\",\"value\":\"x\"}]}}}";
	expect_reject(&s, CHORIA_REQUEST, "bad_message", "envelope.filter.fact[0].fact is missing");
}

/* ------------------------------------------------------- the API */

Test(api, unknown_kind)
{
	struct choria_decoded d;
	const char *reason;
	char detail[64];
	cr_assert_eq(choria_decode(&d, (enum choria_kind)7, "{}", 2, &reason, detail,
				   sizeof(detail)),
		     -EINVAL);
	cr_assert_str_eq(reason, "bad_argument");
}

Test(api, tiny_detail_buffers)
{
	struct choria_decoded d;
	const char *reason = NULL;
	char detail[4];
	cr_assert_eq(choria_decode(&d, CHORIA_REQUEST, "[]", 2, &reason, detail, sizeof(detail)),
		     -EBADMSG);
	cr_assert_str_eq(reason, "not_json");
	cr_assert_eq(strlen(detail), 3);
	cr_assert_eq(choria_decode(&d, CHORIA_REQUEST, "[]", 2, &reason, detail, 0), -EBADMSG);
	cr_assert_eq(choria_decode(&d, CHORIA_REQUEST, "[]", 2, NULL, NULL, 0), -EBADMSG);
}

Test(api, kind_name)
{
	cr_assert_str_eq(choria_kind_name(CHORIA_REQUEST), "request");
	cr_assert_str_eq(choria_kind_name(CHORIA_REPLY), "reply");
}

/* ------------------------------------------------- never crash */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

/* Outcomes seen by decode_any(): accepted, then each label. */
static unsigned outcomes[6];

static void count_outcome(const char *reason)
{
	static const char *const labels[] = {"not_json", "bad_transport", "bad_base64",
					     "bad_secure", "bad_message"};
	if (!reason) {
		outcomes[0]++;
		return;
	}
	for (size_t i = 0; i < 5; i++)
		if (strcmp(reason, labels[i]) == 0)
			outcomes[i + 1]++;
}

/* Decode anything: either success or a labelled, printable rejection. */
static void decode_any(const char *data, size_t len)
{
	for (int k = 0; k < 2; k++) {
		struct choria_decoded d;
		const char *reason = NULL;
		char detail[200];
		int r = choria_decode(&d, k ? CHORIA_REPLY : CHORIA_REQUEST, data, len, &reason,
				      detail, sizeof(detail));
		if (r == 0) {
			cr_assert_not_null(d.body);
			cr_assert_not_null(d.sender);
		} else {
			cr_assert_eq(r, -EBADMSG);
			cr_assert(is_label(reason), "label %s", reason ? reason : "(null)");
			cr_assert(is_printable(detail));
		}
		count_outcome(reason);
		choria_decoded_clear(&d);
	}
}

Test(fuzz, random_bytes_never_crash)
{
	char buf[512];
	for (int i = 0; i < 20000; i++) {
		size_t len = rnd() % sizeof(buf);
		for (size_t j = 0; j < len; j++)
			buf[j] = (char)rnd();
		/* Every few runs, bias toward JSON-looking input. */
		if (i % 4 == 0)
			for (size_t j = 0; j < len; j++)
				buf[j] = "{}[]\":,0123456789-.eE truefalsn\\u"[rnd() % 34];
		decode_any(buf, len);
	}
}

/* Flip bytes in each layer of a valid message, keeping the layers around
 * it valid, so the mutations reach every depth of the decoder. */
static void mutate(char *s, size_t len, bool ascii)
{
	unsigned n = 1 + rnd() % 4;
	for (unsigned i = 0; i < n && len; i++) {
		size_t at = rnd() % len;
		switch (rnd() % 3) {
		case 0:
			/* Inner layers become JSON strings: keep them UTF-8. */
			s[at] = ascii ? (char)(1 + rnd() % 0x7f) : (char)rnd();
			break;
		case 1:
			s[at] = "{}[]\":,0\\ae"[rnd() % 11];
			break;
		default:
			s[at] = ' ';
			break;
		}
	}
}

Test(fuzz, mutated_layers_never_crash)
{
	for (int i = 0; i < 3000; i++) {
		bool reply = i % 2;
		struct choria_msg_spec s = choria_msg_defaults(reply ? REP : REQ);
		char *text, *wire, *again;
		size_t len, text_len;

		s.ensure_ascii = true; /* ASCII inner layers stay UTF-8 when mutated */

		wire = choria_msg_build_ex(&s, &len, &text, &text_len);
		cr_assert_not_null(wire);
		switch (i % 3) {
		case 0: /* the transport */
			mutate(wire, len, false);
			decode_any(wire, len);
			break;
		case 1: /* the request/reply layer, wrapped in valid outer layers */
			mutate(text, text_len, true);
			s.message.raw = text;
			again = choria_msg_build(&s, &len);
			cr_assert_not_null(again);
			decode_any(again, len);
			free(again);
			break;
		default: { /* the secure layer, wrapped in a valid transport */
			json_t *sec = reply ? json_pack("{s:s,s:s,s:s}", "protocol",
							"choria:secure:reply:1", "message", text,
							"hash", "aGFzaA==")
					    : json_pack("{s:s,s:s,s:s,s:s}", "protocol",
							"choria:secure:request:1", "message", text,
							"signature", "c2ln", "pubcert", "p");
			cr_assert_not_null(sec);
			char *sec_text = json_dumps(sec, JSON_COMPACT);
			json_decref(sec);
			mutate(sec_text, strlen(sec_text), true);
			s.secure.raw = sec_text;
			again = choria_msg_build(&s, &len);
			cr_assert_not_null(again);
			decode_any(again, len);
			free(again);
			free(sec_text);
			break;
		}
		}
		free(text);
		free(wire);
	}
	/* The mutations reached every layer: each outcome happened. */
	for (size_t i = 0; i < 6; i++)
		cr_assert_gt(outcomes[i], 0, "outcome %zu never seen", i);
}
