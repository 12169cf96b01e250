/* SPDX-License-Identifier: Apache-2.0 */
#include "publish_window.h"

#include <errno.h>
#include <stdio.h>

#include "pacing.h"

void publish_window_opts_read(struct publish_window_opts *o, const struct cad_host *host,
			      const struct cad_config *cfg)
{
	o->max_inflight = host->cfg_int(cfg, "max_inflight");
	o->ack_timeout_ms = host->cfg_int(cfg, "ack_timeout") * 1000;
	o->retry_max_ms = host->cfg_int(cfg, "retry_max_interval") * 1000;
}

long publish_window_low_water(long size)
{
	return size - (size >= 4 ? size / 4 : 1);
}

void publish_window_init(struct publish_window *pw, const struct cad_host *host,
			 struct cad_context *ctx, const struct publish_window_ops *ops)
{
	*pw = (struct publish_window){.host = host, .ctx = ctx, .ops = ops};
	atomic_store(&pw->watch_ns, INT64_MAX);
	pthread_mutex_init(&pw->lock, NULL);
	pacing_cond_init(&pw->room);
}

void publish_window_destroy(struct publish_window *pw)
{
	pthread_cond_destroy(&pw->room);
	pthread_mutex_destroy(&pw->lock);
}

void publish_window_size(struct publish_window *pw, const struct publish_window_opts *o, long size,
			 bool time_out)
{
	pw->size = size;
	pw->low_water = publish_window_low_water(size);
	pw->retry_max_ms = o->retry_max_ms;
	pw->ack_timeout_ns = time_out ? o->ack_timeout_ms * CAD_NS_PER_MS : 0;
	/* An unanswered publish is sent again at most an eighth of its
	 * timeout late. */
	pw->scan_every_ns = pw->ack_timeout_ns / 8;
	pw->stall_after_ns = o->ack_timeout_ms * CAD_NS_PER_MS;
	pw->watch_every_ns = pw->stall_after_ns / 8;
}

void publish_window_report_stalls(struct publish_window *pw, const char *name)
{
	snprintf(pw->stall_name, sizeof(pw->stall_name), "%s", name);
	pw->answered_ns = cad_clock_mono_ns();
	atomic_store(&pw->watch_ns, 0);
}

/*
 * A watch sees answers only once they have happened, and a publish may
 * have come right after the last watch that saw the window empty: the
 * silence is called a stall one watch period late rather than early.
 * The state is reported under the lock, so that two workers sharing the
 * window cannot report it in the wrong order.
 */
static void publish_window_watch(struct publish_window *pw, int64_t now)
{
	pthread_mutex_lock(&pw->lock);
	if (now < atomic_load(&pw->watch_ns)) {
		pthread_mutex_unlock(&pw->lock); /* another worker watched */
		return;
	}
	atomic_store(&pw->watch_ns, now + pw->watch_every_ns);
	int64_t silent_ns = now - pw->answered_ns;
	if (pw->used == 0 || pw->answered != pw->answered_seen) {
		pw->answered_seen = pw->answered;
		pw->answered_ns = now;
		silent_ns = 0;
	}
	bool stalled = silent_ns >= pw->stall_after_ns + pw->watch_every_ns;
	if (stalled != pw->stalled) {
		pw->stalled = stalled;
		if (stalled)
			pw->host->log(pw->ctx, CAD_LOG_WARN,
				      "%s: %zu publishes held and none answered for %lld"
				      " ms: the stream side is stalled",
				      pw->stall_name, pw->used,
				      (long long)(silent_ns / CAD_NS_PER_MS));
		pw->host->conn_state(pw->ctx, pw->stall_name, !stalled);
	}
	pthread_mutex_unlock(&pw->lock);
}

void publish_window_check_stall(struct publish_window *pw)
{
	int64_t now = cad_clock_mono_ns();
	if (now >= atomic_load_explicit(&pw->watch_ns, memory_order_relaxed))
		publish_window_watch(pw, now);
}

void publish_window_places(struct publish_window *pw, struct publish_window_entry *first,
			   size_t stride, size_t n)
{
	pw->places = (char *)first;
	pw->stride = stride;
	pw->n_places = n;
}

static struct publish_window_entry *publish_window_place(const struct publish_window *pw, size_t i)
{
	return (struct publish_window_entry *)(pw->places + i * pw->stride);
}

/* 0 while running; the drain deadline once the adapter stops. */
static int64_t publish_window_drain_deadline(const struct publish_window *pw)
{
	return pw->host->abi_minor >= 1 ? pw->host->drain_deadline(pw->ctx) : 0;
}

bool publish_window_wait_room_locked(struct publish_window *pw, void *owner)
{
	while ((long)pw->used >= pw->size) {
		int64_t deadline = publish_window_drain_deadline(pw);
		if (deadline && cad_clock_mono_ns() >= deadline) {
			pthread_mutex_unlock(&pw->lock);
			return false;
		}
		pthread_mutex_unlock(&pw->lock);
		pw->ops->service(owner, true);
		pthread_mutex_lock(&pw->lock);
		if ((long)pw->used < pw->size)
			break;
		pacing_cond_wait(&pw->room, &pw->lock, 0);
	}
	return true;
}

void publish_window_add_locked(struct publish_window *pw, struct publish_window_entry *e,
			       struct cad_msg *m, bool in_flight)
{
	e->msg = m;
	pw->used++;
	if (in_flight) {
		m->attempts = 1;
		e->retry_at_ns = 0;
		if (pw->ack_timeout_ns)
			e->sent_ns = cad_clock_mono_ns();
		return;
	}
	m->attempts = 0;
	e->retry_at_ns = PUBLISH_WINDOW_NOW;
	pw->waiting++;
	atomic_store(&pw->due_ns, 0);
}

