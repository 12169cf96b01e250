/* SPDX-License-Identifier: Apache-2.0 */
/* The command line: -t, -V, -h, usage errors, and start-up failures. */
#include <criterion/criterion.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "build_config.h"
#include <choria-adapterd/cad_module.h>
#include "conf_suite.h"
#include "daemon_proc.h"
#include "tmpdir.h"

TestSuite(cli, .init = conf_suite_setup, .fini = conf_suite_teardown, .timeout = 60);

#define GOOD_CONF                                                                         \
	"identity = \"broker1.example.net\"\n"                                            \
	"adapter node_data {\n"                                                           \
	"  queue_len = 500\n"                                                             \
	"  ingest { type = \"choria\" topic = \"choria.discovery\" security = \"none\"\n" \
	"           servers = {\"nats://127.0.0.1:1\"} workers = 3 }\n"                   \
	"  stream { type = \"jetstream\" topic = \"choria.node_metadata.%s\"\n"           \
	"           servers = {\"nats://127.0.0.1:1\"} workers = 4 }\n"                   \
	"}\n"

Test(cli, check_mode_accepts_a_good_config_and_summarises_it)
{
	char conf[700];
	cr_assert_eq(tmpdir_write(conf_suite_dir, "good.conf", GOOD_CONF, conf, sizeof(conf)), 0);
	char *out = NULL;
	int st = daemon_run_cmd(&out, conf_suite_dir, "-t", "-c", conf, "-M", conf_suite_moddir,
				NULL);
	cr_assert_eq(st, 0, "%s", out);
	cr_assert_not_null(strstr(out, "configuration OK"), "%s", out);
	cr_assert_not_null(strstr(out, "adapter node_data: ingest choria (3 workers"), "%s", out);
	cr_assert_not_null(strstr(out, "3 subscriptions over 1 connection)"), "%s", out);
	cr_assert_not_null(strstr(out, "queue 500"), "%s", out);
	cr_assert_not_null(strstr(out, "subject choria.node_metadata.%s"), "%s", out);
	cr_assert_not_null(strstr(out, "stream jetstream (4 workers"), "%s", out);
	free(out);
}

Test(cli, a_configuration_from_a_fifo_is_read_once)
{
	char fifo[700];
	snprintf(fifo, sizeof(fifo), "%s/conf.fifo", conf_suite_dir);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	/* A writer that gives the text once, as a shell's <(...) does. */
	pid_t writer = fork();
	if (writer == 0) {
		FILE *f = fopen(fifo, "w");
		_exit(f && fputs(GOOD_CONF, f) >= 0 && fclose(f) == 0 ? 0 : 1);
	}
	char *out = NULL;
	int st = daemon_run_cmd(&out, conf_suite_dir, "-t", "-c", fifo, "-M", conf_suite_moddir,
				NULL);
	cr_assert_eq(st, 0, "%s", out);
	cr_assert_not_null(strstr(out, "configuration OK"), "%s", out);
	free(out);
	int ws = 0;
	cr_assert_eq(waitpid(writer, &ws, 0), writer);
	cr_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
}

Test(cli, check_mode_refuses_a_bad_config_with_file_and_line)
{
	char conf[700];
	cr_assert_eq(tmpdir_write(conf_suite_dir, "bad.conf",
				  "adapter a {\n  ingest { type = \"choria\" }\n"
				  "  stream { type = \"jetstream\" }\n}\n",
				  conf, sizeof(conf)),
		     0);
	char *out = NULL;
	int st = daemon_run_cmd(&out, conf_suite_dir, "-t", "-c", conf, "-M", conf_suite_moddir,
				NULL);
	cr_assert_eq(st, 1);
	char want[800];
	snprintf(want, sizeof(want), "%s:2: adapter a: ingest: topic: required option is missing",
		 conf);
	cr_assert_not_null(strstr(out, want), "expected '%s' in:\n%s", want, out);
	free(out);
}

