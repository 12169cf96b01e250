/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A module that is wrong in one chosen way, for the loader's tests, or
 * right (ingest or stream) for the configuration's. Built several times
 * with -D flags: FAKE_TYPE, FAKE_KIND, FAKE_ABI_MAJOR, FAKE_NO_CREATE,
 * FAKE_NO_ENTRY, FAKE_SHORT_SIZE.
 */
#include <stddef.h>
#include <stdio.h>

#include <choria-adapterd/cad_module.h>

#ifndef FAKE_KIND
#define FAKE_KIND CAD_KIND_INGEST
#endif
#ifndef FAKE_ABI_MINOR
#define FAKE_ABI_MINOR CAD_ABI_MINOR
#endif
#ifndef FAKE_ABI_MAJOR
#define FAKE_ABI_MAJOR CAD_ABI_MAJOR
#endif

/* The instance is the host it was handed, whose identity describe()
 * reports. */
__attribute__((unused)) static int fake_create(void **i, const struct cad_host *h,
					       struct cad_context *c, const struct cad_config *cfg)
{
	(void)c;
	(void)cfg;
	*i = (void *)h;
	return 0;
}

static void fake_describe(void *i, char *buf, size_t len)
{
	const struct cad_host *h = i;
	snprintf(buf, len, "identity %s", h->identity);
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

/* A stream that publishes nothing: configurations are loaded, never run. */
static int fake_worker_open(void **worker, void *instance, unsigned index)
{
	(void)instance;
	(void)index;
	*worker = NULL;
	return 0;
}

static void fake_publish(void *worker, struct cad_msg *msg)
{
	(void)worker;
	(void)msg;
}

static void fake_worker_close(void *worker, int64_t deadline_ns)
{
	(void)worker;
	(void)deadline_ns;
}

/* A secret with a closed set of values: its value must never be printed,
 * even when it is not one of them. */
static const char *const fake_key_choices[] = {"alpha", "beta", NULL};
static const struct cad_option fake_options[] = {
	{.name = "key",
	 .type = CAD_OPT_STRING,
	 .flags = CAD_OPT_SECRET,
	 .choices = fake_key_choices,
	 .help = "a secret"},
	{.name = NULL},
};

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
	.options = fake_options,
	.describe = fake_describe,
	.start = fake_start,
	.stop = fake_void,
	.destroy = fake_void,
	.worker_open = fake_worker_open,
	.publish = fake_publish,
	.worker_close = fake_worker_close,
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
