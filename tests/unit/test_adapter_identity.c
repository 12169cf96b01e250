/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Each adapter's modules see the identity it was created with: a reload
 * that changes `identity` creates new adapters with the new one and leaves
 * the running ones theirs.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "adapters.h"
#include "config.h"
#include "tmpdir.h"

static char dir[512];

static void setup(void)
{
	cr_assert_eq(tmpdir_make(dir, sizeof(dir)), 0);
}

static void teardown(void)
{
	tmpdir_remove(dir);
}

TestSuite(adapter_identity, .init = setup, .fini = teardown);

static struct config *load(void)
{
	char path[700];
	cr_assert_eq(tmpdir_write(dir, "a.conf",
				  "adapter a {\n ingest { type = \"good\" }\n"
				  " stream { type = \"good\" }\n}\n",
				  path, sizeof(path)),
		     0);
	struct config *c = NULL;
	/* The test modules: "good" of each kind, whose describe() says the
	 * identity its host holds. */
	cr_assert_eq(config_load(&c, path, TOP_BUILDDIR "/tests/modules/.libs"), 0);
	return c;
}

Test(adapter_identity, each_adapter_keeps_the_identity_it_was_created_with)
{
	struct config *c = load();
	struct adapter *first = NULL, *second = NULL;
	char *was = strdup("first.example.net");
	cr_assert_not_null(was);
	cr_assert_eq(adapter_new(&first, &c->adapters[0], was, NULL), 0);
	/* The configuration that named it is gone. */
	memset(was, 'x', strlen(was));
	free(was);
	cr_assert_eq(adapter_new(&second, &c->adapters[0], "second.example.net", first), 0);

	char desc[2048];
	adapter_describe(first, desc, sizeof(desc));
	cr_assert_not_null(strstr(desc, "identity first.example.net"), "%s", desc);
	cr_assert_null(strstr(desc, "second"), "%s", desc);
	adapter_describe(second, desc, sizeof(desc));
	cr_assert_not_null(strstr(desc, "identity second.example.net"), "%s", desc);
	adapter_free(first);
	adapter_free(second);
	config_free(c);
}
