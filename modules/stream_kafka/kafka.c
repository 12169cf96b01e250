/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `kafka` stream module: produces each message's envelope to a Kafka
 * topic with librdkafka's idempotent producer (acks=all, no delivery
 * timeout), and gives the message back to the host only from its delivery
 * report: stored, or refused for good.
 *
 * A record's key is the sender, so one node's messages keep their order in
 * one partition; its headers carry the request id and the sender, its
 * timestamp the message's own time.
 *
 * The workers of an instance share one producer and one window of
 * workers x max_inflight records in custody. librdkafka retries what can be
 * retried by itself; what it hands back unstored without being refused for
 * good (a topic that does not exist yet, a full queue) is held here and
 * produced again with capped backoff. A fatal producer error (the cluster
 * lost the idempotence state) makes the instance build a new producer and
 * produce again everything the old one did not report stored.
 *
 * Concurrency & locking: workers produce on their own threads; one poller
 * thread per instance serves librdkafka's callbacks (delivery reports,
 * errors), produces again what is due, probes the cluster while it is away
 * and rebuilds the producer. `rk_lock` is held shared around every use of
 * the producer off the poller thread and exclusively to replace it; only
 * the poller replaces it. `lock` guards `held`, the parked list, `closing`
 * and `open_workers`; `room` is broadcast when the window falls to its low
 * water or empties. host->msg_done() is called outside the locks, and
 * `held` counts a message until its msg_done() has returned.
 */
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <choria-adapterd/cad_module.h>
#include "envelope.h"
#include "kafka_conf.h"
#include "pacing.h"
#include "publish_window.h"

#define RETRY_FIRST_MS 100
#define RETRY_MAX_MS 5000
#define POLL_MS 50
#define PROBE_EVERY_NS (1000 * CAD_NS_PER_MS)
#define PROBE_TIMEOUT_MS 1000
/* How long the reports of purged records may take to come back. */
#define PURGE_WAIT_NS (10000 * CAD_NS_PER_MS)

struct kafka_parked {
	struct cad_msg *msg;
	int64_t retry_at_ns;
};

struct kafka {
	const struct cad_host *host;
	struct cad_context *ctx;
	struct kafka_settings set;
	struct envelope_label label; /* output_protocol */
	long low_water;

	pthread_rwlock_t rk_lock;
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;

	pthread_t poller;
	bool poller_started;
	atomic_bool stop;
	atomic_bool fatal;               /* the producer raised a fatal error */
	struct cad_ratelimit warn_limit; /* for retry warnings */
	struct cad_ratelimit loss_warn_limit;
	/* The poller thread's own: */
	bool cluster_up, cluster_reported, topic_missing, stalled;
	int64_t next_probe_ns;
	int64_t last_report_ns; /* the last delivery report, stored or not */
	char *env;
	size_t env_cap;
	uint64_t rebuilds;

	pthread_mutex_t lock;
	pthread_cond_t room;
	long held; /* messages in custody, in librdkafka or parked */
	struct kafka_parked *parked;
	size_t n_parked, cap_parked;
	bool closing;
	unsigned open_workers;
};

struct kafka_worker {
	struct kafka *k;
	char *env; /* the envelope being built; this worker's thread only */
	size_t env_cap;
};

/* ------------------------------------------------------------ custody */

/* The end of a message's custody. */
static void kafka_settle(struct kafka *k, struct cad_msg *m, int status, const char *reason)
{
	k->host->msg_done(k->ctx, m, status, reason);
	pthread_mutex_lock(&k->lock);
	k->held--;
	/* Publishers wait only on a full window: wake them at its low water,
	 * not at every report; an empty window wakes the closing workers. */
	if (k->held == 0 || k->held == k->low_water)
		pthread_cond_broadcast(&k->room);
	pthread_mutex_unlock(&k->lock);
}

/* Hold a message to produce it again after delay_ms; once the workers
 * close, it is lost instead. */
static void kafka_park(struct kafka *k, struct cad_msg *m, int64_t delay_ms)
{
	pthread_mutex_lock(&k->lock);
	if (k->closing) {
		pthread_mutex_unlock(&k->lock);
		kafka_settle(k, m, -ETIMEDOUT, "shutdown");
		return;
	}
	if (k->n_parked == k->cap_parked) {
		size_t cap = k->cap_parked ? 2 * k->cap_parked : 64;
		struct kafka_parked *p = realloc(k->parked, cap * sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&k->lock);
			kafka_settle(k, m, -ENOMEM, "out_of_memory");
			return;
		}
		k->parked = p;
		k->cap_parked = cap;
	}
	k->parked[k->n_parked++] =
		(struct kafka_parked){m, cad_clock_mono_ns() + delay_ms * CAD_NS_PER_MS};
	pthread_mutex_unlock(&k->lock);
}