Test(cli, module_errors_found_at_create_fail_the_check)
{
	char conf[700];
	cr_assert_eq(tmpdir_write(conf_suite_dir, "ca.conf",
				  "adapter a {\n  ingest { type = \"choria\" topic = \"t\"\n"
				  "    tls_ca = \"/nonexistent/ca.pem\" security = \"none\" }\n"
				  "  stream { type = \"jetstream\" }\n}\n",
				  conf, sizeof(conf)),
		     0);
	char *out = NULL;
	int st = daemon_run_cmd(&out, conf_suite_dir, "-t", "-c", conf, "-M", conf_suite_moddir,
				NULL);
	cr_assert_eq(st, 1, "%s", out);
	cr_assert_not_null(strstr(out,
				  ":3: adapter a: ingest: tls_ca: cannot read /nonexistent/ca.pem"),
			   "%s", out);
	free(out);

	cr_assert_eq(tmpdir_write(conf_suite_dir, "conns.conf",
				  "adapter a {\n  ingest { type = \"choria\" topic = \"t\"\n"
				  "    security = \"none\" workers = 2\n    connections = 3 }\n"
				  "  stream { type = \"jetstream\" }\n}\n",
				  conf, sizeof(conf)),
		     0);
	st = daemon_run_cmd(&out, conf_suite_dir, "-t", "-c", conf, "-M", conf_suite_moddir, NULL);
	cr_assert_eq(st, 1, "%s", out);
	cr_assert_not_null(
		strstr(out,
		       ":4: adapter a: ingest: connections: 3 is more than the 2 workers that would use them"),
		"%s", out);
	free(out);
}

Test(cli, version_help_and_usage_errors)
{
	char *out = NULL;
	cr_assert_eq(daemon_run_cmd(&out, conf_suite_dir, "-V", NULL), 0);
	char want[128];
	snprintf(want, sizeof(want), "choria-adapterd %s (module ABI %d.%d)\n", PACKAGE_VERSION,
		 CAD_ABI_MAJOR, CAD_ABI_MINOR);
	cr_assert_str_eq(out, want);
	free(out);
	cr_assert_eq(daemon_run_cmd(&out, conf_suite_dir, "-h", NULL), 0);
	cr_assert_not_null(strstr(out, "usage: choria-adapterd"), "%s", out);
	free(out);
	cr_assert_eq(daemon_run_cmd(&out, conf_suite_dir, "-x", NULL), 2);
	cr_assert_not_null(strstr(out, "usage:"), "%s", out);
	free(out);
	cr_assert_eq(daemon_run_cmd(&out, conf_suite_dir, "extra", NULL), 2);
	free(out);
	cr_assert_eq(daemon_run_cmd(&out, conf_suite_dir, "-c", "/nonexistent.conf", NULL), 1);
	cr_assert_not_null(strstr(out, "/nonexistent.conf: cannot read the configuration"), "%s",
			   out);
	free(out);
}

Test(cli, an_unreachable_server_does_not_stop_the_daemon_starting)
{
	char conf[700];
	cr_assert_eq(tmpdir_write(conf_suite_dir, "c.conf", GOOD_CONF, conf, sizeof(conf)), 0);
	struct daemon_proc d;
	cr_assert_eq(daemon_start(&d, conf_suite_dir, GOOD_CONF), 0);
	cr_assert(daemon_wait_log(&d, "running", 15000), "it runs while the servers are away");
	cr_assert(daemon_wait_log(&d, "retrying in the background", 1000));
	cr_assert_eq(daemon_stop(&d, SIGTERM, 20000), 0);
}

Test(cli, sigint_stops_the_daemon_as_sigterm_does)
{
	struct daemon_proc d;
	cr_assert_eq(daemon_start(&d, conf_suite_dir, GOOD_CONF), 0);
	cr_assert(daemon_wait_log(&d, "running", 15000));
	cr_assert_eq(daemon_stop(&d, SIGINT, 20000), 0, "drained and exited 0");
	cr_assert_gt(daemon_log_count(&d, "SIGINT received: stopping ingest and draining"), 0);
	cr_assert_gt(daemon_log_count(&d, "adapter node_data: drained"), 0);
}

