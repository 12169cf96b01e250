/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Signals are blocked in every thread and taken synchronously by the main
 * thread with sigwaitinfo(), so no handler ever runs inside a module or a
 * library: SIGTERM and SIGINT drain and stop; SIGHUP reopens the log file
 * and reloads the configuration (reload.c); SIGUSR1 logs every adapter's
 * counters. SIGHUPs that arrive during a reload are one pending signal
 * when it ends, so they fold into one more reload; a stop signal that
 * arrived meanwhile goes first.
 *
 * Under systemd (Type=notify), the daemon says READY=1 once every adapter
 * has started, RELOADING=1 then READY=1 around a reload, STOPPING=1 when
 * a stop signal arrives, and, when the unit sets WatchdogSec=, pings
 * WATCHDOG=1 from the main loop at half the interval, stretching the
 * interval while a reload keeps the loop busy. Built without libsystemd,
 * or run without NOTIFY_SOCKET, these do nothing.
 *
 * Concurrency & locking: the main thread owns the adapters; it starts them,
 * and it stops and joins them. The metrics server, when configured, reads
 * them from its own thread: it is started once they exist, before they
 * connect, and stopped after they drained and before they are freed. A
 * reload hands it another set of adapters (metrics_set_view) before it
 * frees any adapter of the set it showed.
 */
#include "daemon.h"
#include "daemon_state.h"

#include "build_config.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include <choria-adapterd/cad_clock.h>
#include "log.h"
#include "metrics.h"
#include "adapters.h"

static void destroy_adapters(struct daemon *d)
{
	for (size_t i = 0; i < d->n; i++)
		adapter_free(d->run[i].adapter);
	free(d->run);
	d->run = NULL;
	d->n = 0;
}

void daemon_show(struct daemon *d, struct adapter **adapters, size_t n, size_t n_draining)
{
	struct metrics_view v = {adapters, n, d->conf->identity, &d->status, n_draining};
	metrics_set_view(d->metrics, &v);
	free(d->shown);
	d->shown = adapters;
	d->n_shown = n;
	d->n_draining = n_draining;
}

void daemon_show_status(struct daemon *d)
{
	struct metrics_view v = {d->shown, d->n_shown, d->conf->identity, &d->status,
				 d->n_draining};
	metrics_set_view(d->metrics, &v);
}

void daemon_release_configs(struct daemon *d)
{
	size_t kept = 0;
	for (size_t k = 0; k < d->n_held; k++) {
		bool used = d->held[k] == d->conf;
		for (size_t i = 0; i < d->n && !used; i++)
			used = d->run[i].conf == d->held[k];
		if (used)
			d->held[kept++] = d->held[k];
		else
			config_free(d->held[k]);
	}
	d->n_held = kept;
}

/* Create them all, even past a failure, so every error is reported. */
static int create_adapters(struct daemon *d)
{
	struct config *c = d->conf;
	d->run = calloc(c->n_adapters, sizeof(*d->run));
	if (!d->run)
		return -ENOMEM;
	int rc = 0;
	for (size_t i = 0; i < c->n_adapters; i++) {
		struct adapter *a = NULL;
		int e = adapter_new(&a, &c->adapters[i], c->identity, NULL);
		if (e != 0) {
			if (e != -EINVAL)
				log_error("adapter %s: cannot be created: %s", c->adapters[i].name,
					  strerror(-e));
			rc = rc ? rc : e;
			continue;
		}
		d->run[d->n++] = (struct daemon_running){a, &c->adapters[i], c};
	}
	if (rc != 0)
		destroy_adapters(d);
	return rc;
}

int daemon_check(struct config *conf)
{
	struct daemon d = {.conf = conf};
	int rc = create_adapters(&d);
	if (rc != 0)
		return rc == -EINVAL ? EXIT_CONFIG : EXIT_RUNTIME;
	printf("%s: configuration OK, identity %s, modules from %s\n", conf->file, conf->identity,
	       conf->module_path);
	for (size_t i = 0; i < d.n; i++) {
		char desc[2048];
		adapter_describe(d.run[i].adapter, desc, sizeof(desc));
		printf("adapter %s: %s\n", adapter_name(d.run[i].adapter), desc);
	}
	destroy_adapters(&d);
	return EXIT_OK;
}

