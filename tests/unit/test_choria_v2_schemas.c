/* SPDX-License-Identifier: Apache-2.0 */
/* What the v2 fixture builds validates, at every layer, against Choria's
 * published v2 schemas (tests/data/schemas/protocol-v2/), through
 * tests/choria_v2_schema_check.py; and the checker does see a message
 * that drifts from them, so that a fixture drifting fails here. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "choria_v2.h"
#include "tmpdir.h"

#define REQ CHORIA_V2_REQUEST
#define REP CHORIA_V2_REPLY

#ifndef TOP_SRCDIR
#define TOP_SRCDIR "."
#endif
/* The distribution's interpreter, which has python3-jsonschema. */
#define SCHEMA_PYTHON "/usr/bin/python3"

static char dir[256];
static struct choria_v2_key org, chain_key, alice, web1, delegator;
static struct choria_v2_chain chain;

static void setup(void)
{
	cr_assert_eq(tmpdir_make(dir, sizeof(dir)), 0);
	cr_assert_eq(choria_v2_key_random(&org), 0);
	cr_assert_eq(choria_v2_key_random(&chain_key), 0);
	cr_assert_eq(choria_v2_key_random(&alice), 0);
	cr_assert_eq(choria_v2_key_random(&web1), 0);
	cr_assert_eq(choria_v2_key_random(&delegator), 0);
	struct choria_v2_token_spec cs =
		choria_v2_token_defaults(CHORIA_V2_CHAIN_ISSUER, &chain_key, &org);
	free(choria_v2_chain_issuer(&cs, &chain));
}

static void teardown(void)
{
	tmpdir_remove(dir);
}

TestSuite(choria_v2_schemas, .init = setup, .fini = teardown);

/* Run the checker over the files; its exit status, with what it wrote to
 * standard output and error in *out and *err (malloc'd). */
