/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `http` stream module: sends each message's envelope, or a batch of
 * them as newline-delimited JSON, to an HTTP endpoint, and gives the
 * messages back to the host only from the endpoint's answer: a 2xx
 * publishes them, a status that may pass (408, 425, 429, 5xx but 501) or
 * no answer at all sends the same request again after a capped, jittered
 * backoff or the server's Retry-After, any other status loses them with
 * the reason http_<status>.
 *
 * Each worker owns a libcurl multi handle and a pump thread that drives
 * it, so that one worker keeps up to max_inflight requests in flight over
 * reused connections. publish() only queues the message in the worker's
 * inbox and wakes the pump; it blocks while the worker holds a full window
 * of max_inflight x batch_max messages (retries included), so that an
 * endpoint that is away fills the adapter's queue, which drops the newest.
 *
 * Concurrency & locking: `lock` guards the inbox, `held`, `closing` and
 * the deadline; `room` is broadcast when `held` falls to its low water or
 * to zero. Everything else of a worker (the open batch, the requests, the
 * multi handle) is its pump thread's alone. host->msg_done() is called
 * outside the lock. The instance's `state_lock` orders the endpoint's
 * state reports of the workers.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <choria-adapterd/cad_clock.h>
#include <choria-adapterd/cad_module.h>
#include <choria-adapterd/cad_ratelimit.h>
#include <choria-adapterd/cad_text.h>

#include "envelope.h"
#include "http_answer.h"
#include "http_conf.h"
#include "http_request.h"
#include "pacing.h"
#include "publish_window.h"

/* The longest the pump sleeps: it also notices a closing worker by its
 * wakeup, this is only a bound. */
#define HTTP_POLL_MAX_MS 100

struct http {
	const struct cad_host *host;
	struct cad_context *ctx;
	struct http_settings set;
	struct envelope_label label; /* output_protocol */
	char user_agent[64];
	long window, low_water; /* messages per worker */
	bool curl_ready;
	struct cad_ratelimit warn_limit, loss_limit, state_limit;
	pthread_mutex_t state_lock;
	bool state_known, state_up;
};

/* The batch being filled: messages and their envelopes, one a line. */
struct http_batch {
	struct cad_msg **msgs;
	size_t n;
	char *body;
	size_t len, cap;
	int64_t first_ns;
};

struct http_worker {
	struct http *h;
	CURLM *multi;
	pthread_t pump;
	bool pump_started;

	pthread_mutex_t lock;
	pthread_cond_t room;
	struct cad_msg **inbox; /* a ring of `window` places */
	size_t in_head, in_n;
	long held; /* in the inbox, the open batch or a request */
	bool closing;
	int64_t deadline_ns;

	/* The pump thread's own: */
	struct http_batch open;
	struct http_req **reqs; /* in the order they were made */
	size_t n_reqs, cap_reqs;
	long active;
	uint64_t seed;
	struct cad_msg **taken;
};

/* ------------------------------------------------------------ custody */

static void http_settle(struct http_worker *w, struct cad_msg *m, int status, const char *reason)
{
	struct http *h = w->h;
	h->host->msg_done(h->ctx, m, status, reason);
	pthread_mutex_lock(&w->lock);
	w->held--;
	if (w->held == 0 || w->held == h->low_water)
		pthread_cond_broadcast(&w->room);
	pthread_mutex_unlock(&w->lock);
}

/* The endpoint's state for /healthz and the metrics: reported when it
 * changes, whichever worker saw the answer; logged at most once every
 * 5 s, since an endpoint that fails now and then flips it often. */
static void http_state(struct http *h, bool up, const char *why)
{
	pthread_mutex_lock(&h->state_lock);
	if (!h->state_known || h->state_up != up) {
		bool say = cad_ratelimit_allow(&h->state_limit, PACING_WARN_EVERY_NS, NULL);
		if (say && up && h->state_known)
			h->host->log(h->ctx, CAD_LOG_INFO, "%s answers again", h->set.shown);
		else if (say && !up)
			h->host->log(h->ctx, CAD_LOG_WARN, "%s fails: %s", h->set.shown, why);
		h->state_known = true;
		h->state_up = up;
		h->host->conn_state(h->ctx, h->set.endpoint, up);
	}
	pthread_mutex_unlock(&h->state_lock);
}

