/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The NATS Streaming protocol responder (see stan_responder.h): protobuf
 * messages from stan_wire.proto over a plain cnats connection.
 *
 * Concurrency & locking: cnats delivers each subscription on its own
 * thread, and tests read and steer from theirs; `lock` guards all state.
 * Replies are published with the lock released.
 */
#include "stan_responder.h"

#include <errno.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stan_wire.pb-c.h"

struct session {
	struct stan_session pub; /* what tests see */
	uint8_t conn_id[64];
	size_t conn_id_len;
};

struct held_ack {
	char *reply;
	char *guid;
};

struct stan_responder {
	natsConnection *nc;
	natsSubscription *subs[4];
	char cluster[128];
	char token[32]; /* makes this responder's subjects its own */
	char pub_prefix[64];
	char ping_subject[64];
	char close_subject[64];
	pthread_mutex_t lock;
	enum stan_ack_mode mode;
	bool answer_pings;
	struct stan_counts counts;
	struct session *sessions;
	size_t n_sessions, cap_sessions;
	struct stan_pub *pubs;
	size_t n_pubs, cap_pubs;
	struct held_ack *held;
	size_t n_held, cap_held;
};

static bool grow(void **arr, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return true;
	size_t n = *cap ? *cap * 2 : 64;
	while (n < need)
		n *= 2;
	void *p = realloc(*arr, n * size);
	if (!p)
		return false;
	*arr = p;
	*cap = n;
	return true;
}

static void reply(struct stan_responder *r, const char *to, const ProtobufCMessage *m)
{
	if (!to || !*to)
		return;
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return;
	protobuf_c_message_pack(m, buf);
	natsConnection_Publish(r->nc, to, buf, (int)len);
	free(buf);
}