Test(cli, sighup_reopens_a_rotated_log_file)
{
	char log[700], rotated[720], *conf = NULL;
	snprintf(log, sizeof(log), "%s/adapterd.log", conf_suite_dir);
	snprintf(rotated, sizeof(rotated), "%s.1", log);
	cr_assert(asprintf(&conf, "log_file = \"%s\"\n%s", log, GOOD_CONF) > 0);
	struct daemon_proc d;
	cr_assert_eq(daemon_start(&d, conf_suite_dir, conf), 0);
	free(conf);
	cr_assert(file_wait_text(log, "running", 15000), "the daemon logs to its file");

	cr_assert_eq(rename(log, rotated), 0);
	cr_assert_eq(kill(d.pid, SIGHUP), 0);
	cr_assert(file_wait_text(log, "log file reopened (SIGHUP)", 5000),
		  "a new file is opened under the configured name");
	cr_assert_eq(daemon_stop(&d, SIGTERM, 20000), 0);
	cr_assert(file_wait_text(log, "drained", 1000), "what follows goes to the new file");
	char *old = file_read(rotated);
	cr_assert_not_null(old);
	cr_assert_null(strstr(old, "reopened"), "the rotated file is left alone:\n%s", old);
	free(old);
}

Test(cli, a_log_file_that_cannot_be_opened_stops_the_daemon_with_status_3)
{
	char *conf = NULL;
	cr_assert(asprintf(&conf, "log_file = \"%s/no/such/folder/a.log\"\n%s", conf_suite_dir,
			   GOOD_CONF) > 0);
	struct daemon_proc d;
	cr_assert_eq(daemon_start(&d, conf_suite_dir, conf), 0);
	free(conf);
	cr_assert_eq(daemon_wait_exit(&d, 15000), 3);
	cr_assert_gt(daemon_log_count(&d, "no/such/folder/a.log"), 0, "the error names the file");
}

/* The first captured syslog line holding `text`, or NULL. */
static char *syslog_line(const char *capture, const char *text)
{
	char *all = file_read(capture);
	if (!all)
		return NULL;
	char *hit = strstr(all, text), *line = NULL;
	if (hit) {
		char *start = hit;
		while (start > all && start[-1] != '\n')
			start--;
		line = strndup(start, strcspn(start, "\n"));
	}
	free(all);
	return line;
}

Test(cli, log_file_syslog_sends_each_level_at_its_priority_without_a_timestamp)
{
	char capture[700], *conf = NULL;
	libc_capture_into(capture, sizeof(capture), conf_suite_dir);
	cr_assert(asprintf(&conf, "log_file = \"syslog\"\n%s", GOOD_CONF) > 0);
	struct daemon_proc d;
	cr_assert_eq(daemon_start_preloaded(&d, conf_suite_dir, conf, LIBC_CAPTURE_SO), 0);
	free(conf);
	cr_assert(file_wait_text(capture, "running", 15000), "the daemon logs to syslog");
	cr_assert_eq(kill(d.pid, SIGHUP), 0);
	cr_assert(file_wait_text(capture, "log file reopened (SIGHUP)", 5000));
	cr_assert_eq(daemon_stop(&d, SIGTERM, 20000), 0);
	cr_assert(file_wait_text(capture, "drained", 1000), "syslog still serves after SIGHUP");

	char want[64];
	snprintf(want, sizeof(want), "syslog choria-adapterd %d %d %d ", LOG_PID, LOG_DAEMON,
		 LOG_INFO);
	char *running = syslog_line(capture, "running");
	cr_assert_not_null(running);
	cr_assert_eq(strncmp(running, want, strlen(want)), 0, "ident, options, facility, info: %s",
		     running);
	/* syslog stamps its own time and level: the line starts with its text. */
	cr_assert(running[strlen(want)] < '0' || running[strlen(want)] > '9', "%s", running);
	cr_assert_null(strstr(running, "INFO"), "%s", running);
	free(running);

	/* Nothing listens at the servers: the connection warnings are warnings. */
	char *warn = syslog_line(capture, "127.0.0.1:1");
	cr_assert_not_null(warn, "the unreachable server is reported");
	snprintf(want, sizeof(want), "syslog choria-adapterd %d %d %d ", LOG_PID, LOG_DAEMON,
		 LOG_WARNING);
	cr_assert_eq(strncmp(warn, want, strlen(want)), 0, "%s", warn);
	free(warn);
	cr_assert_eq(daemon_log_count(&d, "running"), 0, "nothing of it goes to standard error");
}

