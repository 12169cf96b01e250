/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The effective configuration a reload compares: defaults written out,
 * options reordered and the file reformatted are no change; a changed
 * option of the adapter, its ingest or its stream is.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_effective.h"
#include "conf_suite.h"
#include "daemon_proc.h"
#include "tmpdir.h"

TestSuite(config_effective, .init = conf_suite_setup, .fini = conf_suite_teardown);

#define BASE_INGEST \
	"ingest { type = \"choria\" topic = \"t\" servers = {\"nats://127.0.0.1:1\"} }\n"
#define BASE_STREAM "stream { type = \"jetstream\" topic = \"out.%s\" }\n"

static struct config *load(const char *name, const char *text)
{
	char path[700];
	cr_assert_eq(tmpdir_write(conf_suite_dir, name, text, path, sizeof(path)), 0);
	struct config *c = NULL;
	cr_assert_eq(config_load(&c, path, conf_suite_moddir), 0, "%s does not load:\n%s", name,
		     text);
	return c;
}

/* Whether adapter `a` of both texts compares the same. */
static bool same(const char *one, const char *two)
{
	struct config *c1 = load("one.conf", one), *c2 = load("two.conf", two);
	cr_assert_eq(c1->n_adapters, 1);
	cr_assert_eq(c2->n_adapters, 1);
	bool r = config_effective_same(&c1->adapters[0], &c2->adapters[0]);
	config_free(c1);
	config_free(c2);
	return r;
}

static const char base[] = "adapter a {\n" BASE_INGEST BASE_STREAM "}\n";

Test(config_effective, the_same_text_is_the_same)
{
	cr_assert(same(base, base));
}

Test(config_effective, written_out_defaults_are_no_change)
{
	cr_assert(same(base,
		       "adapter a {\n queue_len = 1000\n queue_wait_ms = 250\n"
		       " ingest { type = \"choria\" topic = \"t\" workers = 10\n"
		       "  servers = {\"nats://127.0.0.1:1\"} protocol = \"request\" }\n"
		       " stream { workers = 10 type = \"jetstream\" topic = \"out.%s\" }\n}\n"));
}

Test(config_effective, globals_comments_and_layout_are_no_change)
{
	cr_assert(same(base,
		       "identity = \"elsewhere\"\nlog_level = \"debug\"\n"
		       "drain_timeout = 3 # shorter\n"
		       "adapter a\n{\n  stream { topic = \"out.%s\"\n type = \"jetstream\" }\n"
		       "  ingest {\n topic = \"t\"\n servers = {\"nats://127.0.0.1:1\"}\n"
		       " type = \"choria\" }\n}\n"));
}

/* The jetstream stream's topic defaults to the adapter's name. */
Test(config_effective, a_topic_written_out_as_the_adapter_name_is_no_change)
{
	static const char left_out[] =
		"adapter node_data {\n" BASE_INGEST "stream { type = \"jetstream\" }\n}\n";
	cr_assert(same(left_out, "adapter node_data {\n" BASE_INGEST
				 "stream { type = \"jetstream\" topic = \"node_data\" }\n}\n"));
	cr_assert_not(same(left_out,
			   "adapter node_data {\n" BASE_INGEST
			   "stream { type = \"jetstream\" topic = \"node_data2\" }\n}\n"));
}

Test(config_effective, another_adapter_loading_more_modules_is_no_change)
{
	/* The file module's options join the stream table, at no value. */
	struct config *c1 = load("one.conf", base);
	struct config *c2 = load("two.conf", "adapter a {\n" BASE_INGEST BASE_STREAM "}\n"
					     "adapter b {\n" BASE_INGEST
					     " stream { type = \"file\" path = \"/tmp/x\" }\n}\n");
	cr_assert(config_effective_same(&c1->adapters[0], &c2->adapters[0]));
	cr_assert_not(config_effective_same(&c2->adapters[0], &c2->adapters[1]));
	config_free(c1);
	config_free(c2);
}

Test(config_effective, a_changed_option_is_a_change)
{
	static const char *const changed[] = {
		/* stream topic */
		"adapter a {\n" BASE_INGEST
		"stream { type = \"jetstream\" topic = \"new.%s\" }\n}\n",
		/* ingest option */
		"adapter a {\n ingest { type = \"choria\" topic = \"t2\""
		" servers = {\"nats://127.0.0.1:1\"} }\n" BASE_STREAM "}\n",
		/* list: another server */
		"adapter a {\n ingest { type = \"choria\" topic = \"t\""
		" servers = {\"nats://127.0.0.1:1\", \"nats://127.0.0.1:2\"} }\n" BASE_STREAM "}\n",
		/* workers, from its default */
		"adapter a {\n" BASE_INGEST "stream { type = \"jetstream\" topic = \"out.%s\""
		" workers = 3 }\n}\n",
		/* the adapter's own option */
		"adapter a {\n queue_len = 10\n" BASE_INGEST BASE_STREAM "}\n",
		/* the stream's type */
		"adapter a {\n" BASE_INGEST "stream { type = \"file\" path = \"/tmp/x\" }\n}\n",
	};
	for (size_t i = 0; i < sizeof(changed) / sizeof(*changed); i++)
		cr_expect_not(same(base, changed[i]), "not seen as a change:\n%s", changed[i]);
}

/* Servers are tried in the order written. */
Test(config_effective, the_same_servers_in_another_order_are_a_change)
{
	cr_assert_not(
		same("adapter a {\n ingest { type = \"choria\" topic = \"t\""
		     " servers = {\"nats://127.0.0.1:1\", \"nats://127.0.0.1:2\"} }\n" BASE_STREAM
		     "}\n",
		     "adapter a {\n ingest { type = \"choria\" topic = \"t\""
		     " servers = {\"nats://127.0.0.1:2\", \"nats://127.0.0.1:1\"} }\n" BASE_STREAM
		     "}\n"));
}

Test(config_effective, the_text_holds_every_option_with_its_default)
{
	struct config *c = load("one.conf", base);
	char *text = NULL;
	cr_assert_eq(config_effective_text(&text, &c->adapters[0]), 0);
	static const char *const lines[] = {
		"adapter \"a\"\n",
		"queue_len = 1000\n",
		"queue_wait_ms = 250\n",
		"ingest {\n",
		"  type = \"choria\"\n",
		"  workers = 10\n",
		"  topic = \"t\"\n",
		"  servers = {\"nats://127.0.0.1:1\"}\n",
		"stream {\n",
		"  type = \"jetstream\"\n",
		"  topic = \"out.%s\"\n",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(*lines); i++)
		cr_expect_not_null(strstr(text, lines[i]), "no %s in\n%s", lines[i], text);
	free(text);
	config_free(c);
}