static int64_t kafka_backoff_ms(const struct cad_msg *m)
{
	return pacing_backoff_ms(RETRY_FIRST_MS, RETRY_MAX_MS, m->attempts);
}

/* ------------------------------------------------------------ producing */

/* The worker's (or the poller's) envelope buffer, grown to `need`. */
static int kafka_env_room(char **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	char *b = realloc(*buf, need);
	if (!b)
		return -ENOMEM;
	*buf = b;
	*cap = need;
	return 0;
}

static int kafka_envelope(const struct kafka *k, char **buf, size_t *cap, size_t *len,
			  const struct cad_msg *m)
{
	int rc = kafka_env_room(buf, cap, envelope_max_len(&k->label, m));
	return rc ? rc : envelope_write(*buf, *cap, len, &k->label, m);
}

/* The message's time in milliseconds; 0 (the broker's time) for one that
 * has none. */
static int64_t kafka_timestamp_ms(const struct cad_msg *m)
{
	return m->time > 0 && m->time < INT64_MAX / 1000 ? m->time * 1000 : 0;
}

static rd_kafka_resp_err_t kafka_produce(rd_kafka_t *rk, rd_kafka_topic_t *rkt, struct cad_msg *m,
					 const char *env, size_t len)
{
	return rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
				 RD_KAFKA_V_VALUE((void *)env, len),
				 RD_KAFKA_V_KEY(m->sender, m->sender_len),
				 RD_KAFKA_V_HEADER("choria-requestid", m->request_id,
						   (ssize_t)m->request_id_len),
				 RD_KAFKA_V_HEADER("choria-sender", m->sender,
						   (ssize_t)m->sender_len),
				 RD_KAFKA_V_TIMESTAMP(kafka_timestamp_ms(m)), RD_KAFKA_V_OPAQUE(m),
				 RD_KAFKA_V_END);
}

static bool kafka_topic_error(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
	       err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
	       err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;
}

/* A record refused for good: lost with its own reason, logged
 * rate-limited with Kafka's word for it. */
static void kafka_lose(struct kafka *k, struct cad_msg *m, rd_kafka_resp_err_t err)
{
	int status = -EPROTO;
	const char *reason = "refused";
	if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
		status = -EMSGSIZE;
		reason = "too_large";
	} else if (err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
		   err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED) {
		status = -EACCES;
		reason = "not_authorized";
	}
	pacing_warn(k->host, k->ctx, &k->loss_warn_limit,
		    "Kafka refused a record for topic %s for good: %s (%s)", k->set.topic,
		    rd_kafka_err2name(err), rd_kafka_err2str(err));
	kafka_settle(k, m, status, reason);
}

/* A record librdkafka did not store, or would not take: produced again
 * later, or lost when it was refused for good. */
static void kafka_not_stored(struct kafka *k, struct cad_msg *m, rd_kafka_resp_err_t err,
			     bool fatal)
{
	if (fatal || err == RD_KAFKA_RESP_ERR__FATAL) {
		kafka_park(k, m, 0); /* into the next producer, at once */
		return;
	}
	if (err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
		kafka_park(k, m, 0);
		return;
	}
	if (kafka_topic_error(err)) {
		pacing_warn(k->host, k->ctx, &k->warn_limit,
			    "topic %s does not exist in the Kafka cluster: create it; retrying",
			    k->set.topic);
		kafka_park(k, m, kafka_backoff_ms(m));
		return;
	}
	/* librdkafka retries by itself all a broker may answer that is not
	 * final; its local errors (a full queue) are retried here. */
	if (err > 0 && err != RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS &&
	    err != RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND &&
	    err != RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT) {
		kafka_lose(k, m, err);
		return;
	}
	pacing_warn(k->host, k->ctx, &k->warn_limit, "producing to Kafka failed (%s); retrying",
		    rd_kafka_err2str(err));
	kafka_park(k, m, kafka_backoff_ms(m));
}