/* ------------------------------------------------------------ batches */

static void http_batch_reset(struct http_batch *b)
{
	b->msgs = NULL;
	b->n = 0;
	b->body = NULL;
	b->len = b->cap = 0;
	b->first_ns = 0;
}

/* Close the open batch into a request that starts at once. */
static void http_flush(struct http_worker *w)
{
	struct http *h = w->h;
	struct http_batch *b = &w->open;
	if (b->n == 0)
		return;
	struct http_req *r = NULL;
	if (w->n_reqs == w->cap_reqs) {
		size_t cap = w->cap_reqs ? 2 * w->cap_reqs : 16;
		struct http_req **q = realloc(w->reqs, cap * sizeof(*q));
		if (q) {
			w->reqs = q;
			w->cap_reqs = cap;
		}
	}
	if (w->n_reqs < w->cap_reqs)
		r = http_req_new(&h->set, h->user_agent, b->msgs, b->n, b->body, b->len);
	if (!r) {
		for (size_t i = 0; i < b->n; i++)
			http_settle(w, b->msgs[i], -ENOMEM, "out_of_memory");
		free(b->msgs);
		free(b->body);
	} else {
		w->reqs[w->n_reqs++] = r;
	}
	http_batch_reset(b);
}

/* Add m's envelope to the open batch, which is sent when full. */
static void http_batch_add(struct http_worker *w, struct cad_msg *m)
{
	struct http *h = w->h;
	struct http_batch *b = &w->open;
	if (h->set.per_sender && b->n &&
	    (b->msgs[0]->sender_len != m->sender_len ||
	     memcmp(b->msgs[0]->sender, m->sender, m->sender_len) != 0))
		http_flush(w); /* a batch goes to one sender's url */
	if (!b->msgs && !(b->msgs = malloc((size_t)h->set.batch_max * sizeof(*b->msgs)))) {
		http_settle(w, m, -ENOMEM, "out_of_memory");
		return;
	}
	size_t need = b->len + envelope_max_len(&h->label, m) + 1;
	if (need > b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 1024;
		while (cap < need)
			cap *= 2;
		char *body = realloc(b->body, cap);
		if (!body) {
			http_settle(w, m, -ENOMEM, "out_of_memory");
			return;
		}
		b->body = body;
		b->cap = cap;
	}
	size_t len;
	int rc = envelope_write(b->body + b->len, b->cap - b->len, &len, &h->label, m);
	if (rc != 0) {
		/* The host logs the loss, with the sender made printable. */
		http_settle(w, m, rc, "encode_failed");
		return;
	}
	b->len += len;
	if (h->set.batch_max > 1)
		b->body[b->len++] = '\n';
	if (b->n == 0)
		b->first_ns = cad_clock_mono_ns();
	b->msgs[b->n++] = m;
	if (b->n == (size_t)h->set.batch_max)
		http_flush(w);
}

/* ------------------------------------------------------------ requests */

static void http_req_remove(struct http_worker *w, size_t i)
{
	http_req_free(w->reqs[i]);
	memmove(&w->reqs[i], &w->reqs[i + 1], (w->n_reqs - i - 1) * sizeof(*w->reqs));
	w->n_reqs--;
}

/* Start what is ready or due, oldest first, while there is room. */
static void http_start_due(struct http_worker *w)
{
	struct http *h = w->h;
	int64_t now = cad_clock_mono_ns();
	for (size_t i = 0; i < w->n_reqs && w->active < h->set.max_inflight; i++) {
		struct http_req *r = w->reqs[i];
		if (r->active || r->retry_at_ns > now)
			continue;
		if (r->attempts > 0)
			for (size_t j = 0; j < r->n; j++)
				h->host->count_retry(h->ctx);
		http_req_rearm(r);
		if (curl_multi_add_handle(w->multi, r->easy) != CURLM_OK) {
			r->retry_at_ns = now + 100 * CAD_NS_PER_MS;
			continue;
		}
		r->attempts++;
		r->active = true;
		w->active++;
	}
}

