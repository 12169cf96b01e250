/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What an operator and a third party get from `make install`: this source
 * tree, as `make distdir` copies it, is configured with --prefix=<a
 * temporary folder>, built and installed there (a copy, because the tree
 * may be configured in place, and configure refuses a second build of a
 * configured tree); the example module is taken from the installed
 * choria-adapterd-module(3) page, compiled outside the tree against the
 * installed header with pkg-config, and dropped into the installed module
 * folder; the installed daemon then runs it, and the bundled file module,
 * on Choria messages from a real nats-server. The installed systemd unit
 * is verified, and `make uninstall` leaves no file behind.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pipeline.h"
#include "tmpdir.h"
#include "tsan_skip.h"

#ifndef SYSTEMD_ANALYZE_BIN
#define SYSTEMD_ANALYZE_BIN ""
#endif

static char dir[512], prefix[600], build[600], srcdir[600], rundir[600];
static struct nats_server server;
static struct js_client client;
static struct daemon_proc daemon_a;

static void setup(void)
{
	cr_assert_eq(tmpdir_make(dir, sizeof(dir)), 0);
	snprintf(prefix, sizeof(prefix), "%s/prefix", dir);
	snprintf(build, sizeof(build), "%s/build", dir);
	snprintf(srcdir, sizeof(srcdir), "%s/thirdparty", dir);
	snprintf(rundir, sizeof(rundir), "%s/run", dir);
	cr_assert_eq(mkdir(build, 0755), 0);
	cr_assert_eq(mkdir(srcdir, 0755), 0);
	cr_assert_eq(mkdir(rundir, 0755), 0);
}

static void teardown(void)
{
	if (daemon_a.pid > 0)
		daemon_stop(&daemon_a, SIGKILL, 5000);
	if (client.nc)
		js_client_close(&client);
	if (server.pid > 0)
		nats_server_stop(&server);
	tmpdir_remove(dir);
}

TestSuite(install, .init = setup, .fini = teardown, .timeout = 600);