/* Tell systemd about a change of state; one "NAME=value" per line. */
static void notify(const char *fmt, ...) CAD_PRINTF(1, 2);
static void notify(const char *fmt, ...)
{
#ifdef HAVE_LIBSYSTEMD
	char state[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(state, sizeof(state), fmt, ap);
	va_end(ap);
	static bool warned; /* main thread only */
	int rc = sd_notify(0, state);
	if (rc < 0 && !warned) {
		log_warn("cannot notify systemd: %s", strerror(-rc));
		warned = true;
	}
#else
	(void)fmt;
#endif
}

/* How often to ping the watchdog: half the unit's WatchdogSec=, or 0 when
 * no watchdog is asked for. */
static int64_t watchdog_every_ns(void)
{
#ifdef HAVE_LIBSYSTEMD
	uint64_t usec = 0;
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
		return (int64_t)usec * 1000 / 2;
#endif
	return 0;
}

static void block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGUSR1);
	/* Threads created from here on inherit the mask. */
	pthread_sigmask(SIG_BLOCK, set, NULL);
	/* A closed peer must be an error code, not a dead daemon. */
	signal(SIGPIPE, SIG_IGN);
}

bool daemon_stop_is_pending(void)
{
	sigset_t pending;
	return sigpending(&pending) == 0 &&
	       (sigismember(&pending, SIGTERM) || sigismember(&pending, SIGINT));
}

/* What systemd is asked to wait beyond a drain_timeout: the time to stop
 * ingest and join the workers. */
#define DAEMON_DRAIN_MARGIN_S 5

void daemon_notify_stopping_after(const struct daemon *d, long seconds)
{
	long total = seconds + d->conf->drain_timeout + 2 * DAEMON_DRAIN_MARGIN_S;
	log_info("a stop signal is pending: the reload drains for up to %ld s, then the daemon "
		 "drains for up to %ld s and stops",
		 seconds, d->conf->drain_timeout);
	notify("STOPPING=1\nSTATUS=stopping: a reload drains first\nEXTEND_TIMEOUT_USEC=%lld",
	       (long long)total * 1000000LL);
}

/* Take a stop signal that arrived during a reload, before any SIGHUP
 * that came with it: sigwaitinfo() would give the lower number first. */
static int daemon_pending_stop(void)
{
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	if (!daemon_stop_is_pending())
		return 0;
	struct timespec now = {0, 0};
	int sig = sigtimedwait(&stop, NULL, &now);
	return sig > 0 ? sig : 0;
}

/* The main loop does not ping the watchdog while a reload starts
 * adapters and drains others: for that long, it waits as much longer.
 * WATCHDOG_USEC= changes the unit's interval at run time. */
void daemon_expect_busy(long seconds)
{
	int64_t every = watchdog_every_ns();
	if (!every)
		return;
	notify("WATCHDOG=1\nWATCHDOG_USEC=%lld",
	       (long long)(every * 2 / 1000 + (int64_t)seconds * 1000000LL));
}

/* Back to the unit's own interval. */
static void daemon_watchdog_restore(void)
{
	int64_t every = watchdog_every_ns();
	if (every)
		notify("WATCHDOG=1\nWATCHDOG_USEC=%lld", (long long)(every * 2 / 1000));
}

static void daemon_reload_now(struct daemon *d)
{
	struct timespec mono;
	clock_gettime(CLOCK_MONOTONIC, &mono);
	notify("RELOADING=1\nSTATUS=reloading %s\nMONOTONIC_USEC=%lld", d->conf->file,
	       (long long)mono.tv_sec * 1000000LL + mono.tv_nsec / 1000);
	daemon_reload(d);
	daemon_watchdog_restore();
	/* Stopping now: READY=1 would take back STOPPING=1. */
	if (daemon_stop_is_pending())
		return;
	notify("READY=1\nSTATUS=running %zu adapter%s%s", d->n, d->n == 1 ? "" : "s",
	       d->status.last_ok ? "" : " (the last reload failed)");
}

static void wait_for_stop(struct daemon *d, const sigset_t *set)
{
	int64_t ping_every = watchdog_every_ns();
	int64_t next_ping = cad_clock_mono_ns();
	for (;;) {
		siginfo_t info;
		int sig;
		if (ping_every) {
			int64_t now = cad_clock_mono_ns();
			if (now >= next_ping) {
				notify("WATCHDOG=1");
				next_ping = now + ping_every;
			}
			int64_t wait = next_ping - now;
			struct timespec ts = cad_clock_timespec(wait);
			sig = sigtimedwait(set, &info, &ts);
		} else {
			sig = sigwaitinfo(set, &info);
		}
		if (sig < 0)
			continue; /* EINTR, or time to ping */
		if (sig == SIGHUP) {
			int rc = log_reopen();
			if (rc != 0)
				log_error("cannot reopen the log file: %s", strerror(-rc));
			else
				log_info("log file reopened (SIGHUP)");
			daemon_reload_now(d);
			int stop = daemon_pending_stop();
			if (stop)
				sig = stop;
		} else if (sig == SIGUSR1) {
			for (size_t i = 0; i < d->n; i++)
				adapter_log_stats(d->run[i].adapter);
		}
		if (sig == SIGTERM || sig == SIGINT) {
			log_info("%s received: stopping ingest and draining for up to %ld s",
				 sig == SIGTERM ? "SIGTERM" : "SIGINT", d->conf->drain_timeout);
			/* The drain may outlast the unit's stop timeout. */
			notify("STOPPING=1\nSTATUS=draining for up to %ld s\nEXTEND_TIMEOUT_USEC=%lld",
			       d->conf->drain_timeout,
			       (long long)(d->conf->drain_timeout + DAEMON_DRAIN_MARGIN_S) *
				       1000000LL);
			return;
		}
	}
}