/* The Retry-After the answer carried, in ms; -1 when none could be read. */
static int64_t http_answer_retry_after(struct http_req *r)
{
	struct curl_header *hd = NULL;
	if (curl_easy_header(r->easy, "Retry-After", 0, CURLH_HEADER, -1, &hd) != CURLHE_OK)
		return -1;
	return http_retry_after_ms(hd->value, time(NULL));
}

static void http_answered(struct http_worker *w, size_t i, CURLcode result)
{
	struct http *h = w->h;
	struct http_req *r = w->reqs[i];
	long status = 0;
	if (result == CURLE_OK)
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	switch (http_verdict_of(status)) {
	case HTTP_PUBLISHED:
		http_state(h, true, NULL);
		for (size_t j = 0; j < r->n; j++)
			http_settle(w, r->msgs[j], 0, NULL);
		http_req_remove(w, i);
		return;
	case HTTP_RETRY: {
		int64_t ms = status ? http_answer_retry_after(r) : -1;
		if (ms < 0)
			ms = http_backoff_ms(r->attempts, h->set.retry_max_s * 1000, &w->seed);
		char why[CURL_ERROR_SIZE + 64];
		if (status)
			snprintf(why, sizeof(why), "it answered %ld", status);
		else
			snprintf(why, sizeof(why), "%s",
				 r->err[0] ? r->err : curl_easy_strerror(result));
		cad_text_scrub(why);
		http_state(h, false, why);
		pacing_warn(h->host, h->ctx, &h->warn_limit,
			    "%s: %s; sending %zu messages again in %" PRId64 " ms", h->set.shown,
			    why, r->n, ms);
		r->retry_at_ns = cad_clock_mono_ns() + (ms > 0 ? ms : 1) * CAD_NS_PER_MS;
		return;
	}
	case HTTP_LOST: {
		char reason[16], line[HTTP_LINE_MAX], why[64];
		snprintf(reason, sizeof(reason), "http_%ld", status);
		snprintf(why, sizeof(why), "it answered %ld", status);
		http_state(h, false, why);
		uint64_t suppressed;
		if (cad_ratelimit_allow(&h->loss_limit, PACING_WARN_EVERY_NS, &suppressed))
			h->host->log(h->ctx, CAD_LOG_WARN,
				     "%s answered %ld: %zu messages lost: \"%s\" (%" PRIu64
				     " more answers like it not logged)",
				     h->set.shown, status, r->n,
				     cad_text_printable(line, sizeof(line), r->line, r->line_len),
				     suppressed);
		for (size_t j = 0; j < r->n; j++)
			http_settle(w, r->msgs[j], -EPROTO, reason);
		http_req_remove(w, i);
		return;
	}
	}
}

/* Read every finished transfer's outcome. */
static void http_reap(struct http_worker *w)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(w->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		CURL *e = msg->easy_handle;
		CURLcode result = msg->data.result;
		curl_multi_remove_handle(w->multi, e);
		w->active--;
		for (size_t i = 0; i < w->n_reqs; i++)
			if (w->reqs[i]->easy == e) {
				w->reqs[i]->active = false;
				http_answered(w, i, result);
				break;
			}
	}
}

/* How long the pump may sleep: until libcurl's next timeout, the open
 * batch's time, the next retry or the deadline. */
static long http_wait_ms(struct http_worker *w, bool closing, int64_t deadline)
{
	int64_t now = cad_clock_mono_ns(), until = now + HTTP_POLL_MAX_MS * CAD_NS_PER_MS;
	long t = -1;
	if (curl_multi_timeout(w->multi, &t) == CURLM_OK && t >= 0 &&
	    now + t * CAD_NS_PER_MS < until)
		until = now + t * CAD_NS_PER_MS;
	if (w->open.n) {
		int64_t due = w->open.first_ns + w->h->set.batch_wait_ms * CAD_NS_PER_MS;
		if (due < until)
			until = due;
	}
	for (size_t i = 0; i < w->n_reqs; i++)
		if (!w->reqs[i]->active && w->reqs[i]->retry_at_ns < until)
			until = w->reqs[i]->retry_at_ns;
	if (closing && deadline < until)
		until = deadline;
	return until > now ? (long)((until - now + CAD_NS_PER_MS - 1) / CAD_NS_PER_MS) : 0;
}