static bool client_id_ok(const char *id)
{
	if (!*id)
		return false;
	for (; *id; id++) {
		char c = *id;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* A live session by client id, and by connID when one is given. Lock
 * held. */
static struct session *live_session(struct stan_responder *r, const char *client_id,
				    const ProtobufCBinaryData *conn_id)
{
	for (size_t i = 0; i < r->n_sessions; i++) {
		struct session *s = &r->sessions[i];
		if (!s->pub.alive)
			continue;
		if (client_id && strcmp(s->pub.client_id, client_id) != 0)
			continue;
		if (conn_id && (conn_id->len != s->conn_id_len ||
				memcmp(conn_id->data, s->conn_id, s->conn_id_len) != 0))
			continue;
		return s;
	}
	return NULL;
}

static void on_connect(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)nc;
	(void)sub;
	struct stan_responder *r = closure;
	Stanwire__ConnectRequest *req =
		stanwire__connect_request__unpack(NULL, (size_t)natsMsg_GetDataLength(msg),
						  (const uint8_t *)natsMsg_GetData(msg));
	Stanwire__ConnectResponse resp = STANWIRE__CONNECT_RESPONSE__INIT;
	char sub_req[80], unsub_req[80], subclose_req[80];
	snprintf(sub_req, sizeof(sub_req), "_STAN.sub.%s", r->token);
	snprintf(unsub_req, sizeof(unsub_req), "_STAN.unsub.%s", r->token);
	snprintf(subclose_req, sizeof(subclose_req), "_STAN.subclose.%s", r->token);

	pthread_mutex_lock(&r->lock);
	if (!req) {
		resp.error = "stan: invalid connection request";
	} else if (!client_id_ok(req->clientid) || strlen(req->clientid) >= 160 ||
		   req->connid.len > sizeof(r->sessions->conn_id)) {
		resp.error =
			"stan: invalid client ID: only alphanumeric and `-` or `_` characters allowed";
	} else if (live_session(r, req->clientid, NULL)) {
		resp.error = "stan: clientID already registered";
	} else if (!grow((void **)&r->sessions, &r->cap_sessions, r->n_sessions + 1,
			 sizeof(*r->sessions))) {
		resp.error = "stan: out of memory";
	} else {
		struct session *s = &r->sessions[r->n_sessions++];
		memset(s, 0, sizeof(*s));
		snprintf(s->pub.client_id, sizeof(s->pub.client_id), "%s", req->clientid);
		s->pub.alive = true;
		memcpy(s->conn_id, req->connid.data, req->connid.len);
		s->conn_id_len = req->connid.len;
		resp.pubprefix = r->pub_prefix;
		resp.subrequests = sub_req;
		resp.unsubrequests = unsub_req;
		resp.subcloserequests = subclose_req;
		resp.closerequests = r->close_subject;
		resp.pingrequests = r->ping_subject;
		/* Echo what the client asked for: a non-zero interval turns
		 * its pings on. */
		resp.pinginterval = req->pinginterval ? req->pinginterval : 5;
		resp.pingmaxout = req->pingmaxout ? req->pingmaxout : 3;
		resp.protocol = 1;
	}
	if (*resp.error)
		r->counts.refused++;
	else
		r->counts.connects++;
	pthread_mutex_unlock(&r->lock);
	reply(r, natsMsg_GetReply(msg), &resp.base);
	stanwire__connect_request__free_unpacked(req, NULL);
	natsMsg_Destroy(msg);
}

static void ack(struct stan_responder *r, const char *to, const char *guid, const char *error)
{
	Stanwire__PubAck a = STANWIRE__PUB_ACK__INIT;
	a.guid = (char *)guid;
	if (error)
		a.error = (char *)error;
	reply(r, to, &a.base);
}

static void on_pub(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)nc;
	(void)sub;
	struct stan_responder *r = closure;
	const char *to = natsMsg_GetReply(msg);
	Stanwire__PubMsg *pm = stanwire__pub_msg__unpack(NULL, (size_t)natsMsg_GetDataLength(msg),
							 (const uint8_t *)natsMsg_GetData(msg));
	if (!pm) {
		natsMsg_Destroy(msg);
		return;
	}
	enum {
		ANSWER_OK,
		ANSWER_ERROR,
		ANSWER_NONE
	} answer = ANSWER_NONE;
	const char *error = NULL;

	pthread_mutex_lock(&r->lock);
	r->counts.pubs++;
	if (grow((void **)&r->pubs, &r->cap_pubs, r->n_pubs + 1, sizeof(*r->pubs))) {
		struct stan_pub *p = &r->pubs[r->n_pubs++];
		memset(p, 0, sizeof(*p));
		snprintf(p->client_id, sizeof(p->client_id), "%s", pm->clientid);
		snprintf(p->guid, sizeof(p->guid), "%s", pm->guid);
		snprintf(p->channel, sizeof(p->channel), "%s", pm->subject);
		snprintf(p->subject, sizeof(p->subject), "%s", natsMsg_GetSubject(msg));
		p->data = malloc(pm->data.len + 1);
		if (p->data) {
			memcpy(p->data, pm->data.data, pm->data.len);
			p->data[pm->data.len] = '\0';
			p->len = pm->data.len;
		}
		p->known = live_session(r, pm->clientid, &pm->connid) != NULL;
		if (!p->known) {
			error = "stan: invalid publish request";
			answer = ANSWER_ERROR;
		} else {
			switch (r->mode) {
			case STAN_ACK:
				p->stored = true;
				answer = ANSWER_OK;
				break;
			case STAN_ACK_HOLD:
				p->stored = true;
				if (grow((void **)&r->held, &r->cap_held, r->n_held + 1,
					 sizeof(*r->held))) {
					r->held[r->n_held].reply = strdup(to ? to : "");
					r->held[r->n_held].guid = strdup(pm->guid);
					r->n_held++;
				}
				break;
			case STAN_ACK_NONE:
				break;
			case STAN_ACK_LOST:
				p->stored = true;
				break;
			case STAN_ACK_ERROR:
				error = "stan: store failed";
				answer = ANSWER_ERROR;
				break;
			}
		}
		if (p->stored)
			r->counts.stored++;
		if (answer == ANSWER_OK)
			r->counts.acked++;
		if (answer == ANSWER_ERROR)
			r->counts.rejected++;
	}
	pthread_mutex_unlock(&r->lock);
	if (answer != ANSWER_NONE)
		ack(r, to, pm->guid, error);
	stanwire__pub_msg__free_unpacked(pm, NULL);
	natsMsg_Destroy(msg);
}

static void on_ping(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)nc;
	(void)sub;
	struct stan_responder *r = closure;
	Stanwire__Ping *ping = stanwire__ping__unpack(NULL, (size_t)natsMsg_GetDataLength(msg),
						      (const uint8_t *)natsMsg_GetData(msg));
	Stanwire__PingResponse resp = STANWIRE__PING_RESPONSE__INIT;
	bool answer;
	pthread_mutex_lock(&r->lock);
	r->counts.pings++;
	bool known = false;
	for (size_t i = 0; ping && i < r->n_sessions && !known; i++) {
		struct session *s = &r->sessions[i];
		known = s->pub.alive && s->conn_id_len == ping->connid.len &&
			memcmp(s->conn_id, ping->connid.data, s->conn_id_len) == 0;
	}
	if (!known) {
		resp.error = "client has been replaced or is no longer registered";
		r->counts.lost_pings++;
	}
	answer = !known || r->answer_pings;
	pthread_mutex_unlock(&r->lock);
	if (answer)
		reply(r, natsMsg_GetReply(msg), &resp.base);
	stanwire__ping__free_unpacked(ping, NULL);
	natsMsg_Destroy(msg);
}

