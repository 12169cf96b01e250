/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bundled `file` stream module: Choria messages published on a real
 * nats-server end up as JSON lines in a file, whole even with several
 * workers; a rotated file is followed; a write that fails is retried until
 * the file can be written, and nothing is lost or doubled.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pipeline.h"
#include "tmpdir.h"

static char dir[512], out_path[600];
static struct nats_server server;
static struct js_client client;
static struct daemon_proc daemon_a;

static void setup(void)
{
	pipeline_setup(dir, sizeof(dir), &server, &client, NULL);
	snprintf(out_path, sizeof(out_path), "%s/out.jsonl", dir);
}

static void teardown(void)
{
	pipeline_teardown(dir, &server, &client, &daemon_a);
}

TestSuite(file_stream, .init = setup, .fini = teardown, .timeout = 120);

static char *conf_file(const char *extra, int workers)
{
	char *c = NULL;
	cr_assert(asprintf(&c,
			   "identity = \"adapter.test\"\n"
			   "drain_timeout = 2\n"
			   "adapter to_file {\n"
			   "  ingest {\n"
			   "    type = \"choria\"\n"
			   "    servers = {\"%s\"}\n"
			   "    topic = \"choria.discovery\"\n"
			   "    security = \"none\"\n"
			   "    workers = 2\n"
			   "  }\n"
			   "  stream {\n"
			   "    type = \"file\"\n"
			   "    path = \"%s\"\n"
			   "    workers = %d\n"
			   "    %s\n"
			   "  }\n"
			   "}\n",
			   server.url, out_path, workers, extra ? extra : "") > 0);
	return c;
}

static int count_lines(const char *path)
{
	char *text = file_read(path);
	int n = 0;
	for (const char *p = text; p && *p; p++)
		n += *p == '\n';
	free(text);
	return n;
}

static bool wait_lines(const char *path, int n, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 20) {
		if (count_lines(path) >= n)
			return true;
		nats_Sleep(20);
	}
	return false;
}

/* Each line is one whole envelope of a message pipeline_publish() sent;
 * every index in [first, first + n) appears exactly once. */
static void check_lines(const char *path, int first, int n, unsigned seed)
{
	char *text = file_read(path);
	cr_assert_not_null(text, "%s is readable", path);
	char *seen = calloc((size_t)n, 1);
	int lines = 0;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lines++;
		json_error_t e;
		json_t *env = json_loads(line, 0, &e);
		cr_assert_not_null(env, "line %d is JSON (%s): %s", lines, e.text, line);
		cr_assert_eq(json_object_size(env), 5, "the five envelope fields: %s", line);
		cr_assert_str_eq(json_string_value(json_object_get(env, "protocol")),
				 "choria:adapters:file:output:1");
		int i = -1;
		const char *sender = json_string_value(json_object_get(env, "sender"));
		cr_assert_eq(sscanf(sender, "node-%d.example.net", &i), 1, "%s", line);
		cr_assert(i >= first && i < first + n, "sender %s was published", sender);
		cr_assert_eq(seen[i - first], 0, "message %d is written once", i);
		seen[i - first] = 1;

		char rid[33], body[128], when[32];
		pipeline_request_id(rid, seed, i);
		snprintf(body, sizeof(body), "{\"n\":%d,\"html\":\"<b>&</b>\"}", i);
		time_t t = 1520088557 + i;
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
		cr_assert_str_eq(json_string_value(json_object_get(env, "requestid")), rid);
		cr_assert_str_eq(json_string_value(json_object_get(env, "data")), body);
		cr_assert_str_eq(json_string_value(json_object_get(env, "time")), when);
		json_decref(env);
	}
	cr_assert_eq(lines, n, "%s holds %d lines, not %d", path, lines, n);
	free(seen);
	free(text);
}

Test(file_stream, messages_become_whole_json_lines_with_several_workers)
{
	char *conf = conf_file(NULL, 4);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);

	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 300, 0xf11e);
	cr_assert(wait_lines(out_path, 300, 15000), "300 lines written");
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	check_lines(out_path, 0, 300, 0xf11e);

	struct adapter_counts n;
	cr_assert(pipeline_counts(&daemon_a, "to_file", &n));
	cr_assert_eq(n.received, 300);
	cr_assert_eq(n.published, 300);
	cr_assert_eq(n.lost + n.dropped + n.in_flight + n.retries, 0);
	struct stat st;
	cr_assert_eq(stat(out_path, &st), 0);
	cr_assert_eq(st.st_mode & 0777 & ~0640, 0, "created 0640 at most: %o", st.st_mode & 0777);
}

