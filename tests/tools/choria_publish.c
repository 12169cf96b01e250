/* SPDX-License-Identifier: Apache-2.0 */
/*
 * choria-publish: publish Choria v1 registration requests (or replies) on a
 * NATS subject, the way a fleet of nodes does. For the demo and for
 * trying a configuration by hand.
 *
 *   choria-publish URL SUBJECT COUNT [request|reply]
 */
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "choria_msg.h"

int main(int argc, char **argv)
{
	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: choria-publish URL SUBJECT COUNT [request|reply]\n");
		return 2;
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
