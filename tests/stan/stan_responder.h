/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A NATS Streaming protocol responder for tests. No NATS Streaming server
 * is packaged in Debian, so the natsstream tests run the server's side of
 * what a publishing client exchanges with a cluster, over a real
 * nats-server: it answers connect requests on _STAN.discover.<cluster id>,
 * acknowledges publishes on the publish prefix it handed out, answers pings
 * and close requests, and records everything it received. Tests can make it
 * stop acknowledging, acknowledge with errors, forget its clients or stop
 * answering pings. It keeps messages in memory only and knows nothing of
 * subscriptions, channels' limits or clustering: it is not a NATS Streaming
 * server.
 */
#ifndef CAD_TEST_STAN_RESPONDER_H
#define CAD_TEST_STAN_RESPONDER_H

#include <stdbool.h>
#include <stddef.h>

struct stan_responder;

/* What the responder does with a publish from a known client. */
enum stan_ack_mode {
	STAN_ACK = 0,  /* store it and acknowledge: a healthy server */
	STAN_ACK_HOLD, /* store it; acknowledge on stan_responder_release() */
	STAN_ACK_NONE, /* neither store nor answer: the server is away */
	STAN_ACK_LOST, /* store it, but no acknowledgement ever arrives */
	STAN_ACK_ERROR /* acknowledge with an error and store nothing */
};

/* One publish as received. */
struct stan_pub {
	char client_id[160];
	char guid[64];
	char channel[256]; /* the PubMsg's subject field */
	char subject[400]; /* the NATS subject it came on */
	char *data;        /* the payload, NUL-terminated */
	size_t len;
	bool known;  /* from a client with a live session (client id and connID) */
	bool stored; /* kept, as a server would have */
};

/* One client session, live or not. */
struct stan_session {
	char client_id[160];
	bool alive;  /* not closed, not forgotten */
	bool closed; /* ended by the client's close request */
};

struct stan_counts {
	unsigned connects;   /* connect requests accepted */
	unsigned refused;    /* connect requests refused (bad or duplicate id) */
	unsigned closes;     /* close requests answered for live sessions */
	unsigned pings;      /* pings received */
	unsigned lost_pings; /* pings answered with an error: unknown client */
	size_t pubs;         /* publishes received */
	size_t stored;       /* publishes stored */
	size_t acked;        /* acknowledgements sent without error */
	size_t rejected;     /* publishes answered with an error */
};

/* Connect to the nats-server at url and serve cluster `cluster_id`.
 * Returns 0 or a negative errno. */
int stan_responder_start(struct stan_responder **out, const char *url, const char *cluster_id);
void stan_responder_stop(struct stan_responder *r); /* accepts NULL */

void stan_responder_set_ack_mode(struct stan_responder *r, enum stan_ack_mode mode);
/* Acknowledge every publish held in STAN_ACK_HOLD; returns how many. */
int stan_responder_release(struct stan_responder *r);
/* Whether pings from known clients are answered (default true). */
void stan_responder_answer_pings(struct stan_responder *r, bool answer);
/* Forget every live session, as a restarted server would: their pings and
 * publishes are then answered with errors. */
void stan_responder_drop_sessions(struct stan_responder *r);

void stan_responder_counts(struct stan_responder *r, struct stan_counts *out);
/* Wait until at least n publishes are stored / n connects accepted. */
bool stan_responder_wait_stored(struct stan_responder *r, size_t n, int timeout_ms);
bool stan_responder_wait_connects(struct stan_responder *r, unsigned n, int timeout_ms);
bool stan_responder_wait_pubs(struct stan_responder *r, size_t n, int timeout_ms);
/* Wait until n sessions have been closed by their clients. Requests are
 * handled in the order they come, so a client that has closed has
 * nothing more on its way: what it published is all here. */
bool stan_responder_wait_closes(struct stan_responder *r, unsigned n, int timeout_ms);

/* Copies of every publish received, in arrival order; free with
 * stan_pubs_free(). Returns the count. */
size_t stan_responder_pubs(struct stan_responder *r, struct stan_pub **out);
void stan_pubs_free(struct stan_pub *pubs, size_t n);
/* A copy of every session; free() it. Returns the count. */
size_t stan_responder_sessions(struct stan_responder *r, struct stan_session **out);

#endif
