/* SPDX-License-Identifier: Apache-2.0 */
/* A stream module's publish window on its own: parking with backoff,
 * settling, resending what is due, timing out, giving up, waiting for
 * room and draining on close, against a stand-in host and module. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "pacing.h"
#include "publish_window.h"

#define N 8

/* The module's entry: the window's part is not first, as in the modules. */
struct t_entry {
	int id;
	struct publish_window_entry pw;
};

static struct {
	struct publish_window win;
	struct t_entry e[N];
	struct cad_msg msg[N];
	int done_status[N];
	const char *done_reason[N];
	int done;
	int resent[N];
	bool no_connection; /* resend_locked refuses */
	int services;
	bool last_in_time;
	bool settle_on_service; /* service() settles one message */
	int64_t deadline;       /* the host's drain deadline */
} t;

static void t_msg_done(struct cad_context *ctx, struct cad_msg *m, int status, const char *reason)
{
	(void)ctx;
	size_t i = (size_t)(m - t.msg);
	t.done_status[i] = status;
	t.done_reason[i] = reason;
	t.done++;
}

static int64_t t_drain_deadline(struct cad_context *ctx)
{
	(void)ctx;
	return t.deadline;
}

static const struct cad_host t_host = {
	.abi_major = CAD_ABI_MAJOR,
	.abi_minor = CAD_ABI_MINOR,
	.msg_done = t_msg_done,
	.drain_deadline = t_drain_deadline,
};

static void t_settle_unlock(void *owner, struct publish_window_entry *pe, int status,
			    const char *reason)
{
	(void)owner;
	struct cad_msg *m = publish_window_remove_locked(&t.win, pe);
	pe->msg = NULL;
	publish_window_done_unlock(&t.win, m, status, reason);
}

static void t_service(void *owner, bool in_time)
{
	t.services++;
	t.last_in_time = in_time;
	if (!t.settle_on_service)
		return;
	pthread_mutex_lock(&t.win.lock);
	for (int i = 0; i < N; i++) {
		if (t.e[i].pw.msg) {
			t_settle_unlock(owner, &t.e[i].pw, 0, NULL);
			return;
		}
	}
	pthread_mutex_unlock(&t.win.lock);
}

static bool t_resend_locked(void *owner, struct publish_window_entry *pe)
{
	(void)owner;
	if (t.no_connection)
		return false;
	struct t_entry *e = PUBLISH_WINDOW_OWNER(pe, struct t_entry, pw);
	publish_window_unpark_locked(&t.win, pe);
	t.resent[e->id]++;
	return true;
}

static const struct publish_window_ops t_ops = {
	.service = t_service,
	.resend_locked = t_resend_locked,
	.settle_unlock = t_settle_unlock,
};

static const struct publish_window_opts t_opts = {.max_inflight = N,
						  .ack_timeout_ms = 5000,
						  .retry_max_ms = 1000};

static void setup(void)
{
	memset(&t, 0, sizeof(t));
	for (int i = 0; i < N; i++)
		t.e[i].id = i;
	publish_window_init(&t.win, &t_host, NULL, &t_ops);
	publish_window_size(&t.win, &t_opts, N, true);
	publish_window_places(&t.win, &t.e[0].pw, sizeof(t.e[0]), N);
}

static void teardown(void)
{
	publish_window_destroy(&t.win);
}

/* Put message i in entry i, the lock taken here. */
static void add(int i, bool in_flight)
{
	pthread_mutex_lock(&t.win.lock);
	publish_window_add_locked(&t.win, &t.e[i].pw, &t.msg[i], in_flight);
	pthread_mutex_unlock(&t.win.lock);
}

static void park(int i)
{
	pthread_mutex_lock(&t.win.lock);
	publish_window_park_locked(&t.win, &t.e[i].pw);
	pthread_mutex_unlock(&t.win.lock);
}

TestSuite(publish_window, .init = setup, .fini = teardown);

