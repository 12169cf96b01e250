/* SPDX-License-Identifier: Apache-2.0 */
/*
 * systemd notification without systemd: the test owns a unix datagram
 * socket, hands it to the daemon as NOTIFY_SOCKET, and reads what a
 * service manager would: READY=1 once the adapters run, WATCHDOG=1 at
 * half of WATCHDOG_USEC, STOPPING=1 on SIGTERM. Built only with libsystemd.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "pipeline.h"
#include "tmpdir.h"

static char dir[512];
static struct nats_server server;
static struct daemon_proc daemon_a;
static int sock = -1;

static void setup(void)
{
	cr_assert_eq(tmpdir_make(dir, sizeof(dir)), 0);
	cr_assert_eq(nats_server_start(&server, dir, 0, NULL), 0, "nats-server must start");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	cr_assert_lt(strlen(dir) + sizeof("/notify"), sizeof(sa.sun_path), "socket path fits");
	memcpy(sa.sun_path, dir, strlen(dir));
	memcpy(sa.sun_path + strlen(dir), "/notify", sizeof("/notify"));
	sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(sock, 0);
	cr_assert_eq(bind(sock, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
	/* The daemon inherits the environment of this (forked) test. */
	setenv("NOTIFY_SOCKET", sa.sun_path, 1);
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

static void teardown(void)
{
	if (daemon_a.pid > 0)
		daemon_stop(&daemon_a, SIGKILL, 5000);
	if (sock >= 0)
		close(sock);
	nats_server_stop(&server);
	tmpdir_remove(dir);
}

TestSuite(notify, .init = setup, .fini = teardown, .timeout = 60);

static char *conf_text(void)
{
	char *c = NULL;
	cr_assert(
		asprintf(
			&c,
			"drain_timeout = 3\n"
			"adapter a {\n"
			"  ingest { type = \"choria\" servers = {\"%s\"} topic = \"choria.discovery\"\n"
			"           security = \"none\" }\n"
			"  stream { type = \"file\" path = \"%s/out.jsonl\" }\n"
			"}\n",
			server.url, dir) > 0);
	return c;
}

/* The next datagram within timeout_ms into buf; false if none came. */
static bool receive(char *buf, size_t len, int timeout_ms)
{
	struct pollfd p = {.fd = sock, .events = POLLIN};
	if (poll(&p, 1, timeout_ms) != 1)
		return false;
	ssize_t n = recv(sock, buf, len - 1, 0);
	if (n < 0)
		return false;
	buf[n] = '\0';
	return true;
}

/* Read datagrams until one holds `what`; the others are kept in `seen`. */
static bool wait_for(const char *what, int timeout_ms, char *seen, size_t seen_len)
{
	char buf[1024];
	for (int waited = 0; waited < timeout_ms; waited += 50) {
		if (!receive(buf, sizeof(buf), 50))
			continue;
		size_t used = strlen(seen);
		snprintf(seen + used, seen_len - used, "[%s] ", buf);
		if (strstr(buf, what))
			return true;
	}
	return false;
}

Test(notify, ready_once_running_and_stopping_on_sigterm)
{
	char *conf = conf_text();
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	char seen[8192] = "";
	cr_assert(wait_for("READY=1", 5000, seen, sizeof(seen)), "READY=1 arrives: %s", seen);
	cr_assert_not_null(strstr(seen, "STATUS=running 1 adapter"), "%s", seen);
	cr_assert_null(strstr(seen, "WATCHDOG=1"), "no watchdog was asked for: %s", seen);

	kill(daemon_a.pid, SIGTERM);
	cr_assert(wait_for("STOPPING=1", 5000, seen, sizeof(seen)), "STOPPING=1 arrives: %s", seen);
	cr_assert_not_null(strstr(seen, "EXTEND_TIMEOUT_USEC=8000000"), "the drain's time: %s",
			   seen);
	/* Asked again once the ingest has stopped, for the drain itself. */
	seen[0] = '\0';
	cr_assert(wait_for("EXTEND_TIMEOUT_USEC=8000000", 5000, seen, sizeof(seen)),
		  "the drain's time again: %s", seen);
	cr_assert_null(strstr(seen, "STOPPING=1"), "%s", seen);
	cr_assert_eq(daemon_wait_exit(&daemon_a, 20000), 0);
}

Test(notify, no_ready_when_an_adapter_cannot_start)
{
	/* The ingest's server accepts the connection and never answers: the
	 * start fails after the handshake's timeout. */
	cr_assert_eq(kill(server.pid, SIGSTOP), 0);
	char *conf = conf_text();
	cr_assert_eq(daemon_start(&daemon_a, dir, conf), 0);
	free(conf);
	int status = daemon_wait_exit(&daemon_a, 30000);
	kill(server.pid, SIGCONT);
	cr_assert_eq(status, 3);
	char seen[8192] = "", buf[1024];
	while (receive(buf, sizeof(buf), 200)) {
		size_t used = strlen(seen);
		snprintf(seen + used, sizeof(seen) - used, "[%s] ", buf);
	}
	cr_assert_null(strstr(seen, "READY=1"), "READY=1 only once every adapter runs: %s", seen);
}

