/* SPDX-License-Identifier: Apache-2.0 */
/*
 * choria-adapterd-import: broker.conf files in the shapes Puppet's
 * choria::broker class writes become configurations that the built daemon
 * checks with -t; what cannot be carried over is a comment and a warning,
 * and the exit status says which.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "certs.h"
#include "daemon_proc.h"
#include "tmpdir.h"

static char dir[512], moddir[600], ssldir[600];

/* Puppet's SSL folder for broker1.example.net, from the test PKI. */
static void make_ssldir(void)
{
	char path[700];
	snprintf(ssldir, sizeof(ssldir), "%s/ssl", dir);
	const char *sub[] = {"", "/certs", "/private_keys"};
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s%s", ssldir, sub[i]);
		cr_assert_eq(mkdir(path, 0700), 0, "mkdir %s", path);
	}
	snprintf(path, sizeof(path), "%s/certs/ca.pem", ssldir);
	cr_assert_eq(symlink(test_pki_path("ca.pem"), path), 0);
	snprintf(path, sizeof(path), "%s/certs/broker1.example.net.pem", ssldir);
	cr_assert_eq(symlink(test_pki_path("tls_client.pem"), path), 0);
	snprintf(path, sizeof(path), "%s/private_keys/broker1.example.net.pem", ssldir);
	cr_assert_eq(symlink(test_pki_path("leaf.key"), path), 0);
}

static void setup(void)
{
	cr_assert_eq(tmpdir_make(dir, sizeof(dir)), 0);
	cr_assert_eq(daemon_modules_dir(moddir, sizeof(moddir), dir), 0);
	make_ssldir();
}

static void teardown(void)
{
	tmpdir_remove(dir);
}

TestSuite(import, .init = setup, .fini = teardown, .timeout = 60);

struct run {
	int status;
	char *out, *err;
};

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

/* Run the built importer on `arg` (a path, or "-" with `input` as its
 * standard input). */
static struct run import_run(const char *arg, const char *input)
{
	char bin[600], out[700], err[700], in[700] = "/dev/null";
	snprintf(bin, sizeof(bin), "%s/choria-adapterd-import", TOP_BUILDDIR);
	snprintf(out, sizeof(out), "%s/import.out", dir);
	snprintf(err, sizeof(err), "%s/import.err", dir);
	if (input)
		cr_assert_eq(tmpdir_write(dir, "stdin.conf", input, in, sizeof(in)), 0);
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int i = open(in, O_RDONLY), o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600),
		    e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (i < 0 || o < 0 || e < 0 || dup2(i, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(127);
		execl(bin, bin, arg, (char *)NULL);
		_exit(127);
	}
	int st = 0;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	struct run r = {.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128,
			.out = file_read(out),
			.err = file_read(err)};
	cr_assert_not_null(r.out);
	cr_assert_not_null(r.err);
	return r;
}

static struct run import_text(const char *broker_conf)
{
	char path[700];
	cr_assert_eq(tmpdir_write(dir, "broker.conf", broker_conf, path, sizeof(path)), 0);
	return import_run(path, NULL);
}

/* The built daemon accepts `conf` with -t and the built modules. */
static void assert_checks(const char *conf)
{
	char path[700];
	cr_assert_eq(tmpdir_write(dir, "imported.conf", conf, path, sizeof(path)), 0);
	char *out = NULL;
	int st = daemon_run_cmd(&out, dir, "-t", "-c", path, "-M", moddir, NULL);
	cr_assert_eq(st, 0, "choria-adapterd -t refuses the output (%d):\n%s\n%s", st, out, conf);
	free(out);
}

static void assert_has(const char *text, const char *want)
{
	cr_assert_not_null(strstr(text, want), "no '%s' in:\n%s", want, text);
}

static int count_lines(const char *text)
{
	int n = 0;
	for (const char *p = text; *p; p++)
		n += *p == '\n';
	return n;
}

