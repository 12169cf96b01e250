/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A module that is wrong in one chosen way, for the loader's tests. Built
 * several times with -D flags: FAKE_TYPE, FAKE_KIND, FAKE_ABI_MAJOR,
 * FAKE_NO_CREATE, FAKE_NO_ENTRY, FAKE_SHORT_SIZE.
 */
#include <stddef.h>

#include "cad_module.h"

#ifndef FAKE_KIND
#define FAKE_KIND CAD_KIND_INGEST
#endif
#ifndef FAKE_ABI_MINOR
#define FAKE_ABI_MINOR CAD_ABI_MINOR
#endif
#ifndef FAKE_ABI_MAJOR
#define FAKE_ABI_MAJOR CAD_ABI_MAJOR
#endif

__attribute__((unused)) static int fake_create(void **i, const struct cad_host *h, struct cad_context *c,
		       const struct cad_config *cfg)
{
	(void)h;
	(void)c;
	(void)cfg;
	*i = NULL;
	return 0;
}

static int fake_start(void *i)
{
	(void)i;
	return 0;
}

static void fake_void(void *i)
{
	(void)i;
}

static const struct cad_module fake = {
	.abi_major = FAKE_ABI_MAJOR,
	.abi_minor = FAKE_ABI_MINOR,
#ifdef FAKE_SHORT_SIZE
	.size = offsetof(struct cad_module, reserved),
#else
	.size = sizeof(struct cad_module),
#endif
	.kind = FAKE_KIND,
	.type = FAKE_TYPE,
#ifndef FAKE_NO_CREATE
	.create = fake_create,
#endif
	.start = fake_start,
	.stop = fake_void,
	.destroy = fake_void,
};

#ifndef FAKE_NO_ENTRY
CAD_EXPORT const struct cad_module *cad_module_entry(void);
CAD_EXPORT const struct cad_module *cad_module_entry(void)
{
	return &fake;
}
#else
/* Keep the descriptor referenced so the object is not empty. */
CAD_EXPORT const struct cad_module *not_the_entry(void);
CAD_EXPORT const struct cad_module *not_the_entry(void)
{
	return &fake;
}
#endif