Test(publish_window, parking_waits_the_backoff_and_settling_gives_the_message_back)
{
	add(0, true);
	add(1, true);
	cr_assert_eq(t.win.used, 2);
	cr_assert_eq(t.msg[0].attempts, 1, "added in flight: its first attempt");
	publish_window_resend_due(&t.win, NULL); /* due next at the next scan */

	int64_t before = cad_clock_mono_ns();
	park(0);
	int64_t after = cad_clock_mono_ns();
	int64_t first = PUBLISH_WINDOW_RETRY_FIRST_MS * CAD_NS_PER_MS;
	cr_assert(t.e[0].pw.retry_at_ns >= before + first &&
		  t.e[0].pw.retry_at_ns <= after + first);
	cr_assert_eq(t.win.waiting, 1);
	cr_assert_eq(atomic_load(&t.win.due_ns), t.e[0].pw.retry_at_ns, "the window is due then");

	/* Each attempt doubles the pause, up to retry_max. */
	t.msg[1].attempts = 3;
	before = cad_clock_mono_ns();
	park(1);
	cr_assert(t.e[1].pw.retry_at_ns >= before + 4 * first);
	cr_assert_eq(atomic_load(&t.win.due_ns), t.e[0].pw.retry_at_ns, "the sooner one stays");
	t.msg[1].attempts = 30;
	pthread_mutex_lock(&t.win.lock);
	publish_window_unpark_locked(&t.win, &t.e[1].pw);
	pthread_mutex_unlock(&t.win.lock);
	before = cad_clock_mono_ns();
	park(1);
	after = cad_clock_mono_ns();
	cr_assert(t.e[1].pw.retry_at_ns >= before + t_opts.retry_max_ms * CAD_NS_PER_MS &&
			  t.e[1].pw.retry_at_ns <= after + t_opts.retry_max_ms * CAD_NS_PER_MS,
		  "capped at retry_max");

	pthread_mutex_lock(&t.win.lock);
	t_settle_unlock(NULL, &t.e[0].pw, -EMSGSIZE, "too_large"); /* releases the lock */
	cr_assert_eq(t.done, 1);
	cr_assert_eq(t.done_status[0], -EMSGSIZE);
	cr_assert_str_eq(t.done_reason[0], "too_large");
	cr_assert_eq(t.win.used, 1);
	cr_assert_eq(t.win.waiting, 1, "a parked message settled is no longer waiting");
	cr_assert_eq(atomic_load(&t.win.settling), 0);
	cr_assert_eq(pthread_mutex_trylock(&t.win.lock), 0, "settling released the lock");
	pthread_mutex_unlock(&t.win.lock);
}

Test(publish_window, resend_due_sends_what_is_due_and_leaves_the_rest)
{
	add(0, false); /* no connection yet: parked, due at once */
	cr_assert_eq(t.msg[0].attempts, 0);
	cr_assert_eq(t.e[0].pw.retry_at_ns, PUBLISH_WINDOW_NOW);
	add(1, true);
	add(2, true);
	park(2);
	int64_t later = cad_clock_mono_ns() + 3600 * 1000 * CAD_NS_PER_MS;
	t.e[2].pw.retry_at_ns = later;

	cr_assert_eq(publish_window_resend_due(&t.win, NULL), 0, "nothing timed out");
	cr_assert_eq(t.resent[0], 1);
	cr_assert_eq(t.resent[1], 0, "in flight: not sent again");
	cr_assert_eq(t.resent[2], 0, "not due yet");
	cr_assert_eq(t.e[0].pw.retry_at_ns, 0, "sent: awaiting its answer");
	cr_assert_eq(t.msg[0].attempts, 1);
	cr_assert_eq(t.win.waiting, 1);
	cr_assert(atomic_load(&t.win.due_ns) <= later, "due by the parked one at the latest");

	/* Nothing due: the walk is not even started. */
	cr_assert_eq(publish_window_resend_due(&t.win, NULL), 0);
	cr_assert_eq(t.resent[2], 0);
}

Test(publish_window, a_resend_pass_stops_without_a_connection)
{
	add(0, false);
	add(1, false);
	t.no_connection = true;
	publish_window_resend_due(&t.win, NULL);
	cr_assert_eq(t.resent[0] + t.resent[1], 0);
	cr_assert_eq(t.win.waiting, 2, "both still wait");
	cr_assert_eq(atomic_load(&t.win.due_ns), 0, "cut short: due again at once");

	t.no_connection = false;
	publish_window_resend_due(&t.win, NULL);
	cr_assert_eq(t.resent[0] + t.resent[1], 2);
	cr_assert_eq(t.win.waiting, 0);
}

