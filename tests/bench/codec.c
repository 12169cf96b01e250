/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cad-bench-codec: the daemon's per-message CPU work outside NATS, in
 * isolation: decoding a Choria request (choria_decode) and encoding its
 * envelope (envelope_encode), over messages shaped like cad-bench's (about
 * 4 KB on the wire, a 1 KiB body, a 344-character signature and a PEM
 * certificate). Prints nanoseconds per message; run it under
 * `valgrind --tool=callgrind` for instruction counts, which unlike times
 * do not depend on what else the machine is doing.
 *
 *   cad-bench-codec [decode|encode|both] [MESSAGES] [ROUNDS]
 *
 * With ROUNDS = 0 it only builds the messages: subtract that run's
 * instruction count to get the cost of the rounds alone.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <choria-adapterd/cad_module.h>
#include "choria_msg.h"
#include "envelope.h"
#include "protocol.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A certificate-shaped PEM block as long as a real RSA-2048 one. */
static char *fake_pem(void)
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t cap = 2048, n = 0;
	char *p = malloc(cap);
	if (!p)
		return NULL;
	n += (size_t)snprintf(p + n, cap - n, "-----BEGIN CERTIFICATE-----\n");
	for (int line = 0; line < 17; line++) {
		for (int i = 0; i < 64; i++)
			p[n++] = b64[(line * 64 + i) * 7 % 64];
		p[n++] = '\n';
	}
	snprintf(p + n, cap - n, "-----END CERTIFICATE-----\n");
	return p;
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "both";
	long n = argc > 2 ? strtol(argv[2], NULL, 10) : 2000;
	long rounds = argc > 3 ? strtol(argv[3], NULL, 10) : 20;
	bool decode = strcmp(what, "encode") != 0, encode = strcmp(what, "decode") != 0;
	char pad[1024], sig[345];
	char *pem = fake_pem();
	char **wire = calloc((size_t)n, sizeof(char *));
	size_t *len = calloc((size_t)n, sizeof(size_t));
	struct cad_msg *msgs = calloc((size_t)n, sizeof(struct cad_msg));
	char **bodies = calloc((size_t)n, sizeof(char *));

	if (n < 1 || rounds < 0 || !pem || !wire || !len || !msgs || !bodies) {
		fprintf(stderr,
			"usage: cad-bench-codec [decode|encode|both] [MESSAGES] [ROUNDS]\n");
		return 2;
	}
	memset(pad, 'x', sizeof(pad));
	for (int i = 0; i < 344; i++)
		sig[i] = "QUJDRA0123456789+/"[(i * 5) % 18];
	sig[342] = sig[343] = '=';
	sig[344] = '\0';
	/* The same shape as tests/bench/corpus.c. */
	for (long i = 0; i < n; i++) {
		char name[64], caller[80], rid[33], body[1400];
		snprintf(name, sizeof(name), "node-%ld.example.net", i % 1000);
		snprintf(rid, sizeof(rid), "%08x%024lx", 0xbe7c4u, i);
		snprintf(body, sizeof(body),
			 "{\"agent\":\"registration\",\"identity\":\"%s\",\"facts\":{\"os\":"
			 "\"debian\",\"index\":%ld,\"padding\":\"%.*s\"}}",
			 name, i, 900, pad);
		struct choria_msg_spec spec =
			choria_msg_request_from(name, caller, sizeof(caller), rid, body);
		spec.time = 1520088557 + i;
		spec.signature = sig;
		spec.pubcert = pem;
		wire[i] = choria_msg_build(&spec, &len[i]);
		if (!wire[i]) {
			fprintf(stderr, "cad-bench-codec: cannot build message %ld\n", i);
			return 1;
		}
		/* What the envelope is made of, for `encode` alone. */
		struct choria_decoded d;
		if (choria_decode(&d, CHORIA_REQUEST, wire[i], len[i], NULL, NULL, 0) != 0) {
			fprintf(stderr, "cad-bench-codec: message %ld does not decode\n", i);
			return 1;
		}
		bodies[i] = malloc(d.body_len + d.sender_len + d.request_id_len + 3);
		if (!bodies[i])
			return 1;
		char *p = bodies[i];
		memcpy(p, d.body, d.body_len + 1);
		msgs[i].body = p;
		msgs[i].body_len = d.body_len;
		p += d.body_len + 1;
		memcpy(p, d.sender, d.sender_len + 1);
		msgs[i].sender = p;
		msgs[i].sender_len = d.sender_len;
		p += d.sender_len + 1;
		memcpy(p, d.request_id, d.request_id_len + 1);
		msgs[i].request_id = p;
		msgs[i].request_id_len = d.request_id_len;
		msgs[i].time = d.time;
		choria_decoded_clear(&d);
	}

	struct envelope_label label;
	if (envelope_label_init(&label, ENVELOPE_PROTOCOL_JETSTREAM) != 0)
		return 1;
	size_t wire_bytes = 0, out_bytes = 0;
	for (long i = 0; i < n; i++)
		wire_bytes += len[i];
	double t0 = now_s();
	for (long r = 0; r < rounds; r++) {
		for (long i = 0; i < n; i++) {
			if (decode) {
				struct choria_decoded d;
				const char *reason;
				char detail[320];
				if (choria_decode(&d, CHORIA_REQUEST, wire[i], len[i], &reason,
						  detail, sizeof(detail)) != 0) {
					fprintf(stderr, "cad-bench-codec: %s: %s\n", reason,
						detail);
					return 1;
				}
				choria_decoded_clear(&d);
			}
			if (encode) {
				char *out;
				size_t out_len;
				if (envelope_encode(&out, &out_len, &label, &msgs[i]) != 0) {
					fprintf(stderr, "cad-bench-codec: cannot encode %ld\n", i);
					return 1;
				}
				out_bytes += out_len;
				free(out);
			}
		}
	}
	double dt = now_s() - t0;
	long total = n * rounds;
	printf("%s: %ld messages x %ld rounds, %.0f bytes on the wire each: %.0f ns per message\n",
	       what, n, rounds, (double)wire_bytes / (double)n,
	       total ? dt * 1e9 / (double)total : 0.0);
	for (long i = 0; i < n; i++) {
		free(wire[i]);
		free(bodies[i]);
	}
	free(wire);
	free(len);
	free(msgs);
	free(bodies);
	free(pem);
	return out_bytes == (size_t)-1;
}