/* Produce m through the current producer; the caller counted it held. */
static void kafka_send(struct kafka *k, struct cad_msg *m, const char *env, size_t len)
{
	pthread_rwlock_rdlock(&k->rk_lock);
	rd_kafka_resp_err_t err = kafka_produce(k->rk, k->rkt, m, env, len);
	bool fatal = err && rd_kafka_fatal_error(k->rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR;
	pthread_rwlock_unlock(&k->rk_lock);
	if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
		kafka_lose(k, m, err);
	else if (err)
		kafka_not_stored(k, m, err, fatal);
}

/* ------------------------------------------------------------ callbacks */

static void kafka_on_report(rd_kafka_t *rk, const rd_kafka_message_t *rm, void *opaque);
static void kafka_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque);
static void kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/* A producer on the instance's settings; NULL (logged) on failure. */
static rd_kafka_t *kafka_producer_new(struct kafka *k, rd_kafka_topic_t **rkt)
{
	char err[512] = "";
	rd_kafka_conf_t *conf = rd_kafka_conf_dup(k->set.base);
	if (!conf || rd_kafka_conf_set(conf, "bootstrap.servers", k->set.brokers, err,
				       sizeof(err)) != RD_KAFKA_CONF_OK) {
		k->host->log(k->ctx, CAD_LOG_ERROR, "cannot configure the Kafka producer: %s", err);
		if (conf)
			rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_opaque(conf, k);
	rd_kafka_conf_set_dr_msg_cb(conf, kafka_on_report);
	rd_kafka_conf_set_error_cb(conf, kafka_on_error);
	rd_kafka_conf_set_log_cb(conf, kafka_on_log);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (!rk) {
		rd_kafka_conf_destroy(conf);
		k->host->log(k->ctx, CAD_LOG_ERROR, "cannot create the Kafka producer: %s", err);
		return NULL;
	}
	*rkt = rd_kafka_topic_new(rk, k->set.topic, NULL);
	if (!*rkt) {
		k->host->log(k->ctx, CAD_LOG_ERROR, "cannot use topic %s: %s", k->set.topic,
			     rd_kafka_err2str(rd_kafka_last_error()));
		rd_kafka_destroy(rk);
		return NULL;
	}
	return rk;
}

/* The cluster's or the topic's state, for /healthz and the metrics;
 * poller thread. */
static void kafka_cluster_state(struct kafka *k, bool up)
{
	if (up == k->cluster_up && k->cluster_reported)
		return;
	k->cluster_up = up;
	k->cluster_reported = true;
	k->host->conn_state(k->ctx, "cluster", up);
}

static void kafka_topic_state(struct kafka *k, bool missing)
{
	if (missing == k->topic_missing)
		return;
	k->topic_missing = missing;
	char name[300];
	snprintf(name, sizeof(name), "topic %s", k->set.topic);
	k->host->conn_state(k->ctx, name, !missing);
}

/* Runs on the poller thread, from rd_kafka_poll(). */
static void kafka_on_report(rd_kafka_t *rk, const rd_kafka_message_t *rm, void *opaque)
{
	struct kafka *k = opaque;
	struct cad_msg *m = rm->_private;
	k->last_report_ns = cad_clock_mono_ns();
	if (rm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		kafka_cluster_state(k, true);
		kafka_topic_state(k, false);
		kafka_settle(k, m, 0, NULL);
		return;
	}
	if (kafka_topic_error(rm->err))
		kafka_topic_state(k, true);
	bool fatal = rd_kafka_fatal_error(rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR;
	kafka_not_stored(k, m, rm->err, fatal);
}

/* Runs on the poller thread, from rd_kafka_poll(). librdkafka logs the
 * details of a broker's failure through kafka_on_log. */
static void kafka_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)rk;
	struct kafka *k = opaque;
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		atomic_store(&k->fatal, true);
		return;
	}
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
		if (k->cluster_up || !k->cluster_reported)
			k->host->log(k->ctx, CAD_LOG_WARN, "no Kafka broker answers: %s", reason);
		kafka_cluster_state(k, false);
		return;
	}
	if (k->host->log_enabled(CAD_LOG_DEBUG))
		k->host->log(k->ctx, CAD_LOG_DEBUG, "Kafka: %s: %s",
			     rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* librdkafka's own log lines, from any of its threads. */
static void kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	struct kafka *k = rd_kafka_opaque(rk);
	enum cad_log_level l = level <= 3   ? CAD_LOG_ERROR
			       : level == 4 ? CAD_LOG_WARN
			       : level <= 6 ? CAD_LOG_INFO
					    : CAD_LOG_DEBUG;
	if (k && k->host->log_enabled(l))
		k->host->log(k->ctx, l, "librdkafka %s: %s", fac, buf);
}