static void on_close(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)nc;
	(void)sub;
	struct stan_responder *r = closure;
	Stanwire__CloseRequest *req =
		stanwire__close_request__unpack(NULL, (size_t)natsMsg_GetDataLength(msg),
						(const uint8_t *)natsMsg_GetData(msg));
	Stanwire__CloseResponse resp = STANWIRE__CLOSE_RESPONSE__INIT;
	pthread_mutex_lock(&r->lock);
	struct session *s = req ? live_session(r, req->clientid, NULL) : NULL;
	if (s) {
		s->pub.alive = false;
		s->pub.closed = true;
		r->counts.closes++;
	} else {
		resp.error = "stan: unknown clientID";
	}
	pthread_mutex_unlock(&r->lock);
	reply(r, natsMsg_GetReply(msg), &resp.base);
	stanwire__close_request__free_unpacked(req, NULL);
	natsMsg_Destroy(msg);
}

int stan_responder_start(struct stan_responder **out, const char *url, const char *cluster_id)
{
	struct stan_responder *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	r->answer_pings = true;
	snprintf(r->cluster, sizeof(r->cluster), "%s", cluster_id);
	char *inbox = NULL;
	if (natsInbox_Create(&inbox) != NATS_OK) {
		stan_responder_stop(r);
		return -ENOMEM;
	}
	/* The inbox's unique part ("_INBOX.<nuid>"). */
	snprintf(r->token, sizeof(r->token), "%s", strchr(inbox, '.') + 1);
	natsInbox_Destroy(inbox);
	snprintf(r->pub_prefix, sizeof(r->pub_prefix), "_STAN.pub.%s", r->token);
	snprintf(r->ping_subject, sizeof(r->ping_subject), "_STAN.ping.%s", r->token);
	snprintf(r->close_subject, sizeof(r->close_subject), "_STAN.close.%s", r->token);

	natsOptions *o = NULL;
	natsStatus s = natsOptions_Create(&o);
	if (s == NATS_OK)
		s = natsOptions_SetURL(o, url);
	/* Stay through nats-server restarts, as a server would. */
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, 100);
	/* One delivery thread for all four subscriptions: requests are
	 * handled in the order they came, so a client's close is handled
	 * after every publish it sent before it. */
	if (s == NATS_OK)
		s = natsOptions_UseGlobalMessageDelivery(o, true);
	if (s == NATS_OK)
		s = natsConnection_Connect(&r->nc, o);
	natsOptions_Destroy(o);
	char discover[200], pubs[80];
	snprintf(discover, sizeof(discover), "_STAN.discover.%s", cluster_id);
	snprintf(pubs, sizeof(pubs), "%s.>", r->pub_prefix);
	if (s == NATS_OK)
		s = natsConnection_Subscribe(&r->subs[0], r->nc, discover, on_connect, r);
	if (s == NATS_OK)
		s = natsConnection_Subscribe(&r->subs[1], r->nc, pubs, on_pub, r);
	if (s == NATS_OK)
		s = natsConnection_Subscribe(&r->subs[2], r->nc, r->ping_subject, on_ping, r);
	if (s == NATS_OK)
		s = natsConnection_Subscribe(&r->subs[3], r->nc, r->close_subject, on_close, r);
	for (int i = 0; s == NATS_OK && i < 4; i++)
		s = natsSubscription_SetPendingLimits(r->subs[i], -1, -1);
	if (s == NATS_OK)
		s = natsConnection_Flush(r->nc);
	if (s != NATS_OK) {
		fprintf(stderr, "stan responder: %s\n", natsStatus_GetText(s));
		stan_responder_stop(r);
		return -EIO;
	}
	*out = r;
	return 0;
}

