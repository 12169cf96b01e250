/* SPDX-License-Identifier: Apache-2.0 */
/* The Choria protocol v2 decoder: the worked example of PROTOCOL-v2.md §11,
 * replies, both versions through one decoder, and every malformed kind
 * with its label. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "choria_v2.h"
#include "choria_v2_example.h"
#include "protocol.h"

static struct choria_v2_key org, chain_key, alice;

static void load_keys(void)
{
	cr_assert_eq(choria_v2_example_keys(&org, &chain_key, &alice, NULL), 0);
}

TestSuite(protocol_v2, .init = load_keys);

static char *example_wire(size_t *len)
{
	struct choria_v2_chain chain;
	cr_assert_eq(choria_v2_example_keys(&org, &chain_key, &alice, &chain), 0);
	char *tok = choria_v2_example_token(&alice, &chain);
	cr_assert_not_null(tok);
	struct choria_v2_msg_spec m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	m.caller_token = tok;
	m.signing_key = &alice;
	char *wire = choria_v2_build(&m, len);
	cr_assert_not_null(wire);
	cr_assert_eq(*len, 2381, "the example is 2381 bytes, got %zu", *len);
	free(tok);
	return wire;
}

Test(protocol_v2, decodes_the_worked_example)
{
	size_t len;
	char *wire = example_wire(&len);
	struct choria_decoded d;
	const char *reason;
	char detail[256];

	cr_assert_eq(choria_decode(&d, CHORIA_REQUEST, wire, len, &reason, detail, sizeof(detail)),
		     0, "%s: %s", reason, detail);
	cr_assert_eq(d.version, 2);
	cr_assert_eq(d.kind, CHORIA_REQUEST);
	cr_assert_str_eq(d.request_id, "37dGbTEphp4tYMi1g0qMrZjnjNr");
	cr_assert_eq(d.request_id_len, 27);
	cr_assert_str_eq(d.sender, "mgmt01.example.net");
	cr_assert_str_eq(d.callerid, "choria=alice");
	cr_assert_eq(d.time, 1767225605);
	cr_assert_eq(d.time_nsec, 123456789);
	cr_assert_eq(d.body_len, strlen("{\"hello\":\"world\"}"));
	cr_assert_str_eq(d.body, "{\"hello\":\"world\"}");
	cr_assert_eq(d.secure_message_len, strlen(choria_v2_example_request));
	cr_assert_arr_eq(d.secure_message, choria_v2_example_request, d.secure_message_len);
	cr_assert_eq(d.signature_raw_len, 64);
	cr_assert_eq(d.caller_token_len, 1012);
	cr_assert_eq(strncmp(d.caller_token, "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.", 37), 0);
	cr_assert_null(d.signer_token);
	cr_assert_null(d.pubcert);
	cr_assert_null(d.hash);
	choria_decoded_clear(&d);
	free(wire);
}

Test(protocol_v2, decodes_a_reply_and_a_delegated_request)
{
	struct choria_v2_msg_spec m = choria_v2_msg_defaults(CHORIA_V2_REPLY);
	struct choria_decoded d;
	const char *reason;
	char detail[256], *inner;
	size_t len;

	m.body = "{\"ok\":true}";
	char *wire = choria_v2_build_ex(&m, &len, &inner, NULL);
	cr_assert_not_null(wire);
	cr_assert_eq(choria_decode(&d, CHORIA_REPLY, wire, len, &reason, detail, sizeof(detail)), 0,
		     "%s: %s", reason, detail);
	cr_assert_eq(d.version, 2);
	cr_assert_str_eq(d.body, "{\"ok\":true}");
	cr_assert_str_eq(d.request_id, "37dGbTEphp4tYMi1g0qMrZjnjNr");
	cr_assert_str_eq(d.sender, "web1.example.net");
	cr_assert_null(d.callerid);
	cr_assert_not_null(d.hash);
	cr_assert_eq(d.hash_len, 44);
	cr_assert_str_eq(d.secure_message, inner);
	choria_decoded_clear(&d);
	free(inner);
	free(wire);

	m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	m.caller_token = "a.b.c";
	m.signer_token = "d.e.f";
	wire = choria_v2_build(&m, &len);
	cr_assert_eq(choria_decode(&d, CHORIA_REQUEST, wire, len, &reason, detail, sizeof(detail)),
		     0, "%s: %s", reason, detail);
	cr_assert_str_eq(d.signer_token, "d.e.f");
	cr_assert_str_eq(d.caller_token, "a.b.c");
	/* No key: Choria's insecure marker, which decodes. */
	cr_assert_eq(d.signature_raw_len, strlen("insecure"));
	choria_decoded_clear(&d);
	free(wire);

	/* An empty signer is no delegation. */
	m.signer_token = "";
	wire = choria_v2_build(&m, &len);
	cr_assert_eq(choria_decode(&d, CHORIA_REQUEST, wire, len, &reason, detail, sizeof(detail)),
		     0, "%s: %s", reason, detail);
	cr_assert_null(d.signer_token);
	choria_decoded_clear(&d);
	free(wire);
}