/* ------------------------------------------------------------ the poller */

/* Produce again every parked message whose time has come. */
static void kafka_resend_due(struct kafka *k)
{
	int64_t now = cad_clock_mono_ns();
	pthread_mutex_lock(&k->lock);
	size_t n = 0;
	struct cad_msg **due = k->n_parked ? malloc(k->n_parked * sizeof(*due)) : NULL;
	for (size_t i = 0; due && i < k->n_parked;) {
		if (k->closing || k->parked[i].retry_at_ns > now) {
			i++;
			continue;
		}
		due[n++] = k->parked[i].msg;
		k->parked[i] = k->parked[--k->n_parked];
	}
	pthread_mutex_unlock(&k->lock);
	for (size_t i = 0; i < n; i++) {
		struct cad_msg *m = due[i];
		size_t len;
		m->attempts++;
		k->host->count_retry(k->ctx);
		if (kafka_envelope(k, &k->env, &k->env_cap, &len, m) != 0)
			kafka_settle(k, m, -ENOMEM, "encode_failed");
		else
			kafka_send(k, m, k->env, len);
	}
	free(due);
}

/* Whether records wait in librdkafka with no report for a while. */
static bool kafka_stalled(struct kafka *k)
{
	pthread_mutex_lock(&k->lock);
	bool held = k->held > (long)k->n_parked;
	pthread_mutex_unlock(&k->lock);
	return held && cad_clock_mono_ns() - k->last_report_ns > PROBE_EVERY_NS;
}

/* While the cluster or the topic is away, or records wait without a
 * report: ask for the topic's metadata once a second. The answer also
 * updates librdkafka's view, which learns so that a topic appeared, or
 * that one it saw refused is writable again. */
static void kafka_probe(struct kafka *k)
{
	if (cad_clock_mono_ns() < k->next_probe_ns ||
	    (k->cluster_up && k->cluster_reported && !k->topic_missing && !kafka_stalled(k)))
		return;
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err = rd_kafka_metadata(k->rk, 0, k->rkt, &md, PROBE_TIMEOUT_MS);
	k->next_probe_ns = cad_clock_mono_ns() + PROBE_EVERY_NS;
	if (err) {
		if (!k->cluster_reported)
			k->host->log(k->ctx, CAD_LOG_WARN,
				     "no Kafka broker of %s answers (%s); retrying", k->set.brokers,
				     rd_kafka_err2str(err));
		kafka_cluster_state(k, false);
		return;
	}
	kafka_cluster_state(k, true);
	if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
	    k->topic_missing) {
		kafka_topic_state(k, false);
		/* What waited for the topic goes now. */
		pthread_mutex_lock(&k->lock);
		for (size_t i = 0; i < k->n_parked; i++)
			k->parked[i].retry_at_ns = 0;
		pthread_mutex_unlock(&k->lock);
	}
	rd_kafka_metadata_destroy(md);
}

/* Serve the old producer's reports until it holds nothing. */
static void kafka_drain_producer(rd_kafka_t *rk)
{
	int64_t until = cad_clock_mono_ns() + PURGE_WAIT_NS;
	while (rd_kafka_outq_len(rk) > 0 && cad_clock_mono_ns() < until)
		rd_kafka_poll(rk, POLL_MS);
}

/* After a fatal error: a new producer, and everything the old one did not
 * report stored produced again into it. */
static void kafka_rebuild(struct kafka *k)
{
	char why[512] = "";
	rd_kafka_fatal_error(k->rk, why, sizeof(why));
	k->rebuilds++;
	k->host->log(
		k->ctx, CAD_LOG_ERROR,
		"the Kafka producer failed for good (%s): building a new one and producing again what it did not store (%" PRIu64
		" times so far)",
		why, k->rebuilds);
	kafka_cluster_state(k, false);
	rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	kafka_drain_producer(k->rk);
	rd_kafka_topic_t *rkt = NULL;
	rd_kafka_t *rk = kafka_producer_new(k, &rkt);
	if (!rk)
		return; /* tried again on the next turn */
	pthread_rwlock_wrlock(&k->rk_lock);
	rd_kafka_t *old = k->rk;
	rd_kafka_topic_t *old_rkt = k->rkt;
	k->rk = rk;
	k->rkt = rkt;
	pthread_rwlock_unlock(&k->rk_lock);
	atomic_store(&k->fatal, false);
	/* A record a worker produced meanwhile was refused with __FATAL. */
	kafka_drain_producer(old);
	rd_kafka_topic_destroy(old_rkt);
	rd_kafka_destroy(old);
	k->cluster_reported = false;
	k->next_probe_ns = 0;
}

