/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Configuration loading. Each tests/data/conf/bad/NAME.conf must be refused
 * with every line of its NAME.err in the log (file:line: section: message).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_opts.h"
#include "config_text.h"
#include "conf_suite.h"
#include "daemon_proc.h"
#include "tmpdir.h"

TestSuite(config, .init = conf_suite_setup, .fini = conf_suite_teardown);

/* Load a bad file from its own folder (so messages name it short) with
 * stderr captured, and check every expected line is there. */
static void expect_refused(const char *name)
{
	char conf[256], err[256], log[700];
	snprintf(conf, sizeof(conf), "%s.conf", name);
	snprintf(err, sizeof(err), "%s.err", name);
	snprintf(log, sizeof(log), "%s/stderr.log", conf_suite_dir);
	cr_assert_eq(chdir(TOP_SRCDIR "/tests/data/conf/bad"), 0);

	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	cr_assert_not_null(freopen(log, "w", stderr));
	struct config *c = NULL;
	int rc = config_load(&c, conf, conf_suite_moddir);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);

	char *out = file_read(log);
	char *want = file_read(err);
	cr_assert_not_null(want, "missing %s", err);
	cr_assert_eq(rc, -EINVAL, "%s must be refused; log:\n%s", conf, out);
	cr_assert_null(c);
	char *save = NULL;
	int lines = 0;
	for (char *line = strtok_r(want, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		cr_expect_not_null(strstr(out, line), "%s: expected\n  %s\nin the log:\n%s", conf,
				   line, out);
		lines++;
	}
	cr_assert_gt(lines, 0);
	free(out);
	free(want);
}