Test(protocol_v2, times_in_nanoseconds_stay_exact)
{
	struct choria_v2_msg_spec m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	struct choria_decoded d;
	const char *reason;
	char detail[256];
	size_t len;

	m.caller_token = "a.b.c";
	m.time = INT64_MAX; /* 2262-04-11T23:47:16.854775807Z, beyond a double */
	char *wire = choria_v2_build(&m, &len);
	cr_assert_eq(choria_decode(&d, CHORIA_REQUEST, wire, len, &reason, detail, sizeof(detail)),
		     0, "%s: %s", reason, detail);
	cr_assert_eq(d.time, 9223372036LL);
	cr_assert_eq(d.time_nsec, 854775807u);
	choria_decoded_clear(&d);
	free(wire);
	m.time = 1;
	wire = choria_v2_build(&m, &len);
	cr_assert_eq(choria_decode(&d, CHORIA_REQUEST, wire, len, &reason, detail, sizeof(detail)),
		     0, "%s: %s", reason, detail);
	cr_assert_eq(d.time, 0);
	cr_assert_eq(d.time_nsec, 1u);
	choria_decoded_clear(&d);
	free(wire);
}

struct bad_case {
	enum choria_v2_msg_kind kind;
	const char *what;
	const char *label;
	void (*edit)(struct choria_v2_msg_spec *m);
};

