/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cad-bench-relay: the benchmark's baseline. Subscribes to a subject and
 * publishes every message's bytes unchanged to JetStream, asynchronously
 * with a window: no decoding, no envelope, no checks. What it achieves is
 * the practical upper bound for any adapter on the same machine.
 *
 *   cad-bench-relay URL IN_SUBJECT OUT_SUBJECT WINDOW
 *
 * With BENCH_RELAY_MSG_ID set, each publish carries a Nats-Msg-Id of its
 * own, as the daemon's do, to measure what the server's duplicate check
 * costs.
 */
#include <nats/nats.h>
#include <signal.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static jsCtx *js;
static const char *out_subject;
static _Atomic unsigned long errors;
static bool with_msg_id;
static _Atomic unsigned long published;

static void relay_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
	(void)nc;
	(void)sub;
	(void)closure;
	char id[32];
	jsPubOptions po, *opts = NULL; /* none: the minimal relay */
	if (with_msg_id) {
		jsPubOptions_Init(&po);
		snprintf(id, sizeof(id), "relay-%lu", atomic_fetch_add(&published, 1));
		po.MsgId = id;
		opts = &po;
	}
	if (js_PublishAsync(js, out_subject, natsMsg_GetData(m), natsMsg_GetDataLength(m), opts) !=
	    NATS_OK)
		atomic_fetch_add(&errors, 1);
	natsMsg_Destroy(m);
}

static void relay_on_err(jsCtx *ctx, jsPubAckErr *pae, void *closure)
{
	(void)ctx;
	(void)closure;
	atomic_fetch_add(&errors, 1);
	/* Send it again, as a relay that loses nothing must. */
	js_PublishMsgAsync(js, &pae->Msg, NULL);
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: cad-bench-relay URL IN_SUBJECT OUT_SUBJECT WINDOW\n");
		return 2;
	}
	out_subject = argv[3];
	with_msg_id = getenv("BENCH_RELAY_MSG_ID") != NULL;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	natsConnection *in = NULL, *out = NULL;
	natsSubscription *sub = NULL;
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = atoi(argv[4]);
	jo.PublishAsync.ErrHandler = relay_on_err;
	jo.PublishAsync.StallWait = 60000;
	natsStatus s = natsConnection_ConnectTo(&out, argv[1]);
	if (s == NATS_OK)
		s = natsConnection_JetStream(&js, out, &jo);
	if (s == NATS_OK)
		s = natsConnection_ConnectTo(&in, argv[1]);
	if (s == NATS_OK)
		s = natsConnection_Subscribe(&sub, in, argv[2], relay_on_msg, NULL);
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(sub, -1, -1);
	if (s == NATS_OK)
		s = natsConnection_Flush(in);
	if (s != NATS_OK) {
		fprintf(stderr, "cad-bench-relay: %s\n", natsStatus_GetText(s));
		return 1;
	}
	printf("running\n");
	fflush(stdout);
	int sig;
	sigwait(&set, &sig);
	natsSubscription_Unsubscribe(sub);
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = 10000;
	js_PublishAsyncComplete(js, &po);
	fprintf(stderr, "relay errors (retried): %lu\n", (unsigned long)atomic_load(&errors));
	natsSubscription_Destroy(sub);
	jsCtx_Destroy(js);
	natsConnection_Destroy(in);
	natsConnection_Destroy(out);
	return 0;
}