Test(import, the_node_data_adapter_of_puppet_carries_over_whole)
{
	char *conf = NULL;
	cr_assert(
		asprintf(
			&conf,
			"# Managed by Puppet\n"
			"\n"
			"identity = broker1.example.net\n"
			"loglevel = info\n"
			"plugin.choria.ssldir = %s\n"
			"plugin.choria.broker_network = true\n"
			"plugin.choria.network.client_port = 4223\n"
			"plugin.choria.network.listen_address = ::\n"
			"plugin.choria.stats_port = 8222\n"
			"plugin.choria.adapters = node_data\n"
			"plugin.choria.adapter.node_data.type = jetstream\n"
			"plugin.choria.adapter.node_data.queue_len = 1000\n"
			"plugin.choria.adapter.node_data.stream.servers = js1.example.net:4222,js2.example.net:4222\n"
			"plugin.choria.adapter.node_data.stream.topic = choria.node_metadata.%%s\n"
			"plugin.choria.adapter.node_data.stream.workers = 10\n"
			"plugin.choria.adapter.node_data.ingest.topic = choria.discovery\n"
			"plugin.choria.adapter.node_data.ingest.protocol = request\n"
			"plugin.choria.adapter.node_data.ingest.workers = 10\n",
			ssldir) > 0);
	struct run r = import_text(conf);
	free(conf);
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	cr_assert_str_eq(r.err, "", "no warnings");
	assert_has(r.out, "identity        = \"broker1.example.net\"\n");
	assert_has(r.out, "log_level       = \"info\"\n");
	assert_has(r.out, "\nadapter node_data {\n    queue_len       = 1000\n");
	assert_has(r.out, "servers         = {\"nats://127.0.0.1:4223\"}\n");
	assert_has(r.out, "topic           = \"choria.discovery\"\n");
	assert_has(r.out, "protocol        = \"request\"\n");
	assert_has(r.out, "security        = \"verify\"\n");
	char want[900];
	snprintf(want, sizeof(want), "ca              = \"%s/certs/ca.pem\"\n", ssldir);
	assert_has(r.out, want);
	snprintf(want, sizeof(want), "tls_cert        = \"%s/certs/broker1.example.net.pem\"\n",
		 ssldir);
	assert_has(r.out, want);
	snprintf(want, sizeof(want),
		 "tls_key         = \"%s/private_keys/broker1.example.net.pem\"\n", ssldir);
	assert_has(r.out, want);
	assert_has(r.out, "type            = \"jetstream\"\n");
	assert_has(
		r.out,
		"servers         = {\"nats://js1.example.net:4222\", \"nats://js2.example.net:4222\"}\n");
	assert_has(r.out, "topic           = \"choria.node_metadata.%s\"\n");
	assert_has(r.out, "workers         = 10\n");
	assert_has(r.out, "output_protocol = \"choria:adapters:choria_streams:output:1\"\n");
	assert_checks(r.out);
	run_free(&r);
}

Test(import, the_file_provider_lists_with_spaces_and_the_middleware)
{
	char *conf = NULL;
	cr_assert(
		asprintf(
			&conf,
			"; written by hand\n"
			"  identity=broker2.example.net  \n"
			"plugin.security.provider = file\n"
			"plugin.security.file.ca = %s\n"
			"plugin.security.file.certificate = %s\n"
			"plugin.security.file.key = %s\n"
			"plugin.choria.middleware_hosts = nats1.example.net:4222, nats://nats2.example.net:4222\n"
			"plugin.choria.adapters = discovery, replies ,registration\n"
			"plugin.choria.adapter.discovery.type = choria_streams\n"
			"plugin.choria.adapter.discovery.ingest.topic = choria.discovery\n"
			"plugin.choria.adapter.replies.type=nats_stream\n"
			"plugin.choria.adapter.replies.stream.servers=stan1.example.net:4222\n"
			"plugin.choria.adapter.replies.stream.clusterid=choria\n"
			"plugin.choria.adapter.replies.stream.topic=replies.%%s\n"
			"plugin.choria.adapter.replies.ingest.topic=choria.reply.>\n"
			"plugin.choria.adapter.replies.ingest.protocol=reply\n"
			"plugin.choria.adapter.registration.type = jetstream\n"
			"plugin.choria.adapter.registration.queue_len = 50\n"
			"plugin.choria.adapter.registration.queue_len = 5000\n"
			"plugin.choria.adapter.registration.ingest.topic = choria.registration\n",
			test_pki_path("ca.pem"), test_pki_path("tls_client.pem"),
			test_pki_path("leaf.key")) > 0);
	struct run r = import_text(conf);
	free(conf);
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	cr_assert_str_eq(r.err, "");
	assert_has(r.out, "identity        = \"broker2.example.net\"\n");
	char want[900];
	snprintf(want, sizeof(want), "tls_ca          = \"%s\"\n", test_pki_path("ca.pem"));
	assert_has(r.out, want);
	snprintf(want, sizeof(want), "ca              = \"%s\"\n", test_pki_path("ca.pem"));
	assert_has(r.out, want);
	assert_has(r.out, "adapter discovery {\n");
	assert_has(r.out, "adapter replies {\n");
	assert_has(r.out, "adapter registration {\n    queue_len       = 5000\n");
	/* The broker's own port by default, the middleware for streams
	 * that name no servers. */
	assert_has(r.out, "servers         = {\"nats://127.0.0.1:4222\"}\n");
	assert_has(
		r.out,
		"servers         = {\"nats://nats1.example.net:4222\", \"nats://nats2.example.net:4222\"}\n");
	assert_has(r.out, "type            = \"natsstream\"\n");
	assert_has(r.out, "servers         = {\"nats://stan1.example.net:4222\"}\n");
	assert_has(r.out, "clusterid       = \"choria\"\n");
	assert_has(r.out, "output_protocol = \"choria:adapters:natsstream:output:1\"\n");
	assert_has(r.out, "protocol        = \"reply\"\n");
	assert_checks(r.out);
	run_free(&r);
}