static void no_transport_headers(struct choria_v2_msg_spec *m)
{
	m->transport_edit.remove = "headers";
}
static void transport_not_json(struct choria_v2_msg_spec *m)
{
	m->transport_edit.raw = "{\"protocol\":";
}
static void transport_array(struct choria_v2_msg_spec *m)
{
	m->transport_edit.raw = "[\"io.choria.protocol.v2.transport\"]";
}
static void transport_v3(struct choria_v2_msg_spec *m)
{
	m->transport_protocol = "io.choria.protocol.v3.transport";
}
static void transport_data_bad(struct choria_v2_msg_spec *m)
{
	m->transport_edit.patch = "{\"data\":\"eyJ!\"}";
}
static void transport_data_number(struct choria_v2_msg_spec *m)
{
	m->transport_edit.patch = "{\"data\":12}";
}
static void trace_not_array(struct choria_v2_msg_spec *m)
{
	m->trace = "[\"a\"]";
}
static void federation_no_request(struct choria_v2_msg_spec *m)
{
	m->transport_edit.patch = "{\"headers\":{\"federation\":{\"targets\":[]}}}";
}
static void v1_transport_v2_secure(struct choria_v2_msg_spec *m)
{
	m->transport_protocol = "choria:transport:1";
	m->transport_edit.patch = "{\"headers\":{}}";
}
static void secure_not_json(struct choria_v2_msg_spec *m)
{
	m->secure_edit.raw = "\xff not json";
}
static void secure_v1(struct choria_v2_msg_spec *m)
{
	m->secure_protocol =
		m->kind == CHORIA_V2_REQUEST ? "choria:secure:request:1" : "choria:secure:reply:1";
}
static void secure_other_kind(struct choria_v2_msg_spec *m)
{
	m->secure_protocol = m->kind == CHORIA_V2_REQUEST ? "io.choria.protocol.v2.secure_reply"
							  : "io.choria.protocol.v2.secure_request";
}
static void secure_no_caller(struct choria_v2_msg_spec *m)
{
	m->caller_token = NULL;
}
static void secure_caller_empty(struct choria_v2_msg_spec *m)
{
	m->caller_token = "";
}
static void secure_signer_number(struct choria_v2_msg_spec *m)
{
	m->secure_edit.patch = "{\"signer\":5}";
}
static void secure_request_bad(struct choria_v2_msg_spec *m)
{
	m->secure_edit.patch = "{\"request\":\"e30=e30=\"}";
}
static void secure_request_empty(struct choria_v2_msg_spec *m)
{
	m->secure_edit.patch = "{\"request\":\"\"}";
}
static void signature_bad(struct choria_v2_msg_spec *m)
{
	m->signature = "abc";
}
static void signature_missing(struct choria_v2_msg_spec *m)
{
	m->secure_edit.remove = "signature";
}
static void reply_bad(struct choria_v2_msg_spec *m)
{
	m->secure_edit.patch = "{\"reply\":\"****\"}";
}
static void hash_missing(struct choria_v2_msg_spec *m)
{
	m->secure_edit.remove = "hash";
}
static void inner_not_json(struct choria_v2_msg_spec *m)
{
	m->message_edit.raw = "{\"protocol\" \"x\"}";
}
static void inner_v1(struct choria_v2_msg_spec *m)
{
	m->protocol = m->kind == CHORIA_V2_REQUEST ? "choria:request:1" : "choria:reply:1";
}
static void inner_other_kind(struct choria_v2_msg_spec *m)
{
	m->protocol = m->kind == CHORIA_V2_REQUEST ? "io.choria.protocol.v2.reply"
						   : "io.choria.protocol.v2.request";
}
static void message_bad(struct choria_v2_msg_spec *m)
{
	m->message = "eyJ";
}
static void message_empty(struct choria_v2_msg_spec *m)
{
	m->message = "";
}
static void payload_not_utf8(struct choria_v2_msg_spec *m)
{
	m->body = "{\"a\":\"\xc3\x28\"}";
}
static void no_id(struct choria_v2_msg_spec *m)
{
	m->id = NULL;
}
static void empty_sender(struct choria_v2_msg_spec *m)
{
	m->message_edit.patch = "{\"sender\":\"\"}";
}
static void nul_in_caller(struct choria_v2_msg_spec *m)
{
	m->message_edit.patch = "{\"caller\":\"choria=a\\u0000b\"}";
}
static void no_collective(struct choria_v2_msg_spec *m)
{
	m->collective = NULL;
}
static void empty_agent(struct choria_v2_msg_spec *m)
{
	m->agent = "";
}
static void ttl_zero(struct choria_v2_msg_spec *m)
{
	m->ttl = 0;
}
static void ttl_string(struct choria_v2_msg_spec *m)
{
	m->message_edit.patch = "{\"ttl\":\"60\"}";
}
static void time_zero(struct choria_v2_msg_spec *m)
{
	m->time = 0;
}
static void time_negative(struct choria_v2_msg_spec *m)
{
	m->time = -5;
}
static void time_fraction(struct choria_v2_msg_spec *m)
{
	m->message_edit.patch = "{\"time\":1767225605.5}";
}
static void time_too_big(struct choria_v2_msg_spec *m)
{
	m->message_edit.raw =
		"{\"protocol\":\"io.choria.protocol.v2.request\",\"message\":\"e30=\",\"id\":\"x\","
		"\"sender\":\"a\",\"caller\":\"b\",\"collective\":\"c\",\"agent\":\"d\",\"ttl\":60,"
		"\"time\":18446744073709551615}";
}
static void filter_incomplete(struct choria_v2_msg_spec *m)
{
	m->message_edit.remove = "filter.identity";
}
static void filter_fact_operator(struct choria_v2_msg_spec *m)
{
	m->message_edit.patch =
		"{\"filter\":{\"fact\":[{\"fact\":\"os\",\"operator\":\"~\",\"value\":\"x\"}]}}";
}