/* Records waiting in librdkafka with no delivery report for ack_timeout:
 * the cluster has stopped answering though the connection may look up.
 * Reported as the state "cluster acknowledgements", from its first stall
 * on; poller thread. */
static void kafka_watch_stall(struct kafka *k)
{
	pthread_mutex_lock(&k->lock);
	long waiting = k->held - (long)k->n_parked;
	pthread_mutex_unlock(&k->lock);
	int64_t now = cad_clock_mono_ns();
	if (waiting <= 0)
		k->last_report_ns = now; /* silence counts from the first record */
	bool stalled = waiting > 0 && now - k->last_report_ns > k->set.stall_after_ns;
	if (stalled == k->stalled)
		return;
	k->stalled = stalled;
	if (stalled)
		k->host->log(
			k->ctx, CAD_LOG_WARN,
			"cluster acknowledgements: %ld records held and no delivery report for "
			"%lld ms: the stream side is stalled",
			waiting, (long long)((now - k->last_report_ns) / CAD_NS_PER_MS));
	k->host->conn_state(k->ctx, "cluster acknowledgements", !stalled);
}

static void *kafka_poller(void *arg)
{
	struct kafka *k = arg;
	while (!atomic_load(&k->stop)) {
		if (atomic_load(&k->fatal))
			kafka_rebuild(k);
		rd_kafka_poll(k->rk, POLL_MS);
		kafka_resend_due(k);
		kafka_probe(k);
		kafka_watch_stall(k);
	}
	return NULL;
}

/* ------------------------------------------------------------ instance */

static void kafka_destroy(void *instance)
{
	struct kafka *k = instance;
	if (!k)
		return;
	if (k->poller_started) {
		atomic_store(&k->stop, true);
		pthread_join(k->poller, NULL);
	}
	if (k->rk) {
		/* Every worker gave back what it held; serve what is left. */
		rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		kafka_drain_producer(k->rk);
		rd_kafka_topic_destroy(k->rkt);
		rd_kafka_destroy(k->rk);
	}
	for (size_t i = 0; i < k->n_parked; i++)
		k->host->msg_done(k->ctx, k->parked[i].msg, -ETIMEDOUT, "shutdown");
	free(k->parked);
	free(k->env);
	kafka_settings_clear(&k->set);
	pthread_cond_destroy(&k->room);
	pthread_mutex_destroy(&k->lock);
	pthread_rwlock_destroy(&k->rk_lock);
	free(k);
}

static int kafka_create(void **instance, const struct cad_host *host, struct cad_context *ctx,
			const struct cad_config *cfg)
{
	struct kafka *k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->host = host;
	k->ctx = ctx;
	pthread_mutex_init(&k->lock, NULL);
	pthread_rwlock_init(&k->rk_lock, NULL);
	pacing_cond_init(&k->room);
	int rc = kafka_settings_read(&k->set, host, ctx, cfg);
	if (envelope_label_read(&k->label, host, cfg) != 0)
		rc = -EINVAL;
	if (rc != 0) {
		kafka_destroy(k);
		return rc;
	}
	k->low_water = publish_window_low_water(k->set.window);
	*instance = k;
	return 0;
}

static int kafka_start(void *instance)
{
	struct kafka *k = instance;
	k->rk = kafka_producer_new(k, &k->rkt);
	if (!k->rk)
		return -EINVAL;
	int rc = pthread_create(&k->poller, NULL, kafka_poller, k);
	if (rc != 0) {
		k->host->log(k->ctx, CAD_LOG_ERROR, "cannot start the Kafka poller: %s",
			     strerror(rc));
		return -rc;
	}
	k->poller_started = true;
	k->host->log(k->ctx, CAD_LOG_INFO, "producing to topic %s on %s", k->set.topic,
		     k->set.brokers);
	return 0;
}

static void kafka_describe(void *instance, char *buf, size_t len)
{
	struct kafka *k = instance;
	snprintf(buf, len, "brokers %s, topic %s, compression %s, %s, at most %ld unreported",
		 k->set.brokers, k->set.topic, k->set.compression, k->set.security, k->set.window);
}

/* ------------------------------------------------------------ workers */

/* 0 while running; the drain deadline once the adapter stops. */
static int64_t kafka_drain_deadline(const struct kafka *k)
{
	return k->host->abi_minor >= 1 ? k->host->drain_deadline(k->ctx) : 0;
}