Test(import, what_cannot_carry_over_is_a_comment_and_a_warning)
{
	char *conf = NULL;
	cr_assert(asprintf(&conf,
			   "identity = broker1.example.net\n"
			   "plugin.choria.ssldir = %s\n"
			   "plugin.choria.adapters = node_data\n"
			   "plugin.choria.adapter.node_data.type = jetstream\n"
			   "plugin.choria.adapter.node_data.ingest.topic = choria.discovery\n"
			   "plugin.choria.adapter.node_data.ingest.workers = many\n"
			   "plugin.choria.adapter.node_data.stream.compression = s2\n"
			   "plugin.choria.adapter.old.type = jetstream\n",
			   ssldir) > 0);
	struct run r = import_text(conf);
	free(conf);
	cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
	assert_has(
		r.out,
		"        # not carried over (not a whole number): plugin.choria.adapter.node_data.ingest.workers = many\n");
	assert_has(
		r.out,
		"    # not carried over (unknown adapter setting): plugin.choria.adapter.node_data.stream.compression = s2\n");
	assert_has(
		r.out,
		"# not carried over (not an adapter in plugin.choria.adapters): plugin.choria.adapter.old.type = jetstream\n");
	assert_has(r.err, ":6: plugin.choria.adapter.node_data.ingest.workers: not a whole number");
	assert_has(
		r.err,
		":7: plugin.choria.adapter.node_data.stream.compression: unknown adapter setting");
	assert_has(r.err,
		   ":8: plugin.choria.adapter.old.type: not an adapter in plugin.choria.adapters");
	cr_assert_eq(count_lines(r.err), 3, "one warning a setting:\n%s", r.err);
	assert_checks(r.out);
	run_free(&r);
}

Test(import, standard_input_is_read_with_a_dash)
{
	char *conf = NULL;
	cr_assert(asprintf(&conf,
			   "identity = broker1.example.net\n"
			   "plugin.choria.ssldir = %s\n"
			   "plugin.choria.adapters = a\n"
			   "plugin.choria.adapter.a.ingest.topic = choria.discovery\n"
			   "plugin.choria.adapter.a.type = jetstream\n",
			   ssldir) > 0);
	struct run r = import_run("-", conf);
	free(conf);
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	assert_has(r.out, "adapter a {\n");
	assert_checks(r.out);
	run_free(&r);
}

Test(import, unreadable_or_malformed_input_exits_2_and_writes_nothing)
{
	struct run r = import_text("plugin.choria.adapters = a\nthis line has no value\n");
	cr_assert_eq(r.status, 2);
	cr_assert_str_eq(r.out, "");
	assert_has(r.err, "line 2: not a `key = value` line");
	run_free(&r);

	r = import_text("plugin.choria.adapters = a\n = b\n");
	cr_assert_eq(r.status, 2);
	assert_has(r.err, "line 2: '' is not a configuration key");
	run_free(&r);

	char missing[700];
	snprintf(missing, sizeof(missing), "%s/no-such-broker.conf", dir);
	r = import_run(missing, NULL);
	cr_assert_eq(r.status, 2);
	cr_assert_str_eq(r.out, "");
	assert_has(r.err, "cannot read");
	run_free(&r);

	r = import_run("-x", NULL);
	cr_assert_eq(r.status, 2);
	assert_has(r.err, "usage:");
	run_free(&r);
}

Test(import, a_broker_without_adapters_is_a_warning)
{
	struct run r = import_text("identity = broker1.example.net\n");
	cr_assert_eq(r.status, 1);
	assert_has(r.err, "no adapters to carry over");
	run_free(&r);
}

int main(int argc, char **argv)
{
	return test_pki_main(argc, argv);
}