static const struct bad_case bad_cases[] = {
	{CHORIA_V2_REQUEST, "transport without headers", "bad_transport", no_transport_headers},
	{CHORIA_V2_REQUEST, "transport not JSON", "not_json", transport_not_json},
	{CHORIA_V2_REQUEST, "transport an array", "not_json", transport_array},
	{CHORIA_V2_REQUEST, "unknown transport protocol", "bad_transport", transport_v3},
	{CHORIA_V2_REQUEST, "data not base64", "bad_base64", transport_data_bad},
	{CHORIA_V2_REQUEST, "data a number", "bad_transport", transport_data_number},
	{CHORIA_V2_REQUEST, "trace hop not an array", "bad_transport", trace_not_array},
	{CHORIA_V2_REQUEST, "federation without request", "bad_transport", federation_no_request},
	{CHORIA_V2_REQUEST, "v2 secure request in a v1 transport", "bad_secure",
	 v1_transport_v2_secure},
	{CHORIA_V2_REQUEST, "secure request not JSON", "not_json", secure_not_json},
	{CHORIA_V2_REQUEST, "v1 secure request in a v2 transport", "bad_secure", secure_v1},
	{CHORIA_V2_REQUEST, "secure reply where requests are expected", "bad_secure",
	 secure_other_kind},
	{CHORIA_V2_REQUEST, "no caller token", "bad_secure", secure_no_caller},
	{CHORIA_V2_REQUEST, "empty caller token", "bad_secure", secure_caller_empty},
	{CHORIA_V2_REQUEST, "signer a number", "bad_secure", secure_signer_number},
	{CHORIA_V2_REQUEST, "request not base64", "bad_base64", secure_request_bad},
	{CHORIA_V2_REQUEST, "request empty", "bad_secure", secure_request_empty},
	{CHORIA_V2_REQUEST, "signature not base64", "bad_base64", signature_bad},
	{CHORIA_V2_REQUEST, "no signature", "bad_secure", signature_missing},
	{CHORIA_V2_REQUEST, "request not JSON", "not_json", inner_not_json},
	{CHORIA_V2_REQUEST, "v1 request in a v2 secure request", "bad_message", inner_v1},
	{CHORIA_V2_REQUEST, "reply where requests are expected", "bad_message", inner_other_kind},
	{CHORIA_V2_REQUEST, "message not base64", "bad_base64", message_bad},
	{CHORIA_V2_REQUEST, "message empty", "bad_message", message_empty},
	{CHORIA_V2_REQUEST, "payload not UTF-8", "not_utf8", payload_not_utf8},
	{CHORIA_V2_REQUEST, "no id", "bad_message", no_id},
	{CHORIA_V2_REQUEST, "empty sender", "bad_message", empty_sender},
	{CHORIA_V2_REQUEST, "NUL in caller", "bad_message", nul_in_caller},
	{CHORIA_V2_REQUEST, "no collective", "bad_message", no_collective},
	{CHORIA_V2_REQUEST, "empty agent", "bad_message", empty_agent},
	{CHORIA_V2_REQUEST, "ttl 0", "bad_message", ttl_zero},
	{CHORIA_V2_REQUEST, "ttl a string", "bad_message", ttl_string},
	{CHORIA_V2_REQUEST, "time 0", "bad_message", time_zero},
	{CHORIA_V2_REQUEST, "time negative", "bad_message", time_negative},
	{CHORIA_V2_REQUEST, "time with a fraction", "bad_message", time_fraction},
	{CHORIA_V2_REQUEST, "time past int64", "bad_message", time_too_big},
	{CHORIA_V2_REQUEST, "filter without identity", "bad_message", filter_incomplete},
	{CHORIA_V2_REQUEST, "filter fact operator", "bad_message", filter_fact_operator},
	{CHORIA_V2_REPLY, "reply transport without headers", "bad_transport", no_transport_headers},
	{CHORIA_V2_REPLY, "v1 secure reply in a v2 transport", "bad_secure", secure_v1},
	{CHORIA_V2_REPLY, "secure request where replies are expected", "bad_secure",
	 secure_other_kind},
	{CHORIA_V2_REPLY, "reply not base64", "bad_base64", reply_bad},
	{CHORIA_V2_REPLY, "no hash", "bad_secure", hash_missing},
	{CHORIA_V2_REPLY, "v1 reply in a v2 secure reply", "bad_message", inner_v1},
	{CHORIA_V2_REPLY, "request where replies are expected", "bad_message", inner_other_kind},
	{CHORIA_V2_REPLY, "reply message not base64", "bad_base64", message_bad},
	{CHORIA_V2_REPLY, "reply payload not UTF-8", "not_utf8", payload_not_utf8},
	{CHORIA_V2_REPLY, "reply without request id", "bad_message", no_id},
	{CHORIA_V2_REPLY, "reply time 0", "bad_message", time_zero},
};