/* Whether the daemon asked for a number of malloc arenas, as the capture
 * at `capture` shows for a run of -V; the number in *arenas. */
static bool arena_limit(const char *capture, long *arenas)
{
	unlink(capture);
	cr_assert_eq(daemon_run_cmd_preloaded(NULL, conf_suite_dir, LIBC_CAPTURE_SO, "-V", NULL),
		     0);
	char *calls = file_read(capture), want[32];
	snprintf(want, sizeof(want), "mallopt %d ", M_ARENA_MAX);
	const char *hit = calls ? strstr(calls, want) : NULL;
	if (hit)
		*arenas = strtol(hit + strlen(want), NULL, 10);
	free(calls);
	return hit != NULL;
}

Test(cli, malloc_arenas_are_two_per_processor_unless_the_operator_chose)
{
	char capture[700];
	libc_capture_into(capture, sizeof(capture), conf_suite_dir);
	unsetenv("MALLOC_ARENA_MAX");
	unsetenv("GLIBC_TUNABLES");
	/* The processors it sees are the shim's. */
	static const struct {
		const char *cpus;
		long arenas;
	} cases[] = {{"1", 4}, {"2", 4}, {"3", 6}, {"8", 16}};
	long arenas = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(setenv("CAD_LIBC_NPROCS", cases[i].cpus, 1), 0);
		cr_assert(arena_limit(capture, &arenas), "the daemon limits its arenas");
		cr_assert_eq(arenas, cases[i].arenas, "%ld arenas for %s processors", arenas,
			     cases[i].cpus);
	}
	unsetenv("CAD_LIBC_NPROCS");

	cr_assert_eq(setenv("MALLOC_ARENA_MAX", "3", 1), 0);
	cr_assert_not(arena_limit(capture, &arenas), "MALLOC_ARENA_MAX wins");
	unsetenv("MALLOC_ARENA_MAX");
	cr_assert_eq(setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=3", 1), 0);
	cr_assert_not(arena_limit(capture, &arenas), "so does the tunable");
}

Test(cli, a_message_an_ingest_submits_after_stopping_is_dropped_logged_and_freed)
{
	/* The module breaks the rule that nothing is submitted after stop(). */
	char link_path[800];
	snprintf(link_path, sizeof(link_path), "%s/ingest_late.so", conf_suite_moddir);
	cr_assert_eq(symlink(TOP_BUILDDIR "/tests/modules/.libs/ingest_late.so", link_path), 0);
	char *conf = NULL;
	cr_assert(asprintf(&conf,
			   "adapter late_one {\n"
			   "  ingest { type = \"late\" }\n"
			   "  stream { type = \"file\" path = \"%s/out.jsonl\" }\n"
			   "}\n",
			   conf_suite_dir) > 0);
	/* The daemon's module folder is conf_suite_moddir, with the link in it. */
	struct daemon_proc d;
	cr_assert_eq(daemon_start(&d, conf_suite_dir, conf), 0);
	free(conf);
	cr_assert(daemon_wait_log(&d, "running", 15000));
	cr_assert_eq(daemon_stop(&d, SIGTERM, 20000), 0, "it stops as usual");
	cr_assert_eq(daemon_log_count(&d, "dropped a message from late.example.net: the adapter is "
					  "stopping"),
		     1);
}