static void kafka_publish(void *worker, struct cad_msg *m)
{
	struct kafka_worker *w = worker;
	struct kafka *k = w->k;
	size_t len;
	int rc = kafka_envelope(k, &w->env, &w->env_cap, &len, m);
	if (rc != 0) {
		/* The host logs the loss, with the sender made printable. */
		k->host->msg_done(k->ctx, m, rc, "encode_failed");
		return;
	}
	m->attempts = 1;
	pthread_mutex_lock(&k->lock);
	while (k->held >= k->set.window) {
		int64_t deadline = kafka_drain_deadline(k);
		if (deadline && cad_clock_mono_ns() >= deadline) {
			/* Draining, and no room came: this one is not sent. */
			pthread_mutex_unlock(&k->lock);
			k->host->msg_done(k->ctx, m, -ETIMEDOUT, "shutdown");
			return;
		}
		pacing_cond_wait(&k->room, &k->lock, deadline);
	}
	k->held++;
	pthread_mutex_unlock(&k->lock);
	kafka_send(k, m, w->env, len);
}

static int kafka_worker_open(void **out, void *instance, unsigned index)
{
	(void)index;
	struct kafka *k = instance;
	struct kafka_worker *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->k = k;
	pthread_mutex_lock(&k->lock);
	k->open_workers++;
	pthread_mutex_unlock(&k->lock);
	*out = w;
	return 0;
}

/* The last worker out: what is parked is lost, what librdkafka still
 * holds is purged, and its reports, served by the poller, say lost. */
static void kafka_give_up(struct kafka *k)
{
	pthread_mutex_lock(&k->lock);
	k->closing = true;
	struct kafka_parked *parked = k->parked;
	size_t n = k->n_parked;
	k->parked = NULL;
	k->n_parked = k->cap_parked = 0;
	pthread_mutex_unlock(&k->lock);
	for (size_t i = 0; i < n; i++)
		kafka_settle(k, parked[i].msg, -ETIMEDOUT, "shutdown");
	free(parked);

	int64_t until = cad_clock_mono_ns() + PURGE_WAIT_NS;
	pthread_mutex_lock(&k->lock);
	while (k->held > 0 && cad_clock_mono_ns() < until) {
		pthread_mutex_unlock(&k->lock);
		/* Again at each turn: a resend may have been under way. */
		pthread_rwlock_rdlock(&k->rk_lock);
		rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
					      RD_KAFKA_PURGE_F_NON_BLOCKING);
		pthread_rwlock_unlock(&k->rk_lock);
		pthread_mutex_lock(&k->lock);
		if (k->held > 0)
			pacing_cond_wait(&k->room, &k->lock, until);
	}
	long left = k->held;
	pthread_mutex_unlock(&k->lock);
	if (left)
		k->host->log(k->ctx, CAD_LOG_ERROR,
			     "librdkafka did not report %ld records it held; they are not counted",
			     left);
}

/* Every worker waits for the window to empty until the deadline; the last
 * one out gives up what is still unreported. */
static void kafka_worker_close(void *worker, int64_t deadline_ns)
{
	struct kafka_worker *w = worker;
	struct kafka *k = w->k;
	pthread_mutex_lock(&k->lock);
	while (k->held > 0 && cad_clock_mono_ns() < deadline_ns)
		pacing_cond_wait(&k->room, &k->lock, deadline_ns);
	bool last = --k->open_workers == 0;
	pthread_mutex_unlock(&k->lock);
	if (last)
		kafka_give_up(k);
	free(w->env);
	free(w);
}

static const struct cad_module kafka_module = {
	.abi_major = CAD_ABI_MAJOR,
	.abi_minor = CAD_ABI_MINOR,
	.size = sizeof(struct cad_module),
	.kind = CAD_KIND_STREAM,
	.type = "kafka",
	.version = PACKAGE_VERSION,
	.summary = "produce envelopes to Kafka, idempotent, counted published on Kafka's report",
	.options = kafka_options,
	.create = kafka_create,
	.start = kafka_start,
	.destroy = kafka_destroy,
	.describe = kafka_describe,
	.worker_open = kafka_worker_open,
	.publish = kafka_publish,
	.worker_close = kafka_worker_close,
};

CAD_EXPORT const struct cad_module *cad_module_entry(void);
CAD_EXPORT const struct cad_module *cad_module_entry(void)
{
	return &kafka_module;
}
