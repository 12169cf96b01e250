/* SPDX-License-Identifier: Apache-2.0 */
/*
 * choria-publish: publish Choria v1 registration requests (or replies) on a
 * NATS subject, the way a fleet of nodes does. For the demo and for
 * trying a configuration by hand.
 *
 *   choria-publish URL SUBJECT COUNT [request|reply [PKI]]
 *   choria-publish --pki PKI
 *
 * With PKI, a folder the second form made (its ca.pem is the CA to
 * verify against), requests are signed as web1.example.net, so that
 * `security = "verify"` accepts them.
 */
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "certs.h"
#include "choria_msg.h"

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--pki") == 0) {
		if (test_pki_make(argv[2]) != 0) {
			fprintf(stderr, "choria-publish: cannot make a PKI in %s\n", argv[2]);
			return 1;
		}
		return 0;
	}
	if (argc < 4 || argc > 6) {
		fprintf(stderr, "usage: choria-publish URL SUBJECT COUNT [request|reply [PKI]]\n"
				"       choria-publish --pki PKI\n");
		return 2;
	}
	struct test_signer signer = {0};
	if (argc == 6) {
		setenv("CAD_TEST_PKI", argv[5], 1);
		signer.key = test_pki()->leaf_key;
		signer.pem = test_pki()->signer;
	}
	int count = atoi(argv[3]);
	enum choria_msg_kind kind =
		argc == 5 && strcmp(argv[4], "reply") == 0 ? CHORIA_MSG_REPLY : CHORIA_MSG_REQUEST;
	natsConnection *nc = NULL;
	natsStatus s = natsConnection_ConnectTo(&nc, argv[1]);
	if (s != NATS_OK) {
		fprintf(stderr, "choria-publish: %s: %s\n", argv[1], natsStatus_GetText(s));
		return 1;
	}
	for (int i = 0; i < count && s == NATS_OK; i++) {
		struct choria_msg_spec spec = choria_msg_defaults(kind);
		char sender[64], rid[33], body[256];
		snprintf(sender, sizeof(sender), "node%d.example.net", i);
		snprintf(rid, sizeof(rid), "%08x%024x", (unsigned)time(NULL), (unsigned)i);
		snprintf(body, sizeof(body),
			 "{\"agent\":\"registration\",\"facts\":{\"os\":\"debian\",\"node\":%d}}",
			 i);
		spec.sender = sender;
		spec.request_id = rid;
		spec.body = body;
		spec.time = time(NULL);
		if (signer.key) {
			spec.callerid = "choria=web1.example.net";
			spec.sign = test_sign;
			spec.sign_arg = &signer;
		}
		size_t len;
		char *wire = choria_msg_build(&spec, &len);
		if (!wire)
			return 1;
		s = natsConnection_Publish(nc, argv[2], wire, (int)len);
		free(wire);
	}
	if (s == NATS_OK)
		s = natsConnection_FlushTimeout(nc, 5000);
	natsConnection_Destroy(nc);
	if (s != NATS_OK) {
		fprintf(stderr, "choria-publish: %s\n", natsStatus_GetText(s));
		return 1;
	}
	printf("published %d Choria %s messages on %s\n", count,
	       kind == CHORIA_MSG_REPLY ? "reply" : "request", argv[2]);
	return 0;
}