/* The worker is done: what it still holds is lost to the shutdown. */
static void http_give_up(struct http_worker *w)
{
	for (size_t i = 0; i < w->n_reqs; i++) {
		struct http_req *r = w->reqs[i];
		if (r->active)
			curl_multi_remove_handle(w->multi, r->easy);
		for (size_t j = 0; j < r->n; j++)
			http_settle(w, r->msgs[j], -ETIMEDOUT, "shutdown");
		http_req_free(r);
	}
	w->n_reqs = 0;
	w->active = 0;
	for (size_t i = 0; i < w->open.n; i++)
		http_settle(w, w->open.msgs[i], -ETIMEDOUT, "shutdown");
	free(w->open.msgs);
	free(w->open.body);
	http_batch_reset(&w->open);
	pthread_mutex_lock(&w->lock);
	size_t n = w->in_n;
	for (size_t i = 0; i < n; i++)
		w->taken[i] = w->inbox[(w->in_head + i) % (size_t)w->h->window];
	w->in_n = 0;
	pthread_mutex_unlock(&w->lock);
	for (size_t i = 0; i < n; i++)
		http_settle(w, w->taken[i], -ETIMEDOUT, "shutdown");
}

static void *http_pump(void *arg)
{
	struct http_worker *w = arg;
	struct http *h = w->h;
	for (;;) {
		pthread_mutex_lock(&w->lock);
		size_t n = w->in_n;
		for (size_t i = 0; i < n; i++)
			w->taken[i] = w->inbox[(w->in_head + i) % (size_t)h->window];
		w->in_head = (w->in_head + n) % (size_t)h->window;
		w->in_n = 0;
		bool closing = w->closing;
		int64_t deadline = w->deadline_ns;
		long held = w->held;
		pthread_mutex_unlock(&w->lock);
		if (closing && (held == 0 || cad_clock_mono_ns() >= deadline))
			break;

		for (size_t i = 0; i < n; i++)
			http_batch_add(w, w->taken[i]);
		if (w->open.n &&
		    (closing || cad_clock_mono_ns() >=
					w->open.first_ns + h->set.batch_wait_ms * CAD_NS_PER_MS))
			http_flush(w);
		http_start_due(w);
		int running;
		curl_multi_perform(w->multi, &running);
		http_reap(w);
		http_start_due(w);
		curl_multi_poll(w->multi, NULL, 0, (int)http_wait_ms(w, closing, deadline), NULL);
	}
	http_give_up(w);
	return NULL;
}

/* ------------------------------------------------------------ workers */

/* 0 while running; the drain deadline once the adapter stops. */
static int64_t http_drain_deadline(const struct http *h)
{
	return h->host->abi_minor >= 1 ? h->host->drain_deadline(h->ctx) : 0;
}

static void http_publish(void *worker, struct cad_msg *m)
{
	struct http_worker *w = worker;
	struct http *h = w->h;
	pthread_mutex_lock(&w->lock);
	while (w->held >= h->window) {
		int64_t deadline = http_drain_deadline(h);
		if (deadline && cad_clock_mono_ns() >= deadline) {
			/* Draining, and no room came: this one is not sent. */
			pthread_mutex_unlock(&w->lock);
			h->host->msg_done(h->ctx, m, -ETIMEDOUT, "shutdown");
			return;
		}
		pacing_cond_wait(&w->room, &w->lock, deadline);
	}
	w->held++;
	w->inbox[(w->in_head + w->in_n++) % (size_t)h->window] = m;
	pthread_mutex_unlock(&w->lock);
	curl_multi_wakeup(w->multi);
}

