/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stream-dump: print the messages of a JetStream stream, one per line as
 * "SUBJECT ENVELOPE", and create the stream first when asked to.
 *
 *   stream-dump URL STREAM [MAX]
 *   stream-dump --create URL STREAM SUBJECT
 */
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "js_reader.h"

int main(int argc, char **argv)
{
	struct js_client c;
	if (argc == 5 && strcmp(argv[1], "--create") == 0) {
		if (js_client_open(&c, argv[2]) != 0)
			return 1;
		int rc = js_stream_create(&c, argv[3], argv[4], 1);
		js_client_close(&c);
		if (rc == 0)
			printf("stream %s captures %s\n", argv[3], argv[4]);
		return rc ? 1 : 0;
	}
	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: stream-dump URL STREAM [MAX]\n"
				"       stream-dump --create URL STREAM SUBJECT\n");
		return 2;
	}
	if (js_client_open(&c, argv[1]) != 0)
		return 1;
	uint64_t n = js_stream_count(&c, argv[2]);
	if (n == UINT64_MAX) {
		fprintf(stderr, "stream-dump: no stream %s\n", argv[2]);
		js_client_close(&c);
		return 1;
	}
	uint64_t max = argc == 4 ? strtoull(argv[3], NULL, 10) : n;
	printf("stream %s holds %llu messages\n", argv[2], (unsigned long long)n);
	for (uint64_t seq = 1; seq <= n && seq <= max; seq++) {
		natsMsg *m = js_stream_get(&c, argv[2], seq);
		if (!m)
			continue;
		printf("%s %.*s\n", natsMsg_GetSubject(m), natsMsg_GetDataLength(m),
		       natsMsg_GetData(m));
		natsMsg_Destroy(m);
	}
	js_client_close(&c);
	return 0;
}