struct cad_msg *publish_window_remove_locked(struct publish_window *pw,
					     struct publish_window_entry *e)
{
	struct cad_msg *m = e->msg;
	if (e->retry_at_ns)
		pw->waiting--;
	pw->used--;
	/* Publishers wait only on a full window: wake them all at its low
	 * water, not one per acknowledgement. An empty window wakes the
	 * closing workers too. */
	if (pw->used == 0 || (long)pw->used == pw->low_water)
		pthread_cond_broadcast(&pw->room);
	return m;
}

void publish_window_done_unlock(struct publish_window *pw, struct cad_msg *m, int status,
				const char *reason)
{
	pw->answered++;
	atomic_fetch_add(&pw->settling, 1);
	pthread_mutex_unlock(&pw->lock);
	pw->host->msg_done(pw->ctx, m, status, reason);
	atomic_fetch_sub(&pw->settling, 1);
}

void publish_window_park_locked(struct publish_window *pw, struct publish_window_entry *e)
{
	int64_t delay_ms = pacing_backoff_ms(PUBLISH_WINDOW_RETRY_FIRST_MS, pw->retry_max_ms,
					     e->msg->attempts);
	e->retry_at_ns = cad_clock_mono_ns() + delay_ms * CAD_NS_PER_MS;
	pw->waiting++;
	if (e->retry_at_ns < atomic_load(&pw->due_ns))
		atomic_store(&pw->due_ns, e->retry_at_ns);
	pthread_cond_broadcast(&pw->room);
}

bool publish_window_unpark_locked(struct publish_window *pw, struct publish_window_entry *e)
{
	if (e->retry_at_ns) {
		pw->waiting--;
		e->retry_at_ns = 0;
	}
	if (pw->ack_timeout_ns)
		e->sent_ns = cad_clock_mono_ns();
	return ++e->msg->attempts > 1;
}

void publish_window_due_now_locked(struct publish_window *pw)
{
	for (size_t i = 0; pw->waiting && i < pw->n_places; i++) {
		struct publish_window_entry *e = publish_window_place(pw, i);
		if (e->msg && e->retry_at_ns)
			e->retry_at_ns = PUBLISH_WINDOW_NOW;
	}
	atomic_store(&pw->due_ns, 0);
}

/*
 * One pass over the entries; while a resend has the lock released, a
 * module whose table moves entries on deletion may shift one behind the
 * pass, which then waits for the next.
 */
size_t publish_window_resend_due(struct publish_window *pw, void *owner)
{
	int64_t t = cad_clock_mono_ns();
	if (t >= atomic_load_explicit(&pw->watch_ns, memory_order_relaxed))
		publish_window_watch(pw, t);
	if (t < atomic_load_explicit(&pw->due_ns, memory_order_relaxed))
		return 0;
	pthread_mutex_lock(&pw->lock);
	int64_t now = cad_clock_mono_ns();
	bool scan = pw->scan_every_ns && now >= pw->next_scan_ns;
	if (scan)
		pw->next_scan_ns = now + pw->scan_every_ns;
	int64_t sent_before = now - pw->ack_timeout_ns;
	/* Entries parked while a resend has the lock released lower it. */
	atomic_store(&pw->due_ns, INT64_MAX);
	int64_t next_retry = INT64_MAX;
	size_t expired = 0;
	bool sending = true;
	for (size_t i = 0; sending && (scan || pw->waiting) && i < pw->n_places; i++) {
		struct publish_window_entry *e = publish_window_place(pw, i);
		if (!e->msg)
			continue;
		if (scan && !e->retry_at_ns && e->sent_ns <= sent_before) {
			publish_window_park_locked(pw, e);
			expired++;
		}
		if (!e->retry_at_ns)
			continue;
		if (e->retry_at_ns > now) {
			if (e->retry_at_ns < next_retry)
				next_retry = e->retry_at_ns;
			continue;
		}
		sending = pw->ops->resend_locked(owner, e);
		now = cad_clock_mono_ns();
	}
	if (!sending && pw->waiting)
		next_retry = 0; /* cut short: the rest were not looked at */
	if (pw->scan_every_ns && pw->next_scan_ns < next_retry)
		next_retry = pw->next_scan_ns;
	if (next_retry < atomic_load(&pw->due_ns))
		atomic_store(&pw->due_ns, next_retry);
	pthread_mutex_unlock(&pw->lock);
	return expired;
}

void publish_window_give_up_locked(struct publish_window *pw, void *owner, bool parked_only)
{
	/* A module's deletion may fill place i from later places: look at
	 * it again. */
	for (size_t i = 0; pw->used && i < pw->n_places;) {
		struct publish_window_entry *e = publish_window_place(pw, i);
		if (!e->msg || (parked_only && !e->retry_at_ns)) {
			i++;
			continue;
		}
		pw->ops->settle_unlock(owner, e, -ETIMEDOUT, "shutdown");
		pthread_mutex_lock(&pw->lock);
	}
}

void publish_window_drain(struct publish_window *pw, void *owner, int64_t deadline_ns)
{
	for (;;) {
		pw->ops->service(owner, cad_clock_mono_ns() < deadline_ns);
		pthread_mutex_lock(&pw->lock);
		size_t left = pw->used + atomic_load(&pw->settling);
		if (left && cad_clock_mono_ns() < deadline_ns)
			pacing_cond_wait(&pw->room, &pw->lock, deadline_ns);
		pthread_mutex_unlock(&pw->lock);
		if (!left || cad_clock_mono_ns() >= deadline_ns)
			break;
	}
}

void publish_window_wait_settled(struct publish_window *pw)
{
	const struct timespec ms = {.tv_nsec = 1000000};
	while (atomic_load(&pw->settling))
		nanosleep(&ms, NULL);
}
