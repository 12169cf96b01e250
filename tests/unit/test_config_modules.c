/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A reload opens a module type from the file it was first loaded from,
 * however many configurations ago that was: module_path applies only to
 * types the daemon has never loaded.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "daemon_proc.h"
#include "tmpdir.h"

static char dir[512], moddir[600], empty[600];

static void setup(void)
{
	cr_assert_eq(tmpdir_make(dir, sizeof(dir)), 0);
	cr_assert_eq(daemon_modules_dir(moddir, sizeof(moddir), dir), 0);
	snprintf(empty, sizeof(empty), "%s/empty", dir);
	cr_assert_eq(mkdir(empty, 0700), 0);
}

static void teardown(void)
{
	tmpdir_remove(dir);
}

TestSuite(config_modules, .init = setup, .fini = teardown);

#define INGEST "ingest { type = \"choria\" topic = \"t\" servers = {\"nats://127.0.0.1:1\"} }\n"
#define TO_JETSTREAM "adapter x {\n" INGEST "stream { type = \"jetstream\" }\n}\n"
#define TO_FILE "adapter y {\n" INGEST "stream { type = \"file\" path = \"/tmp/y\" }\n}\n"

static struct config *load(const char *module_path, const char *adapters,
			   const struct config *running)
{
	char text[2048], path[700];
	snprintf(text, sizeof(text), "module_path = \"%s\"\n%s", module_path, adapters);
	cr_assert_eq(tmpdir_write(dir, "c.conf", text, path, sizeof(path)), 0);
	struct config *c = NULL;
	int rc = config_load_again(&c, path, NULL, running);
	cr_assert_eq(rc, 0, "does not load:\n%s", text);
	return c;
}

static const char *module_path_of(const struct config *c, const char *type)
{
	for (size_t i = 0; i < c->n_modules; i++)
		if (strcmp(c->modules[i]->type, type) == 0)
			return c->modules[i]->path;
	return NULL;
}

Test(config_modules, a_type_named_again_two_reloads_later_comes_from_its_first_file)
{
	/* A loads jetstream from moddir; B drops it and points module_path
	 * at an empty folder; C names jetstream again. */
	struct config *a = load(moddir, TO_JETSTREAM TO_FILE, NULL);
	struct config *b = load(empty, TO_FILE, a);
	config_free(a);
	struct config *c = load(empty, TO_JETSTREAM, b);
	const char *from = module_path_of(c, "jetstream");
	cr_assert_not_null(from);
	cr_assert_eq(strncmp(from, moddir, strlen(moddir)), 0, "opened from %s", from);
	config_free(b);
	config_free(c);
}