void stan_responder_stop(struct stan_responder *r)
{
	if (!r)
		return;
	/* Unsubscribing waits for the delivery threads to finish. */
	for (int i = 0; i < 4; i++)
		if (r->subs[i])
			natsSubscription_Unsubscribe(r->subs[i]);
	for (int i = 0; i < 4; i++)
		natsSubscription_Destroy(r->subs[i]);
	if (r->nc) {
		natsConnection_Close(r->nc);
		natsConnection_Destroy(r->nc);
	}
	stan_pubs_free(r->pubs, r->n_pubs);
	for (size_t i = 0; i < r->n_held; i++) {
		free(r->held[i].reply);
		free(r->held[i].guid);
	}
	free(r->held);
	free(r->sessions);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

void stan_responder_set_ack_mode(struct stan_responder *r, enum stan_ack_mode mode)
{
	pthread_mutex_lock(&r->lock);
	r->mode = mode;
	pthread_mutex_unlock(&r->lock);
}

int stan_responder_release(struct stan_responder *r)
{
	pthread_mutex_lock(&r->lock);
	struct held_ack *held = r->held;
	size_t n = r->n_held;
	r->held = NULL;
	r->n_held = r->cap_held = 0;
	r->counts.acked += n;
	pthread_mutex_unlock(&r->lock);
	for (size_t i = 0; i < n; i++) {
		ack(r, held[i].reply, held[i].guid, NULL);
		free(held[i].reply);
		free(held[i].guid);
	}
	free(held);
	natsConnection_Flush(r->nc);
	return (int)n;
}

void stan_responder_answer_pings(struct stan_responder *r, bool answer)
{
	pthread_mutex_lock(&r->lock);
	r->answer_pings = answer;
	pthread_mutex_unlock(&r->lock);
}

void stan_responder_drop_sessions(struct stan_responder *r)
{
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n_sessions; i++)
		r->sessions[i].pub.alive = false;
	pthread_mutex_unlock(&r->lock);
}

void stan_responder_counts(struct stan_responder *r, struct stan_counts *out)
{
	pthread_mutex_lock(&r->lock);
	*out = r->counts;
	pthread_mutex_unlock(&r->lock);
}

static void sleep_ms(int ms)
{
	nats_Sleep(ms);
}

bool stan_responder_wait_stored(struct stan_responder *r, size_t n, int timeout_ms)
{
	for (int waited = 0;; waited += 20) {
		struct stan_counts c;
		stan_responder_counts(r, &c);
		if (c.stored >= n)
			return true;
		if (waited >= timeout_ms)
			return false;
		sleep_ms(20);
	}
}

bool stan_responder_wait_pubs(struct stan_responder *r, size_t n, int timeout_ms)
{
	for (int waited = 0;; waited += 20) {
		struct stan_counts c;
		stan_responder_counts(r, &c);
		if (c.pubs >= n)
			return true;
		if (waited >= timeout_ms)
			return false;
		sleep_ms(20);
	}
}

bool stan_responder_wait_connects(struct stan_responder *r, unsigned n, int timeout_ms)
{
	for (int waited = 0;; waited += 20) {
		struct stan_counts c;
		stan_responder_counts(r, &c);
		if (c.connects >= n)
			return true;
		if (waited >= timeout_ms)
			return false;
		sleep_ms(20);
	}
}

bool stan_responder_wait_closes(struct stan_responder *r, unsigned n, int timeout_ms)
{
	for (int waited = 0;; waited += 20) {
		struct stan_counts c;
		stan_responder_counts(r, &c);
		if (c.closes >= n)
			return true;
		if (waited >= timeout_ms)
			return false;
		sleep_ms(20);
	}
}

size_t stan_responder_pubs(struct stan_responder *r, struct stan_pub **out)
{
	pthread_mutex_lock(&r->lock);
	size_t n = r->n_pubs;
	struct stan_pub *copy = calloc(n ? n : 1, sizeof(*copy));
	for (size_t i = 0; copy && i < n; i++) {
		copy[i] = r->pubs[i];
		copy[i].data = NULL;
		if (r->pubs[i].data && (copy[i].data = malloc(r->pubs[i].len + 1)))
			memcpy(copy[i].data, r->pubs[i].data, r->pubs[i].len + 1);
	}
	pthread_mutex_unlock(&r->lock);
	*out = copy;
	return copy ? n : 0;
}

void stan_pubs_free(struct stan_pub *pubs, size_t n)
{
	for (size_t i = 0; pubs && i < n; i++)
		free(pubs[i].data);
	free(pubs);
}

size_t stan_responder_sessions(struct stan_responder *r, struct stan_session **out)
{
	pthread_mutex_lock(&r->lock);
	size_t n = r->n_sessions;
	struct stan_session *copy = calloc(n ? n : 1, sizeof(*copy));
	for (size_t i = 0; copy && i < n; i++)
		copy[i] = r->sessions[i].pub;
	pthread_mutex_unlock(&r->lock);
	*out = copy;
	return copy ? n : 0;
}