/* Run a shell command line; its output (stdout and stderr) into *out. */
static int sh(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sh(char **out, const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	char full[4200];
	snprintf(full, sizeof(full), "{ %s ; } 2>&1", cmd);
	FILE *p = popen(full, "r");
	cr_assert_not_null(p, "cannot run %s", cmd);
	size_t cap = 8192, len = 0, n;
	char *buf = malloc(cap);
	cr_assert_not_null(buf);
	while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
		len += n;
		if (cap - len < 2) {
			cap *= 2;
			buf = realloc(buf, cap);
			cr_assert_not_null(buf);
		}
	}
	buf[len] = '\0';
	int st = pclose(p);
	if (out)
		*out = buf;
	else
		free(buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The tail of a long output, for a failure message. */
static const char *tail(const char *s)
{
	size_t len = strlen(s);
	return len > 3000 ? s + len - 3000 : s;
}

/* make distdir, configure --prefix, make, make install, each logged into
 * the build folder; the make of the test run that runs this must not leak
 * in. */
static void install_into_prefix(void)
{
	char *out = NULL;
	int st = sh(
		&out,
		"cd '%s' && unset MAKEFLAGS MFLAGS MAKELEVEL DESTDIR && "
		"make -C '%s' distdir distdir='%s/source' >distdir.log 2>&1 && "
		"'%s/source/configure' -q --prefix='%s' >configure.log 2>&1 && "
		"make -j2 >make.log 2>&1 && make install >install.log 2>&1 || "
		"{ tail -n 40 distdir.log configure.log make.log install.log 2>/dev/null; exit 1; }",
		build, TOP_BUILDDIR, dir, dir, prefix);
	cr_assert_eq(st, 0, "configure, make and make install into %s:\n%s", prefix, tail(out));
	free(out);
}

static void expect_file(const char *rel, mode_t exec_bits)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", prefix, rel);
	struct stat st;
	cr_expect(stat(path, &st) == 0 && S_ISREG(st.st_mode), "installed: %s", rel);
	if (exec_bits)
		cr_expect((st.st_mode & exec_bits) == exec_bits, "%s is executable", rel);
}

/* The roff between the example markers of the installed page, unescaped:
 * the text a reader of the page sees. */
static char *example_from_page(const char *page_path)
{
	char *page = file_read(page_path);
	cr_assert_not_null(page, "cannot read %s", page_path);
	const char *begin = strstr(page, ".\\\" example module begins");
	cr_assert_not_null(begin, "the page marks its example");
	begin = strchr(begin, '\n') + 1;
	const char *end = strstr(begin, ".\\\" example module ends");
	cr_assert_not_null(end);
	char *text = malloc((size_t)(end - begin) + 1), *w = text;
	cr_assert_not_null(text);
	for (const char *r = begin; r < end;) {
		if (r[0] == '\\' && r[1] == 'e') {
			*w++ = '\\';
			r += 2;
		} else if (r[0] == '\\' && r[1] == '&') {
			r += 2;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
	free(page);
	return text;
}

static int count_in(const char *text, const char *what)
{
	int n = 0;
	for (const char *p = text; p && (p = strstr(p, what)); p += strlen(what))
		n++;
	return n;
}

Test(install, a_third_party_module_builds_against_the_install_and_runs_in_it)
{
	/* Nothing of the installed copy runs under ThreadSanitizer, and the
	 * other builds run this test. */
	SKIP_UNDER_TSAN("the installed copy is built without it");
	install_into_prefix();

	/* --- what make install put where */
	expect_file("sbin/choria-adapterd", 0111);
	expect_file("sbin/choria-adapterd-import", 0111);
	expect_file("lib/choria-adapterd/ingest_choria.so", 0);
	expect_file("lib/choria-adapterd/stream_jetstream.so", 0);
	expect_file("lib/choria-adapterd/stream_file.so", 0);
	expect_file("include/choria-adapterd/cad_module.h", 0);
	expect_file("include/choria-adapterd/cad_clock.h", 0);
	expect_file("include/choria-adapterd/cad_ratelimit.h", 0);
	expect_file("include/choria-adapterd/cad_text.h", 0);
	expect_file("lib/pkgconfig/choria-adapterd.pc", 0);
	expect_file("etc/choria-adapterd/choria-adapterd.conf", 0);
	expect_file("share/man/man8/choria-adapterd.8", 0);
	expect_file("share/man/man8/choria-adapterd-import.8", 0);
	expect_file("share/man/man5/choria-adapterd.conf.5", 0);
	expect_file("share/man/man3/choria-adapterd-module.3", 0);
	expect_file("lib/systemd/system/choria-adapterd.service", 0);
	char *out = NULL;
	cr_expect_eq(sh(&out, "ls '%s/lib/choria-adapterd' | grep -v '[.]so$'", prefix), 1,
		     "only modules in the module folder:\n%s", out);
	free(out);

	/* --- the example, exactly as the installed page shows it */
	char page[1024], example[1024];
	snprintf(page, sizeof(page), "%s/share/man/man3/choria-adapterd-module.3", prefix);
	char *text = example_from_page(page);
	char *shipped_path = NULL;
	cr_assert(asprintf(&shipped_path, "%s/tests/examples/stream_stdout.c", TOP_SRCDIR) > 0);
	char *shipped = file_read(shipped_path);
	cr_assert_str_eq(text, shipped, "the page shows tests/examples/stream_stdout.c");
	free(shipped);
	free(shipped_path);
	cr_assert_eq(tmpdir_write(srcdir, "stream_stdout.c", text, example, sizeof(example)), 0);
	free(text);

	/* --- built out of the tree, with nothing but pkg-config's flags */
	int st = sh(
		&out,
		"cd '%s' && export PKG_CONFIG_PATH='%s/lib/pkgconfig' && "
		"cc -fPIC -shared -fvisibility=hidden -Wall -Wextra -Werror -Wshadow "
		"-Wstrict-prototypes -Wmissing-prototypes $(pkg-config --cflags choria-adapterd) "
		"-o stream_stdout.so stream_stdout.c && "
		"cp stream_stdout.so \"$(pkg-config --variable=moduledir choria-adapterd)/\"",
		srcdir, prefix);
	cr_assert_eq(st, 0, "the example builds and installs:\n%s", out);
	free(out);
	st = sh(&out, "nm -D --defined-only '%s/stream_stdout.so' | awk '$2 == \"T\" {print $3}'",
		srcdir);
	cr_assert_eq(st, 0);
	cr_expect_str_eq(out, "cad_module_entry\n", "the one exported function");
	free(out);
	st = sh(&out,
		"PKG_CONFIG_PATH='%s/lib/pkgconfig' pkg-config --variable=moduledir "
		"choria-adapterd",
		prefix);
	char want[2048];
	snprintf(want, sizeof(want), "%s/lib/choria-adapterd\n", prefix);
	cr_expect_str_eq(out, want, "moduledir is the daemon's default module folder");
	free(out);

	/* --- the installed daemon, with its own default module folder */
	cr_assert_eq(nats_server_start(&server, dir, 0, NULL), 0, "nats-server must start");
	cr_assert_eq(js_client_open(&client, server.url), 0);
	char out_path[800], *conf = NULL;
	snprintf(out_path, sizeof(out_path), "%s/kept.jsonl", rundir);
	cr_assert(
		asprintf(
			&conf,
			"identity = \"installed.test\"\n"
			"adapter printed {\n"
			"  ingest { type = \"choria\" servers = {\"%s\"} topic = \"choria.discovery\"\n"
			"           security = \"none\" workers = 2 }\n"
			"  stream { type = \"stdout\" prefix = \"node\" body_bytes = 8 workers = 3 }\n"
			"}\n"
			"adapter kept {\n"
			"  ingest { type = \"choria\" servers = {\"%s\"} topic = \"choria.discovery\"\n"
			"           security = \"none\" }\n"
			"  stream { type = \"file\" path = \"%s\" }\n"
			"}\n",
			server.url, server.url, out_path) > 0);
	char bin[800], conf_path[800];
	snprintf(bin, sizeof(bin), "%s/sbin/choria-adapterd", prefix);
	cr_assert_eq(tmpdir_write(rundir, "check.conf", conf, conf_path, sizeof(conf_path)), 0);
	st = sh(&out, "'%s' -t -c '%s'", bin, conf_path);
	cr_assert_eq(st, 0, "-t accepts it:\n%s", out);
	snprintf(want, sizeof(want), "modules from %s/lib/choria-adapterd", prefix);
	cr_expect_not_null(strstr(out, want), "%s", out);
	cr_expect_not_null(strstr(out, "adapter printed: ingest choria (2 workers"), "%s", out);
	cr_expect_not_null(strstr(out, "-> stream stdout (3 workers, prefix node, 8 body bytes)"),
			   "%s", out);
	snprintf(want, sizeof(want), "-> stream file (10 workers, file %s, fsync never)", out_path);
	cr_expect_not_null(strstr(out, want), "%s", out);
	free(out);

	cr_assert_eq(daemon_start_bin(&daemon_a, bin, rundir, conf), 0);
	free(conf);
	if (!daemon_wait_log(&daemon_a, "running 2 adapters", 15000))
		cr_assert_fail("the installed daemon runs:\n%s", file_read(daemon_a.log));
	cr_expect(daemon_wait_log(&daemon_a, "adapter printed: stdout: printing messages as 'node'",
				  1000));
	nats_Sleep(300);
	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 20, 0x3d);
	for (int i = 0; i < 20; i++) {
		char rid[33], body[128], line[512];
		pipeline_request_id(rid, 0x3d, i);
		int blen = snprintf(body, sizeof(body), "{\"n\":%d,\"html\":\"<b>&</b>\"}", i);
		snprintf(line, sizeof(line), "node node-%d.example.net %s %d %d %.8s\n", i, rid,
			 1520088557 + i, blen, body);
		cr_assert(daemon_wait_log(&daemon_a, line, 10000), "printed: %s", line);
	}
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0, "SIGTERM: drained, exit 0");
	char *log = file_read(daemon_a.log);
	cr_expect_eq(count_in(log, "\nnode "), 20, "one line per message:\n%s", log);
	free(log);
	struct adapter_counts n;
	cr_assert(pipeline_counts(&daemon_a, "printed", &n));
	cr_expect(n.received == 20 && n.published == 20 && n.lost + n.dropped + n.rejected == 0);
	cr_assert(pipeline_counts(&daemon_a, "kept", &n));
	cr_expect(n.received == 20 && n.published == 20 && n.lost + n.dropped + n.rejected == 0);
	char *kept = file_read(out_path);
	cr_expect_eq(count_in(kept, "{\"protocol\":\"choria:adapters:file:output:1\""), 20);
	free(kept);

	/* --- the installed unit, as systemd would read it */
	char unit[900];
	snprintf(unit, sizeof(unit), "%s/lib/systemd/system/choria-adapterd.service", prefix);
	char *unit_text = file_read(unit);
	cr_assert_not_null(unit_text);
	snprintf(want, sizeof(want),
		 "\nExecStart=%s -c %s/etc/choria-adapterd/choria-adapterd.conf\n", bin, prefix);
	cr_expect_not_null(strstr(unit_text, want), "%s", unit_text);
	snprintf(want, sizeof(want), "\nExecStartPre=%s -t -c ", bin);
	cr_expect_not_null(strstr(unit_text, want), "%s", unit_text);
	char config_h[900];
	snprintf(config_h, sizeof(config_h), "%s/build_config.h", build);
	char *defs = file_read(config_h);
	bool notify = defs && strstr(defs, "#define HAVE_LIBSYSTEMD 1");
	free(defs);
	cr_expect_not_null(strstr(unit_text, notify ? "\nType=notify\n" : "\nType=simple\n"),
			   "Type follows libsystemd (%s):\n%s", notify ? "found" : "not found",
			   unit_text);
	cr_expect_null(strstr(unit_text, "@NOTIFY@"), "placeholders are gone");
	cr_expect_null(strstr(unit_text, "@SIMPLE@"), "placeholders are gone");
	cr_expect_null(strstr(unit_text, "@SBINDIR@"), "placeholders are gone");
	free(unit_text);
	if (*SYSTEMD_ANALYZE_BIN) {
		st = sh(&out, "'%s' verify --man=no '%s'", SYSTEMD_ANALYZE_BIN, unit);
		cr_expect(st == 0 && *out == '\0', "systemd-analyze verify (%d):\n%s", st, out);
		free(out);
	}

	/* --- and make uninstall takes it all back, the dropped-in module
	 * being the operator's */
	char dropped[900];
	snprintf(dropped, sizeof(dropped), "%s/lib/choria-adapterd/stream_stdout.so", prefix);
	cr_assert_eq(unlink(dropped), 0);
	st = sh(&out, "cd '%s' && unset MAKEFLAGS MFLAGS MAKELEVEL DESTDIR && make uninstall",
		build);
	cr_assert_eq(st, 0, "%s", tail(out));
	free(out);
	st = sh(&out, "find '%s' -type f", prefix);
	cr_expect_str_eq(out, "", "files left after make uninstall:\n%s", out);
	free(out);
}