static void stop_all(struct daemon *d)
{
	for (size_t i = 0; i < d->n; i++)
		adapter_stop_ingest(d->run[i].adapter);
	/* Stopping the ingest took some of the time asked for at SIGTERM;
	 * the drain gets its own. */
	notify("EXTEND_TIMEOUT_USEC=%lld",
	       (long long)(d->conf->drain_timeout + DAEMON_DRAIN_MARGIN_S) * 1000000LL);
	int64_t deadline = cad_clock_mono_ns() + d->conf->drain_timeout * CAD_NS_PER_SEC;
	for (size_t i = 0; i < d->n; i++)
		adapter_drain_begin(d->run[i].adapter, deadline);
	for (size_t i = 0; i < d->n; i++) {
		adapter_drain(d->run[i].adapter, deadline);
		adapter_log_stats(d->run[i].adapter);
	}
}

/* Every NATS connection, stream file and metrics client holds a file
 * descriptor, and running out of them loses messages: the soft limit
 * (1024 under systemd) goes up to the hard one, which costs nothing until
 * descriptors are used. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rlim_t was = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
		log_warn("cannot raise the open file limit from %llu to %llu: %s",
			 (unsigned long long)was, (unsigned long long)rl.rlim_max, strerror(errno));
		return;
	}
	log_info("open file limit raised from %llu to %llu", (unsigned long long)was,
		 (unsigned long long)rl.rlim_max);
}

/* The adapters as the metrics endpoint first shows them. */
static int daemon_first_view(struct daemon *d)
{
	struct adapter **shown = calloc(d->n + 1, sizeof(*shown));
	if (!shown)
		return -ENOMEM;
	for (size_t i = 0; i < d->n; i++)
		shown[i] = d->run[i].adapter;
	d->shown = shown;
	d->n_shown = d->n;
	/* A successful start counts as a successful load. */
	d->status = (struct config_status){.last_ok = true, .success_unix_s = (int64_t)time(NULL)};
	return 0;
}

/* Everything the daemon still holds, once the adapters are gone. */
static void daemon_release_all(struct daemon *d)
{
	destroy_adapters(d);
	free(d->shown);
	for (size_t k = 0; k < d->n_held; k++)
		config_free(d->held[k]);
	free(d->held);
	config_free(d->conf);
}

int daemon_run(struct config *conf, const char *module_dir)
{
	struct daemon d = {.conf = conf, .module_dir = module_dir};
	sigset_t set;
	block_signals(&set);
	raise_fd_limit();

	int rc = create_adapters(&d);
	if (rc == 0)
		rc = daemon_first_view(&d);
	if (rc != 0) {
		daemon_release_all(&d);
		return rc == -EINVAL ? EXIT_CONFIG : EXIT_RUNTIME;
	}

	/* Bound before anything connects, so that a port in use stops the
	 * daemon at once. */
	if (*conf->metrics_listen) {
		struct metrics_view v = {d.shown, d.n_shown, conf->identity, &d.status, 0};
		rc = metrics_start(&d.metrics, conf->metrics_listen, conf->metrics_max_connections,
				   &v, METRICS_STARTING);
		if (rc != 0) {
			daemon_release_all(&d);
			return rc == -EINVAL ? EXIT_CONFIG : EXIT_RUNTIME;
		}
	}

	int status = EXIT_OK;
	size_t started = 0;
	for (; started < d.n; started++) {
		rc = adapter_start(d.run[started].adapter);
		if (rc != 0) {
			status = EXIT_RUNTIME;
			break;
		}
	}
	if (status == EXIT_OK) {
		metrics_set_phase(d.metrics, METRICS_RUNNING);
		log_info("choria-adapterd %s running %zu adapter%s as %s", PACKAGE_VERSION, d.n,
			 d.n == 1 ? "" : "s", conf->identity);
		notify("READY=1\nSTATUS=running %zu adapter%s", d.n, d.n == 1 ? "" : "s");
		wait_for_stop(&d, &set);
	}
	metrics_set_phase(d.metrics, METRICS_STOPPING);
	stop_all(&d);
	metrics_stop(d.metrics);
	daemon_release_all(&d);
	log_info("stopped");
	return status;
}