Test(publish_window, a_connection_back_makes_every_parked_entry_due)
{
	add(0, true);
	park(0);
	t.e[0].pw.retry_at_ns = cad_clock_mono_ns() + 3600 * 1000 * CAD_NS_PER_MS;
	atomic_store(&t.win.due_ns, t.e[0].pw.retry_at_ns);
	add(1, true);
	pthread_mutex_lock(&t.win.lock);
	publish_window_due_now_locked(&t.win);
	pthread_mutex_unlock(&t.win.lock);
	cr_assert_eq(t.e[0].pw.retry_at_ns, PUBLISH_WINDOW_NOW);
	cr_assert_eq(t.e[1].pw.retry_at_ns, 0, "in flight stays in flight");
	publish_window_resend_due(&t.win, NULL);
	cr_assert_eq(t.resent[0], 1);
	cr_assert_eq(t.msg[0].attempts, 2, "a retry");
}

Test(publish_window, unanswered_publishes_time_out_on_a_scan)
{
	add(0, true);
	add(1, true);
	t.e[0].pw.sent_ns -= 10 * 1000 * CAD_NS_PER_MS; /* older than ack_timeout */
	cr_assert_eq(publish_window_resend_due(&t.win, NULL), 1);
	cr_assert_neq(t.e[0].pw.retry_at_ns, 0, "parked for a resend");
	cr_assert_eq(t.e[1].pw.retry_at_ns, 0, "a recent one waits on");
	cr_assert_eq(t.resent[0], 0, "sent again only after its backoff");
	cr_assert_eq(t.win.waiting, 1);
}

Test(publish_window, a_window_whose_library_times_out_never_scans)
{
	publish_window_size(&t.win, &t_opts, N, false);
	add(0, true);
	cr_assert_eq(t.e[0].pw.sent_ns, 0, "no clock read per message");
	cr_assert_eq(publish_window_resend_due(&t.win, NULL), 0);
	cr_assert_eq(t.e[0].pw.retry_at_ns, 0);
}

Test(publish_window, giving_up_returns_every_message_as_lost)
{
	add(0, true);
	add(1, true);
	park(1);
	add(2, true);
	pthread_mutex_lock(&t.win.lock);
	publish_window_give_up_locked(&t.win, NULL, true);
	pthread_mutex_unlock(&t.win.lock);
	cr_assert_eq(t.done, 1, "only the parked one: the library holds the others");
	cr_assert_eq(t.done_status[1], -ETIMEDOUT);
	cr_assert_str_eq(t.done_reason[1], "shutdown");

	pthread_mutex_lock(&t.win.lock);
	publish_window_give_up_locked(&t.win, NULL, false);
	pthread_mutex_unlock(&t.win.lock);
	cr_assert_eq(t.done, 3);
	cr_assert_eq(t.done_status[0], -ETIMEDOUT);
	cr_assert_eq(t.done_status[2], -ETIMEDOUT);
	cr_assert_eq(t.win.used, 0);
	cr_assert_eq(t.win.waiting, 0);
}

Test(publish_window, a_full_window_waits_for_room_until_the_drain_deadline)
{
	for (int i = 0; i < N; i++)
		add(i, true);
	t.deadline = cad_clock_mono_ns() - 1; /* draining, and past it */
	pthread_mutex_lock(&t.win.lock);
	cr_assert_not(publish_window_wait_room_locked(&t.win, NULL));
	cr_assert_eq(pthread_mutex_trylock(&t.win.lock), 0, "returned without the lock");
	pthread_mutex_unlock(&t.win.lock);

	t.deadline = 0; /* running */
	t.settle_on_service = true;
	pthread_mutex_lock(&t.win.lock);
	cr_assert(publish_window_wait_room_locked(&t.win, NULL));
	cr_assert_lt(t.win.used, (size_t)N);
	pthread_mutex_unlock(&t.win.lock);
	cr_assert_geq(t.services, 1, "served the window while waiting");
	cr_assert(t.last_in_time);
}

Test(publish_window, closing_drains_until_the_window_is_empty)
{
	add(0, true);
	add(1, true);
	add(2, true);
	t.settle_on_service = true;
	publish_window_drain(&t.win, NULL, cad_clock_mono_ns() + 60 * 1000 * CAD_NS_PER_MS);
	cr_assert_eq(t.win.used, 0);
	cr_assert_eq(t.done, 3);
	publish_window_wait_settled(&t.win);
	cr_assert_eq(atomic_load(&t.win.settling), 0);
}

Test(publish_window, closing_stops_at_the_deadline)
{
	add(0, true);
	publish_window_drain(&t.win, NULL, cad_clock_mono_ns() - 1);
	cr_assert_eq(t.services, 1, "served once more");
	cr_assert_not(t.last_in_time, "told the deadline has passed");
	cr_assert_eq(t.win.used, 1, "what is left is given up next");
}