Test(file_stream, a_rotated_file_is_followed_without_a_signal)
{
	char capture[700];
	libc_capture_into(capture, sizeof(capture), dir);
	char *conf = conf_file("fsync = \"always\"", 1);
	pipeline_start_daemon_preloaded(&daemon_a, dir, conf, LIBC_CAPTURE_SO);
	free(conf);

	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 10, 0xabc);
	cr_assert(wait_lines(out_path, 10, 15000));
	char rotated[700];
	snprintf(rotated, sizeof(rotated), "%s.1", out_path);
	cr_assert_eq(rename(out_path, rotated), 0);

	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 10, 15, 0xabc);
	cr_assert(wait_lines(out_path, 15, 15000), "the new file gets the next messages");
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	check_lines(rotated, 0, 10, 0xabc);
	check_lines(out_path, 10, 15, 0xabc);
	/* With fsync = "always", the folder's entry for each file it created
	 * is on disk before a line in it counts: once at the start, once
	 * after the rotation. */
	char synced[700];
	snprintf(synced, sizeof(synced), "fsync-dir %s\n", dir);
	cr_assert_eq(file_count_text(capture, synced), 2, "the folder synced once per file");
	cr_assert_eq(daemon_log_count(&daemon_a, "was rotated: reopened"), 1);
}

Test(file_stream, a_folder_that_cannot_be_synced_is_logged_and_holds_no_line)
{
	char capture[700];
	libc_capture_into(capture, sizeof(capture), dir);
	cr_assert_eq(setenv("CAD_LIBC_DIR_FSYNC_ERRNO", "22", 1), 0); /* EINVAL */
	char *conf = conf_file("fsync = \"always\"", 1);
	pipeline_start_daemon_preloaded(&daemon_a, dir, conf, LIBC_CAPTURE_SO);
	free(conf);
	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 5, 0xd1);
	cr_assert(wait_lines(out_path, 5, 15000), "the lines are written all the same");
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	check_lines(out_path, 0, 5, 0xd1);
	struct adapter_counts n;
	cr_assert(pipeline_counts(&daemon_a, "to_file", &n));
	cr_assert_eq(n.published, 5);
	cr_assert_eq(n.retries, 0, "no line waited for the folder");
	cr_assert_eq(daemon_log_count(&daemon_a, "cannot sync the folder"), 1, "said once");
}

Test(file_stream, a_failing_write_is_retried_until_the_file_can_be_written)
{
	if (access("/dev/full", W_OK) != 0)
		cr_skip_test("no /dev/full to make writes fail");
	/* The path first names a device that fails every write (ENOSPC). */
	cr_assert_eq(symlink("/dev/full", out_path), 0);
	char *conf = conf_file(NULL, 1);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);

	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 5, 0x5);
	cr_assert(daemon_wait_log(&daemon_a, "No space left on device; retrying", 10000),
		  "the failure is logged");
	/* Ask for the counters until all five have arrived. */
	struct adapter_counts held = pipeline_counts_once_received(&daemon_a, "to_file", 5, 5000);
	cr_assert(held.received == 5 && held.in_flight == 5 && held.published == 0 &&
			  held.lost == 0,
		  "nothing counted published or lost while the writes fail: received=%lu "
		  "published=%lu in_flight=%lu lost=%lu",
		  (unsigned long)held.received, (unsigned long)held.published,
		  (unsigned long)held.in_flight, (unsigned long)held.lost);

	/* The disk has room again: the path names a file that takes writes. */
	cr_assert_eq(unlink(out_path), 0);
	cr_assert(wait_lines(out_path, 5, 15000), "held messages are written once it can be");
	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 5, 3, 0x5);
	cr_assert(wait_lines(out_path, 8, 15000));
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	check_lines(out_path, 0, 8, 0x5);

	struct adapter_counts n;
	cr_assert(pipeline_counts(&daemon_a, "to_file", &n));
	cr_assert_eq(n.published, 8);
	cr_assert_geq(n.retries, 1, "the retries are counted");
	cr_assert_eq(n.lost + n.dropped + n.in_flight, 0);
}

