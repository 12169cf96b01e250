/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Signals are blocked in every thread and taken synchronously by the main
 * thread with sigwaitinfo(), so no handler ever runs inside a module or a
 * library: SIGTERM and SIGINT drain and stop, SIGHUP reopens the log file,
 * SIGUSR1 logs every adapter's counters.
 *
 * Under systemd (Type=notify), the daemon says READY=1 once every adapter
 * has started, STOPPING=1 when a stop signal arrives, and, when the unit
 * sets WatchdogSec=, pings WATCHDOG=1 from the main loop at half the
 * interval. Built without libsystemd, or run without NOTIFY_SOCKET, these
 * do nothing.
 *
 * Concurrency & locking: the main thread owns the adapters; it starts them,
 * and it stops and joins them. The metrics server, when configured, reads
 * them from its own thread: it is started once they exist, before they
 * connect, and stopped after they drained and before they are freed.
 */
#include "daemon.h"

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

struct daemon {
	struct config *conf;
	size_t n;
	struct adapter **adapters;
	struct metrics *metrics;
};

static void destroy_adapters(struct daemon *d)
{
	for (size_t i = 0; i < d->n; i++)
		adapter_free(d->adapters[i]);
	free(d->adapters);
	d->adapters = NULL;
	d->n = 0;
}

/* Create them all, even past a failure, so every error is reported. */
static int create_adapters(struct daemon *d)
{
	struct config *c = d->conf;
	host_set_identity(c->identity);
	d->adapters = calloc(c->n_adapters, sizeof(*d->adapters));
	if (!d->adapters)
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
		d->adapters[d->n++] = a;
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
		adapter_describe(d.adapters[i], desc, sizeof(desc));
		printf("adapter %s: %s\n", adapter_name(d.adapters[i]), desc);
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
		} else if (sig == SIGUSR1) {
			for (size_t i = 0; i < d->n; i++)
				adapter_log_stats(d->adapters[i]);
		} else {
			log_info("%s received: stopping ingest and draining for up to %ld s",
				 sig == SIGTERM ? "SIGTERM" : "SIGINT", d->conf->drain_timeout);
			/* The drain may outlast the unit's stop timeout. */
			notify("STOPPING=1\nSTATUS=draining for up to %ld s\nEXTEND_TIMEOUT_USEC=%lld",
			       d->conf->drain_timeout,
			       (long long)(d->conf->drain_timeout + 5) * 1000000LL);
			return;
		}
	}
}

static void stop_all(struct daemon *d)
{
	for (size_t i = 0; i < d->n; i++)
		adapter_stop_ingest(d->adapters[i]);
	/* Stopping the ingest took some of the time asked for at SIGTERM;
	 * the drain gets its own. */
	notify("EXTEND_TIMEOUT_USEC=%lld", (long long)(d->conf->drain_timeout + 5) * 1000000LL);
	int64_t deadline = cad_clock_mono_ns() + d->conf->drain_timeout * CAD_NS_PER_SEC;
	for (size_t i = 0; i < d->n; i++)
		adapter_drain_begin(d->adapters[i], deadline);
	for (size_t i = 0; i < d->n; i++) {
		adapter_drain(d->adapters[i], deadline);
		adapter_log_stats(d->adapters[i]);
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

int daemon_run(struct config *conf)
{
	struct daemon d = {.conf = conf};
	sigset_t set;
	block_signals(&set);
	raise_fd_limit();

	int rc = create_adapters(&d);
	if (rc != 0)
		return rc == -EINVAL ? EXIT_CONFIG : EXIT_RUNTIME;

	/* Bound before anything connects, so that a port in use stops the
	 * daemon at once. */
	if (*conf->metrics_listen) {
		rc = metrics_start(&d.metrics, conf->metrics_listen, conf->metrics_max_connections,
				   d.adapters, d.n);
		if (rc != 0) {
			destroy_adapters(&d);
			return rc == -EINVAL ? EXIT_CONFIG : EXIT_RUNTIME;
		}
	}

	int status = EXIT_OK;
	size_t started = 0;
	for (; started < d.n; started++) {
		rc = adapter_start(d.adapters[started]);
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
	destroy_adapters(&d);
	log_info("stopped");
	return status;
}
