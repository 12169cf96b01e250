/* SPDX-License-Identifier: Apache-2.0 */
/* The module loader refuses every kind of wrong module with its reason. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "module.h"
#include "tmpdir.h"

#define FAKES TOP_BUILDDIR "/tests/modules/.libs"

static void expect_refused(const char *dir, const char *type, int rc_want, const char *text)
{
	struct module *m = NULL;
	char err[1024] = "";
	int rc = module_load(&m, dir, CAD_KIND_INGEST, type, err, sizeof(err));
	cr_assert_eq(rc, rc_want, "type %s: rc %d, error: %s", type, rc, err);
	cr_assert_null(m);
	cr_assert_not_null(strstr(err, text), "type %s: expected '%s' in: %s", type, text, err);
}

Test(module, loads_a_good_module)
{
	struct module *m = NULL;
	char err[1024] = "";
	cr_assert_eq(module_load(&m, FAKES, CAD_KIND_INGEST, "good", err, sizeof(err)), 0, "%s",
		     err);
	cr_assert_str_eq(m->desc->type, "good");
	cr_assert_str_eq(m->type, "good");
	cr_assert_eq(m->kind, CAD_KIND_INGEST);
	module_unload(m);
}

Test(module, refuses_a_missing_file)
{
	expect_refused(FAKES, "absent", -ENOENT, "unknown ingest type 'absent'");
}

Test(module, refuses_another_abi_version)
{
	expect_refused(FAKES, "badabi", -EPROTO, "built for module ABI 99.");
}

Test(module, refuses_a_newer_minor_version)
{
	expect_refused(FAKES, "newminor", -EPROTO, "this daemon speaks");
}

Test(module, refuses_a_short_descriptor)
{
	expect_refused(FAKES, "short", -EPROTO, "has a descriptor of");
}

Test(module, refuses_the_wrong_kind)
{
	expect_refused(FAKES, "wrongkind", -EINVAL, "is a stream module, not an ingest module");
}

Test(module, refuses_a_missing_callback)
{
	expect_refused(FAKES, "nocreate", -EINVAL, "does not provide create()");
}

Test(module, refuses_a_library_without_the_entry_point)
{
	expect_refused(FAKES, "noentry", -ENOEXEC, "is not a choria-adapterd module");
}

Test(module, refuses_a_descriptor_of_another_type)
{
	expect_refused(FAKES, "mistyped", -EINVAL, "declares type 'something_else'");
}

Test(module, refuses_a_file_that_is_not_a_library)
{
	char dir[512];
	cr_assert_eq(tmpdir_make(dir, sizeof(dir)), 0);
	cr_assert_eq(tmpdir_write(dir, "ingest_junk.so", "not an ELF file\n", NULL, 0), 0);
	expect_refused(dir, "junk", -ENOEXEC, "cannot load");
	tmpdir_remove(dir);
}

Test(module, refuses_type_names_that_are_paths)
{
	expect_refused(FAKES, "../../etc/x", -EINVAL, "is not a module name");
}

Test(module, max_workers_is_the_modules_limit_or_the_daemons)
{
	struct module *m = NULL;
	char err[1024] = "";
	cr_assert_eq(module_load(&m, FAKES, CAD_KIND_INGEST, "good", err, sizeof(err)), 0, "%s",
		     err);
	struct cad_module d = *m->desc;
	const struct cad_module *real = m->desc;
	cr_assert_eq(d.max_workers, 0);
	cr_assert_eq(module_max_workers(m), CAD_WORKERS_MAX, "none declared: the daemon's");
	d.max_workers = 7;
	m->desc = &d;
	cr_assert_eq(module_max_workers(m), 7);
	cr_assert_eq(module_check(&d, CAD_KIND_INGEST, "good", err, sizeof(err)), 0, "%s", err);
	d.max_workers = CAD_WORKERS_MAX;
	cr_assert_eq(module_check(&d, CAD_KIND_INGEST, "good", err, sizeof(err)), 0, "%s", err);
	d.max_workers = CAD_WORKERS_MAX + 1;
	cr_assert_eq(module_check(&d, CAD_KIND_INGEST, "good", err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "declares max_workers 1025, more than the daemon's 1024"),
			   "%s", err);
	m->desc = real;
	module_unload(m);
}