Test(file_stream, what_cannot_be_written_by_the_drain_timeout_is_lost_and_counted)
{
	if (access("/dev/full", W_OK) != 0)
		cr_skip_test("no /dev/full to make writes fail");
	cr_assert_eq(symlink("/dev/full", out_path), 0);
	char *conf = conf_file(NULL, 1);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 4, 0x7);
	cr_assert(daemon_wait_log(&daemon_a, "retrying", 10000));
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0, "the drain ends at its timeout");
	struct adapter_counts n;
	cr_assert(pipeline_counts(&daemon_a, "to_file", &n));
	cr_assert_eq(n.received, 4);
	cr_assert_eq(n.published, 0);
	cr_assert_eq(n.lost, 4, "given up at shutdown, counted");
	cr_assert_gt(daemon_log_count(&daemon_a, "lost=4 (shutdown=4)"), 0);
}

/* An adapter block: `topic` to the file at `path`, one worker. */
static void file_adapter(char *buf, size_t len, const char *name, const char *topic,
			 const char *path)
{
	snprintf(buf, len,
		 "adapter %s {\n"
		 "  ingest { type = \"choria\" servers = {\"%s\"} topic = \"%s\"\n"
		 "           security = \"none\" }\n"
		 "  stream { type = \"file\" path = \"%s\" workers = 1 }\n"
		 "}\n",
		 name, server.url, topic, path);
}

Test(file_stream, adapters_drain_side_by_side_so_a_stuck_one_leaves_the_others_their_time)
{
	if (access("/dev/full", W_OK) != 0)
		cr_skip_test("no /dev/full to make writes fail");
	/* Two adapters on failing files; the first stays stuck through the
	 * drain, the second can write again once the drain has begun. */
	char stuck_path[700];
	snprintf(stuck_path, sizeof(stuck_path), "%s/stuck.jsonl", dir);
	cr_assert_eq(symlink("/dev/full", stuck_path), 0);
	cr_assert_eq(symlink("/dev/full", out_path), 0);
	char *conf = NULL, stuck[1024], to_file[1024];
	file_adapter(stuck, sizeof(stuck), "stuck", "choria.stuck", stuck_path);
	file_adapter(to_file, sizeof(to_file), "to_file", "choria.discovery", out_path);
	cr_assert(asprintf(&conf, "identity = \"adapter.test\"\ndrain_timeout = 6\n%s%s", stuck,
			   to_file) > 0);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	pipeline_publish(&client, "choria.stuck", CHORIA_MSG_REQUEST, 0, 3, 0x9);
	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 3, 0x9);
	char failing[800];
	snprintf(failing, sizeof(failing), "cannot write to %s", out_path);
	cr_assert(daemon_wait_log(&daemon_a, failing, 10000));
	/* Let the retries back off past a second: the second adapter's next
	 * attempt then falls inside the drain, not before it. */
	nats_Sleep(2000);

	cr_assert_eq(kill(daemon_a.pid, SIGTERM), 0);
	cr_assert(daemon_wait_log(&daemon_a, "stopping ingest and draining", 5000));
	cr_assert_eq(unlink(out_path), 0);
	cr_assert_eq(daemon_wait_exit(&daemon_a, 20000), 0);

	struct adapter_counts n;
	cr_assert(pipeline_counts(&daemon_a, "to_file", &n));
	cr_assert(n.published == 3 && n.lost == 0,
		  "the second adapter had the drain's time: published=%lu lost=%lu",
		  (unsigned long)n.published, (unsigned long)n.lost);
	check_lines(out_path, 0, 3, 0x9);
	cr_assert(pipeline_counts(&daemon_a, "stuck", &n));
	cr_assert_eq(n.lost, 3, "the stuck one gives up at the deadline");
}