Test(protocol_v2, every_malformed_kind_has_its_label)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct choria_v2_msg_spec m = choria_v2_msg_defaults(c->kind);
		struct choria_decoded d;
		const char *reason = NULL;
		char detail[256];
		size_t len;

		if (c->kind == CHORIA_V2_REQUEST)
			m.caller_token = "a.b.c";
		c->edit(&m);
		char *wire = choria_v2_build(&m, &len);
		cr_assert_not_null(wire, "%s: the fixture cannot build it", c->what);
		int rc = choria_decode(&d,
				       c->kind == CHORIA_V2_REQUEST ? CHORIA_REQUEST : CHORIA_REPLY,
				       wire, len, &reason, detail, sizeof(detail));
		cr_expect_eq(rc, -EBADMSG, "%s: decoded", c->what);
		cr_expect(reason && strcmp(reason, c->label) == 0, "%s: %s (%s), expected %s",
			  c->what, reason ? reason : "(none)", detail, c->label);
		for (const char *p = detail; *p; p++)
			cr_expect((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f,
				  "%s: detail not printable", c->what);
		choria_decoded_clear(&d);
		free(wire);
	}
}

Test(protocol_v2, arbitrary_bytes_in_every_layer_do_not_crash)
{
	static const char *const texts[] =
		{"", "{}", "null", "[[[[", "{\"a\":1e999}", "\"x", "\xc0", "{\"protocol\":null}",
		 "9"};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		for (int layer = 0; layer < 3; layer++) {
			for (int k = 0; k < 2; k++) {
				struct choria_v2_msg_spec m = choria_v2_msg_defaults(
					k ? CHORIA_V2_REPLY : CHORIA_V2_REQUEST);
				struct choria_msg_edit *e = layer == 0   ? &m.transport_edit
							    : layer == 1 ? &m.secure_edit
									 : &m.message_edit;
				struct choria_decoded d;
				const char *reason = NULL;
				size_t len;

				m.caller_token = "a.b.c";
				e->raw = texts[i];
				char *wire = choria_v2_build(&m, &len);
				if (!wire)
					continue;
				cr_expect_neq(choria_decode(&d, k ? CHORIA_REPLY : CHORIA_REQUEST,
							    wire, len, &reason, NULL, 0),
					      0);
				cr_expect_not_null(reason);
				choria_decoded_clear(&d);
				free(wire);
			}
		}
	}
}