static void http_worker_free(struct http_worker *w)
{
	if (w->multi)
		curl_multi_cleanup(w->multi);
	free(w->inbox);
	free(w->taken);
	free(w->reqs);
	pthread_cond_destroy(&w->room);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

static int http_worker_open(void **out, void *instance, unsigned index)
{
	struct http *h = instance;
	struct http_worker *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->h = h;
	pthread_mutex_init(&w->lock, NULL);
	pacing_cond_init(&w->room);
	w->seed = (uint64_t)cad_clock_mono_ns() ^ ((uint64_t)(index + 1) << 32) ^ (uintptr_t)w;
	w->inbox = malloc((size_t)h->window * sizeof(*w->inbox));
	w->taken = malloc((size_t)h->window * sizeof(*w->taken));
	w->multi = curl_multi_init();
	if (!w->inbox || !w->taken || !w->multi) {
		http_worker_free(w);
		return -ENOMEM;
	}
	int rc = pthread_create(&w->pump, NULL, http_pump, w);
	if (rc != 0) {
		h->host->log(h->ctx, CAD_LOG_ERROR, "cannot start worker %u's pump: %s", index,
			     strerror(rc));
		http_worker_free(w);
		return -rc;
	}
	*out = w;
	return 0;
}

/* Deliver what the worker holds, retries included, until the deadline;
 * the pump then gives up what is left. */
static void http_worker_close(void *worker, int64_t deadline_ns)
{
	struct http_worker *w = worker;
	pthread_mutex_lock(&w->lock);
	w->closing = true;
	w->deadline_ns = deadline_ns;
	pthread_mutex_unlock(&w->lock);
	curl_multi_wakeup(w->multi);
	pthread_join(w->pump, NULL);
	http_worker_free(w);
}

/* ------------------------------------------------------------ instance */

static void http_destroy(void *instance)
{
	struct http *h = instance;
	if (!h)
		return;
	http_settings_clear(&h->set);
	pthread_mutex_destroy(&h->state_lock);
	if (h->curl_ready)
		curl_global_cleanup();
	free(h);
}

static int http_create(void **instance, const struct cad_host *host, struct cad_context *ctx,
		       const struct cad_config *cfg)
{
	struct http *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->host = host;
	h->ctx = ctx;
	pthread_mutex_init(&h->state_lock, NULL);
	/*
	 * libcurl's global state is counted: each init is matched by the
	 * cleanup in destroy(), and only the last cleanup frees it. Both run
	 * on the main thread (create and destroy do), never beside another
	 * init, which is what curl_global_init(3) asks of a library that is
	 * not built thread-safe; one that is (CURL_VERSION_THREADSAFE)
	 * allows any thread.
	 */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		host->log(ctx, CAD_LOG_ERROR, "libcurl cannot start");
		http_destroy(h);
		return -ENOMEM;
	}
	h->curl_ready = true;
	int rc = http_settings_read(&h->set, host, cfg);
	if (envelope_label_read(&h->label, host, cfg) != 0 && rc == 0)
		rc = -EINVAL;
	if (rc != 0) {
		http_destroy(h);
		return rc;
	}
	snprintf(h->user_agent, sizeof(h->user_agent), "choria-adapterd/%s", PACKAGE_VERSION);
	h->window = h->set.max_inflight * h->set.batch_max;
	h->low_water = publish_window_low_water(h->window);
	*instance = h;
	return 0;
}

static int http_start(void *instance)
{
	struct http *h = instance;
	h->host->log(h->ctx, CAD_LOG_INFO, "sending to %s", h->set.shown);
	return 0;
}

static void http_describe(void *instance, char *buf, size_t len)
{
	struct http *h = instance;
	const struct http_settings *s = &h->set;
	char batch[64] = "one message a request";
	if (s->batch_max > 1)
		snprintf(batch, sizeof(batch), "batches of up to %ld within %ld ms", s->batch_max,
			 s->batch_wait_ms);
	snprintf(buf, len,
		 "%s %s, %u more headers, %s, at most %ld requests in flight, timeout %ld s%s",
		 s->method, s->shown, s->n_headers, batch, s->max_inflight, s->timeout_s,
		 s->tls_cert ? ", client certificate" : "");
}

static const struct cad_module http_module = {
	.abi_major = CAD_ABI_MAJOR,
	.abi_minor = CAD_ABI_MINOR,
	.size = sizeof(struct cad_module),
	.kind = CAD_KIND_STREAM,
	.type = "http",
	.version = PACKAGE_VERSION,
	.summary = "send envelopes to an HTTP endpoint, counted published on a 2xx answer",
	.options = http_options,
	.create = http_create,
	.start = http_start,
	.destroy = http_destroy,
	.describe = http_describe,
	.worker_open = http_worker_open,
	.publish = http_publish,
	.worker_close = http_worker_close,
};

CAD_EXPORT const struct cad_module *cad_module_entry(void);
CAD_EXPORT const struct cad_module *cad_module_entry(void)
{
	return &http_module;
}