Test(file_stream, an_ingest_server_that_stops_answering_delays_the_stop_once_not_per_connection)
{
	char *conf = NULL;
	cr_assert(
		asprintf(
			&conf,
			"identity = \"adapter.test\"\n"
			"drain_timeout = 2\n"
			"adapter to_file {\n"
			"  ingest { type = \"choria\" servers = {\"%s\"} topic = \"choria.discovery\"\n"
			"           security = \"none\" workers = 8 connections = 8 }\n"
			"  stream { type = \"file\" path = \"%s\" }\n"
			"}\n",
			server.url, out_path) > 0);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	cr_assert_eq(kill(server.pid, SIGSTOP), 0);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int status = daemon_stop(&daemon_a, SIGTERM, 60000);
	double took = seconds_since(&t0);
	kill(server.pid, SIGCONT);
	cr_assert_eq(status, 0);
	/* 5 s for the subscriptions' drain and 1 s for the connections', all
	 * of them at once; one after another, eight connections took 13 s. */
	cr_assert_lt(took, 10.0, "the stop took %.1f s", took);
}

Test(file_stream, the_check_refuses_a_path_that_cannot_be_written)
{
	char conf_path[700];
	char text[1024];
	snprintf(text, sizeof(text),
		 "adapter a {\n"
		 "  ingest { type = \"choria\" topic = \"t\" security = \"none\" }\n"
		 "  stream {\n"
		 "    type = \"file\"\n"
		 "    path = \"%s/no/such/folder/out.jsonl\"\n"
		 "  }\n"
		 "}\n",
		 dir);
	cr_assert_eq(tmpdir_write(dir, "bad.conf", text, conf_path, sizeof(conf_path)), 0);
	char moddir[700];
	cr_assert_eq(daemon_modules_dir(moddir, sizeof(moddir), dir), 0);
	char *out = NULL;
	int st = daemon_run_cmd(&out, dir, "-t", "-c", conf_path, "-M", moddir, NULL);
	cr_assert_eq(st, 1, "%s", out);
	char want[2048];
	snprintf(
		want, sizeof(want),
		"%s:5: adapter a: stream: path: cannot write %s/no/such/folder/out.jsonl: No such file or directory",
		conf_path, dir);
	cr_assert_not_null(strstr(out, want), "want '%s' in:\n%s", want, out);
	free(out);

	/* A good one is summarised, and -t creates nothing. */
	snprintf(text, sizeof(text),
		 "adapter a {\n"
		 "  ingest { type = \"choria\" topic = \"t\" security = \"none\" }\n"
		 "  stream { type = \"file\" path = \"%s\" fsync = \"always\" workers = 2 }\n"
		 "}\n",
		 out_path);
	cr_assert_eq(tmpdir_write(dir, "good.conf", text, conf_path, sizeof(conf_path)), 0);
	st = daemon_run_cmd(&out, dir, "-t", "-c", conf_path, "-M", moddir, NULL);
	cr_assert_eq(st, 0, "%s", out);
	char summary[1024];
	snprintf(summary, sizeof(summary), "stream file (2 workers, file %s, fsync always)",
		 out_path);
	cr_assert_not_null(strstr(out, summary), "want '%s' in:\n%s", summary, out);
	cr_assert_neq(access(out_path, F_OK), 0, "the check creates no file");
	free(out);
}

Test(file_stream, output_protocol_labels_every_envelope)
{
	char *conf = conf_file("output_protocol = \"choria:adapters:choria_streams:output:1\"", 1);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);

	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 5, 0x1abe1);
	cr_assert(wait_lines(out_path, 5, 15000), "5 lines written");
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0, "SIGTERM exits 0");
	char *text = file_read(out_path);
	char *save = NULL;
	int lines = 0;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *env = json_loads(line, 0, NULL);
		cr_assert_not_null(env, "%s", line);
		cr_assert_str_eq(json_string_value(json_object_get(env, "protocol")),
				 "choria:adapters:choria_streams:output:1");
		json_decref(env);
		lines++;
	}
	cr_assert_eq(lines, 5);
	free(text);
}

Test(file_stream, an_output_protocol_it_cannot_write_fails_the_check)
{
	char *conf = conf_file("output_protocol = \"\"", 1);
	char path[700], moddir[600];
	cr_assert_eq(tmpdir_write(dir, "bad.conf", conf, path, sizeof(path)), 0);
	free(conf);
	cr_assert_eq(daemon_modules_dir(moddir, sizeof(moddir), dir), 0);
	char *out = NULL;
	int st = daemon_run_cmd(&out, dir, "-t", "-c", path, "-M", moddir, NULL);
	cr_assert_eq(st, 1, "exit status %d: %s", st, out ? out : "");
	cr_assert_not_null(strstr(out, "output_protocol: must be UTF-8 text"), "%s", out);
	free(out);
}