Test(notify, watchdog_pings_at_half_the_interval)
{
	setenv("WATCHDOG_USEC", "400000", 1); /* 0.4 s: a ping every 0.2 s */
	char *conf = conf_text();
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	char seen[16384] = "";
	cr_assert(wait_for("READY=1", 5000, seen, sizeof(seen)), "%s", seen);
	/* Eleven pings sent after t0 (those sent before are read and left
	 * out): ten gaps of 0.2 s after the first. The daemon waits for each
	 * with a timed wait, which never ends early, so they take 2 s at
	 * least, and a daemon pinging only once an interval could not send
	 * them in less than 4 s. */
	char buf[1024];
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (receive(buf, sizeof(buf), 0))
		;
	int pings = 0;
	for (int waited = 0; waited < 20000 && pings < 11; waited += 50)
		if (receive(buf, sizeof(buf), 50) && strstr(buf, "WATCHDOG=1"))
			pings++;
	double took = seconds_since(&t0);
	cr_assert_eq(pings, 11, "WATCHDOG=1 keeps coming: %d pings", pings);
	cr_assert_lt(took, 4.0,
		     "eleven pings in %.2f s: at half the interval, not once an interval", took);
	cr_assert_geq(took, 2.0, "not more often: eleven pings in %.2f s", took);
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
}

Test(notify, a_watchdog_for_another_process_is_not_ours)
{
	setenv("WATCHDOG_USEC", "400000", 1);
	setenv("WATCHDOG_PID", "1", 1); /* the manager meant process 1 */
	char *conf = conf_text();
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	char seen[8192] = "", buf[1024];
	cr_assert(wait_for("READY=1", 5000, seen, sizeof(seen)), "%s", seen);
	/* It runs for five intervals at least, then stops. Once it has
	 * exited, every datagram it ever sent waits on the socket: all of
	 * them are read, down to its STOPPING=1, and none is a ping. */
	nats_Sleep(1000);
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	while (receive(buf, sizeof(buf), 0)) {
		size_t used = strlen(seen);
		snprintf(seen + used, sizeof(seen) - used, "[%s] ", buf);
	}
	cr_assert_not_null(strstr(seen, "STOPPING=1"), "all it sent was read: %s", seen);
	cr_assert_null(strstr(seen, "WATCHDOG=1"), "no pings: %s", seen);
}

/* The daemon's file again, with adapter a renamed b: on SIGHUP, one
 * adapter added and one removed and drained. */
static void rename_adapter_a(void)
{
	char *renamed = conf_text(), *a = strstr(renamed, "adapter a {");
	cr_assert(a);
	a[8] = 'b';
	char tmp[700];
	snprintf(tmp, sizeof(tmp), "%s.new", daemon_a.conf);
	cr_assert_eq(tmpdir_write(dir, "choria-adapterd.conf.new", renamed, tmp, sizeof(tmp)), 0);
	cr_assert_eq(rename(tmp, daemon_a.conf), 0);
	free(renamed);
}

Test(notify, a_reload_says_reloading_then_ready_and_stretches_the_watchdog_for_its_drain)
{
	setenv("WATCHDOG_USEC", "4000000", 1); /* a ping every 2 s */
	char *conf = conf_text();
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	char seen[8192] = "";
	cr_assert(wait_for("READY=1", 5000, seen, sizeof(seen)), "READY=1 arrives: %s", seen);

	rename_adapter_a();
	seen[0] = '\0';
	kill(daemon_a.pid, SIGHUP);
	cr_assert(wait_for("RELOADING=1", 5000, seen, sizeof(seen)), "RELOADING=1: %s", seen);
	cr_assert_not_null(strstr(seen, "MONOTONIC_USEC="), "%s", seen);
	/* Its unit's 4 s, and the drain's 3 s with room to join. */
	cr_assert(wait_for("WATCHDOG_USEC=37000000", 10000, seen, sizeof(seen)), "%s", seen);
	cr_assert(wait_for("READY=1", 10000, seen, sizeof(seen)), "READY=1 again: %s", seen);
	cr_assert_not_null(strstr(seen, "WATCHDOG_USEC=4000000"), "the unit's own again: %s", seen);
	cr_assert_not_null(strstr(seen, "STATUS=running 1 adapter"), "%s", seen);
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	cr_assert(daemon_wait_log(&daemon_a, "adapter a: removed", 1000));
	cr_assert(daemon_wait_log(&daemon_a, "adapter b: added", 1000));
}

/* A stop signal pending when a reload comes to drain what it removes:
 * systemd hears STOPPING=1 before that drain, with time for it and for
 * the stop's own drain, and no READY=1 after it. */
Test(notify, a_stop_signal_during_a_reload_says_stopping_before_its_drain)
{
	char *conf = conf_text();
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	char seen[8192] = "";
	cr_assert(wait_for("READY=1", 5000, seen, sizeof(seen)), "READY=1 arrives: %s", seen);

	rename_adapter_a();
	/* Both pending when it runs again: SIGHUP is taken first. */
	cr_assert_eq(kill(daemon_a.pid, SIGSTOP), 0);
	cr_assert_eq(kill(daemon_a.pid, SIGHUP), 0);
	cr_assert_eq(kill(daemon_a.pid, SIGTERM), 0);
	cr_assert_eq(kill(daemon_a.pid, SIGCONT), 0);
	seen[0] = '\0';
	cr_assert(wait_for("STOPPING=1", 10000, seen, sizeof(seen)), "STOPPING=1: %s", seen);
	cr_assert_not_null(strstr(seen, "RELOADING=1"), "%s", seen);
	/* The reload's 3 s drain and the stop's 3 s, 5 s each besides. */
	cr_assert_not_null(strstr(seen, "EXTEND_TIMEOUT_USEC=16000000"), "%s", seen);
	cr_assert_eq(daemon_wait_exit(&daemon_a, 30000), 0);
	/* What else it said, read to the end, holds no READY=1. */
	cr_assert_not(wait_for("READY=1", 500, seen, sizeof(seen)), "%s", seen);
	cr_assert(daemon_wait_log(&daemon_a, "adapter a: removed", 1000));
	cr_assert(daemon_wait_log(&daemon_a, "SIGTERM received", 1000));
}