static int schema_check(const char *files, char **out, char **err)
{
	char cmd[8192], o[300], e[300];

	snprintf(o, sizeof(o), "%s/check.out", dir);
	snprintf(e, sizeof(e), "%s/check.err", dir);
	snprintf(cmd, sizeof(cmd),
		 SCHEMA_PYTHON " '%s/tests/choria_v2_schema_check.py' "
			       "'%s/tests/data/schemas/protocol-v2' %s >'%s' 2>'%s'",
		 TOP_SRCDIR, TOP_SRCDIR, files, o, e);
	int st = system(cmd);
	*out = file_read(o);
	*err = file_read(e);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Build the message and write it to dir/name; appends its path to files. */
static void write_msg(const struct choria_v2_msg_spec *m, const char *name, char *files,
		      size_t files_len)
{
	char path[400];
	char *wire = choria_v2_build(m, NULL);

	cr_assert_not_null(wire, "the fixture could not build %s", name);
	cr_assert_eq(tmpdir_write(dir, name, wire, path, sizeof(path)), 0);
	free(wire);
	size_t used = strlen(files);
	snprintf(files + used, files_len - used, " '%s'", path);
}

static char *token(enum choria_v2_token_kind kind, const struct choria_v2_key *holder, bool chained)
{
	struct choria_v2_token_spec t = choria_v2_token_defaults(kind, holder, &org);
	if (chained)
		t.chain = &chain;
	char *jwt = choria_v2_token(&t);
	cr_assert_not_null(jwt);
	return jwt;
}

/* Every kind of message the fixture makes by default validates. */
Test(choria_v2_schemas, fixture_messages_validate)
{
	char files[4096] = "", *out, *err;
	char *client = token(CHORIA_V2_CLIENT, &alice, false);
	char *chained = token(CHORIA_V2_CLIENT, &alice, true);
	char *server = token(CHORIA_V2_SERVER, &web1, false);
	char *signer = token(CHORIA_V2_DELEGATOR, &delegator, true);
	struct choria_v2_msg_spec m;

	m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	m.caller_token = client;
	m.signing_key = &alice;
	write_msg(&m, "client_request", files, sizeof(files));

	m.caller_token = chained;
	m.body = "{\"note\":\"<b>fish & chips</b> caf\xc3\xa9 \xe2\x80\xa8\"}";
	write_msg(&m, "chain_issued_client_request", files, sizeof(files));

	/* registration: the server token as the caller, its identity as caller */
	m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	m.caller_token = server;
	m.signing_key = &web1;
	m.caller = m.sender = "web1.example.net";
	m.agent = "registration";
	m.reply_to = "dev.null";
	m.trace = NULL;
	write_msg(&m, "server_registration", files, sizeof(files));

	m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	m.caller_token = chained;
	m.signer_token = signer;
	m.signing_key = &delegator;
	m.no_filter = true;
	write_msg(&m, "delegated_request", files, sizeof(files));

	m = choria_v2_msg_defaults(CHORIA_V2_REQUEST);
	m.caller_token = client;
	write_msg(&m, "insecure_request", files, sizeof(files));

	m = choria_v2_msg_defaults(CHORIA_V2_REPLY);
	m.signing_key = &web1;
	m.sender_token = server;
	write_msg(&m, "signed_reply", files, sizeof(files));

	m = choria_v2_msg_defaults(CHORIA_V2_REPLY);
	write_msg(&m, "unsigned_reply", files, sizeof(files));

	int rc = schema_check(files, &out, &err);
	cr_assert_eq(rc, 0, "the fixture's messages do not match the schemas:\n%s",
		     err ? err : "(no output)");
	cr_assert_not_null(out);
	const char *expect[] = {"client_request: request ok",
				"chain_issued_client_request: request ok",
				"server_registration: request ok",
				"delegated_request: request ok",
				"insecure_request: request ok",
				"signed_reply: reply ok",
				"unsigned_reply: reply ok"};
	for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
		cr_assert_not_null(strstr(out, expect[i]), "missing \"%s\" in:\n%s", expect[i],
				   out);
	free(out);
	free(err);
	free(client);
	free(chained);
	free(server);
	free(signer);
}

/* One drift per message, at each layer: the checker names each. */
Test(choria_v2_schemas, drifts_are_caught)
{
	static const struct {
		const char *name, *says;
		enum choria_v2_msg_kind kind;
		const char *message_patch, *message_remove, *secure_remove, *transport_patch;
	} cases[] = {
		{"ttl_zero", "request.json) at /ttl", REQ, .message_patch = "{\"ttl\":0}"},
		{"time_string", "request.json) at /time", REQ,
		 .message_patch = "{\"time\":\"1767225605123456789\"}"},
		{"empty_id", "request.json) at /id", REQ, .message_patch = "{\"id\":\"\"}"},
		{"no_agent", "'agent' is a required property", REQ, .message_remove = "agent"},
		{"filter_without_fact", "'fact' is a required property", REQ,
		 .message_remove = "filter.fact"},
		{"no_caller_token", "'caller' is a required property", REQ,
		 .secure_remove = "caller"},
		{"headers_not_object", "transport.json) at /headers", REQ,
		 .transport_patch = "{\"headers\":[]}"},
		{"reply_as_request", "reply.json) at /protocol", REP,
		 .message_patch = "{\"protocol\":\"io.choria.protocol.v2.request\"}"},
		{"reply_no_hash", "'hash' is a required property", REP, .secure_remove = "hash"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char files[600] = "", *out, *err;
		struct choria_v2_msg_spec m = choria_v2_msg_defaults(cases[i].kind);
		m.caller_token = "eyJhbGciOiJFZERTQSJ9.e30.AA";
		m.message_edit.patch = cases[i].message_patch;
		m.message_edit.remove = cases[i].message_remove;
		m.secure_edit.remove = cases[i].secure_remove;
		m.transport_edit.patch = cases[i].transport_patch;
		write_msg(&m, cases[i].name, files, sizeof(files));
		int rc = schema_check(files, &out, &err);
		cr_assert_eq(rc, 1, "%s: the checker let it pass", cases[i].name);
		cr_assert(err && strstr(err, cases[i].says), "%s: expected \"%s\" in:\n%s",
			  cases[i].name, cases[i].says, err ? err : "(none)");
		free(out);
		free(err);
	}
}