#define BAD(name, file)               \
	Test(config, refuses_##name)  \
	{                             \
		expect_refused(file); \
	}

BAD(unknown_global_option, "01-unknown-global")
BAD(unknown_module_option, "02-unknown-ingest-option")
BAD(wrong_value_type, "03-wrong-type")
BAD(missing_required_option, "04-missing-topic")
BAD(unknown_module_type, "05-unknown-module-type")
BAD(duplicate_adapter_name, "06-duplicate-adapter")
BAD(value_not_in_choices, "07-bad-choice")
BAD(missing_stream_block, "08-missing-stream")
BAD(workers_out_of_range, "09-workers-out-of-range")
BAD(unknown_log_level, "10-bad-log-level")
BAD(syntax_error, "11-syntax-error")
BAD(no_adapter, "12-no-adapter")
BAD(adapter_name_not_a_token, "13-bad-adapter-name")
BAD(missing_type, "14-missing-type")
BAD(option_of_another_kind, "15-option-of-other-kind")
BAD(every_error_at_once, "16-several-errors")
BAD(metrics_listen_not_an_address, "17-bad-metrics-listen")
BAD(line_numbers_count_comment_lines_once, "18-comments-keep-lines")
BAD(queue_wait_out_of_range, "19-queue-wait-out-of-range")
BAD(workers_over_the_module_limit, "20-workers-over-module-max")
BAD(duplicate_adapter_name_with_other_types, "21-duplicate-adapter-other-type")

/* A comment of 4 MB on one line: the parser must get one blank for it,
 * not a 4 MB run of them, and the lines after it keep their numbers. */
static char *big_comment_conf(size_t comment_len, const char *tail)
{
	size_t tail_len = strlen(tail);
	char *text = malloc(comment_len + tail_len + 64);
	cr_assert_not_null(text);
	char *p = text + sprintf(text, "identity = \"x\" # ");
	memset(p, 'c', comment_len);
	p += comment_len;
	p += sprintf(p, "\n/* %s */\n", "block");
	memcpy(p, tail, tail_len + 1);
	return text;
}

Test(config, a_long_comment_shrinks_to_one_blank)
{
	char *text = big_comment_conf(4u << 20, "adapter a { }\n");
	config_text_strip_comments(text);
	cr_assert_str_eq(text, "identity = \"x\"\n\nadapter a { }\n");
	free(text);
}

Test(config, a_file_with_a_4mb_comment_line_loads_and_keeps_its_line_numbers)
{
	char path[700], log[700];
	char *text = big_comment_conf(4u << 20,
				      "adapter a {\n ingest { type = \"choria\" topic = \"t\" }\n"
				      " stream { type = \"jetstream\" }\n}\n");
	cr_assert_eq(tmpdir_write(conf_suite_dir, "long.conf", text, path, sizeof(path)), 0);
	struct config *c = NULL;
	cr_assert_eq(config_load(&c, path, conf_suite_moddir), 0);
	cr_assert_str_eq(c->identity, "x");
	cr_assert_eq(c->adapters[0].line, 6, "the block ends on line 6");
	config_free(c);
	free(text);

	text = big_comment_conf(4u << 20, "colour = 1\n");
	cr_assert_eq(tmpdir_write(conf_suite_dir, "long.conf", text, path, sizeof(path)), 0);
	snprintf(log, sizeof(log), "%s/stderr.log", conf_suite_dir);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	cr_assert_not_null(freopen(log, "w", stderr));
	int rc = config_load(&c, path, conf_suite_moddir);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	char *out = file_read(log);
	cr_assert_eq(rc, -EINVAL);
	cr_assert_not_null(strstr(out, "long.conf:3: no such option 'colour'"), "%s", out);
	free(out);
	free(text);
}

Test(config, comment_characters_inside_strings_are_kept)
{
	char path[700];
	cr_assert_eq(tmpdir_write(conf_suite_dir, "strings.conf",
				  "# identity = \"commented out\"\n"
				  "identity = \"a#b//c /* d */ \\\" e\" // the real one\n"
				  "/* adapter x { } */\n"
				  "adapter a {\n ingest { type = \"choria\" topic = \"t\" }\n"
				  " stream { type = \"jetstream\" }\n}\n",
				  path, sizeof(path)),
		     0);
	struct config *c = NULL;
	cr_assert_eq(config_load(&c, path, conf_suite_moddir), 0);
	cr_assert_str_eq(c->identity, "a#b//c /* d */ \" e");
	cr_assert_eq(c->n_adapters, 1);
	config_free(c);
}

Test(config, a_secret_not_among_its_choices_is_refused_without_printing_it)
{
	char path[700], log[700];
	cr_assert_eq(tmpdir_write(conf_suite_dir, "secret.conf",
				  "identity = \"x\"\n"
				  "adapter a {\n ingest { type = \"good\" key = \"hunter2\" }\n"
				  " stream { type = \"good\" }\n}\n",
				  path, sizeof(path)),
		     0);
	snprintf(log, sizeof(log), "%s/stderr.log", conf_suite_dir);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	cr_assert_not_null(freopen(log, "w", stderr));
	struct config *c = NULL;
	int rc = config_load(&c, path, TOP_BUILDDIR "/tests/modules/.libs");
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	char *out = file_read(log);
	cr_assert_eq(rc, -EINVAL);
	cr_assert_not_null(strstr(out, "ingest: key: the value is not one of: alpha, beta"), "%s",
			   out);
	cr_assert_null(strstr(out, "hunter2"), "the secret was printed:\n%s", out);
	free(out);
}

Test(config, missing_file_is_an_error)
{
	struct config *c = NULL;
	cr_assert_eq(config_load(&c, "/nonexistent/choria-adapterd.conf", conf_suite_moddir),
		     -ENOENT);
}

Test(config, loads_the_design_example)
{
	struct config *c = NULL;
	int rc = config_load(&c, TOP_SRCDIR "/tests/data/conf/good/design.conf", conf_suite_moddir);
	cr_assert_eq(rc, 0);
	cr_assert_str_eq(c->identity, "broker1.example.net");
	cr_assert_str_eq(c->module_path, conf_suite_moddir, "-M overrides module_path");
	cr_assert_str_eq(c->metrics_listen, "127.0.0.1:8222");
	cr_assert_eq(c->drain_timeout, 10);
	cr_assert_eq(c->n_adapters, 2);

	struct adapter_config *a = &c->adapters[0];
	cr_assert_str_eq(a->name, "node_data");
	cr_assert_eq(a->queue_len, 1000);
	cr_assert_eq(a->queue_wait_ms, 500);
	cr_assert_eq(a->max_bytes, 64L * 1024 * 1024);
	cr_assert_eq(a->ingest.workers, 10);
	cr_assert_str_eq(a->ingest.module->type, "choria");
	cr_assert_str_eq(block_cfg_str(&a->ingest, "topic"), "choria.discovery");
	cr_assert_str_eq(block_cfg_str(&a->ingest, "ca"), "/etc/choria/ca.pem");
	cr_assert_eq(block_cfg_list_len(&a->stream, "servers"), 2);
	cr_assert_str_eq(block_cfg_list_str(&a->stream, "servers", 1),
			 "nats://js2.example.net:4222");

	/* Defaults: host-owned and module-declared. */
	struct adapter_config *b = &c->adapters[1];
	cr_assert_eq(b->queue_len, 1000);
	cr_assert_eq(b->queue_wait_ms, 250);
	cr_assert_eq(b->max_bytes, 256L * 1024 * 1024);
	cr_assert_eq(b->stream.workers, 10);
	cr_assert_str_eq(block_cfg_str(&b->ingest, "protocol"), "reply");
	cr_assert_eq(block_cfg_list_len(&b->ingest, "servers"), 1);
	cr_assert_str_eq(block_cfg_list_str(&b->ingest, "servers", 0), "nats://127.0.0.1:4222");
	cr_assert_str_eq(block_cfg_str(&b->stream, "topic"), b->name,
			 "the adapter's name, filled in by the host");
	cr_assert_eq(block_cfg_int(&b->stream, "max_inflight"), 256);
	cr_assert_eq(c->n_modules, 2, "each module is loaded once");
	config_free(c);
}

Test(config, identity_defaults_to_the_host_name)
{
	char path[700];
	cr_assert_eq(tmpdir_write(conf_suite_dir, "min.conf",
				  "adapter a {\n ingest { type = \"choria\" topic = \"t\" }\n"
				  " stream { type = \"jetstream\" }\n}\n",
				  path, sizeof(path)),
		     0);
	struct config *c = NULL;
	cr_assert_eq(config_load(&c, path, conf_suite_moddir), 0);
	char host[256];
	gethostname(host, sizeof(host));
	cr_assert_str_eq(c->identity, host);
	cr_assert_str_eq(c->log_level, "info");
	cr_assert_str_eq(c->log_file, "stderr");
	config_free(c);
}

/* A reload opens the module types already loaded from where they came,
 * whatever module_path says now; a type it names first comes from the new
 * module_path. */
#define RELOAD_ADAPTER(type, extra)                                  \
	"adapter a {\n ingest { type = \"choria\" topic = \"t\" }\n" \
	" stream { type = \"" type "\" " extra " }\n}\n"

Test(config, a_reload_keeps_loaded_modules_and_takes_new_ones_from_the_new_module_path)
{
	char first[700], second[700], third[700], *one = NULL, *two = NULL, *three = NULL;
	cr_assert(asprintf(&one, "module_path = \"%s\"\n" RELOAD_ADAPTER("jetstream", ""),
			   conf_suite_moddir) > 0);
	cr_assert(asprintf(&two, "module_path = \"%s/none\"\n" RELOAD_ADAPTER("jetstream", ""),
			   conf_suite_dir) > 0);
	cr_assert(
		asprintf(&three,
			 "module_path = \"%s/none\"\n" RELOAD_ADAPTER("file", "path = \"/tmp/x\""),
			 conf_suite_dir) > 0);
	cr_assert_eq(tmpdir_write(conf_suite_dir, "first.conf", one, first, sizeof(first)), 0);
	cr_assert_eq(tmpdir_write(conf_suite_dir, "second.conf", two, second, sizeof(second)), 0);
	cr_assert_eq(tmpdir_write(conf_suite_dir, "third.conf", three, third, sizeof(third)), 0);

	struct config *running = NULL, *again = NULL;
	cr_assert_eq(config_load(&running, first, NULL), 0);
	cr_assert_eq(config_load_again(&again, second, NULL, running), 0,
		     "choria and jetstream are loaded already");
	for (size_t i = 0; i < again->n_modules; i++)
		cr_assert_eq(strncmp(again->modules[i]->path, conf_suite_moddir,
				     strlen(conf_suite_moddir)),
			     0, "%s", again->modules[i]->path);
	config_free(again);
	again = NULL;
	cr_assert_eq(config_load_again(&again, third, NULL, running), -EINVAL,
		     "the file module is not in the new module_path");
	cr_assert_null(again);
	config_free(running);
	free(one);
	free(two);
	free(three);
}
