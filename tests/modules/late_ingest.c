/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An ingest that breaks one rule of the module ABI: it submits a message
 * from destroy(), after its stop() returned and the adapter's queue has
 * closed. The daemon must count it dropped ("shutdown"), log it and free
 * it, and go on stopping.
 */
#include <stdlib.h>
#include <string.h>

#include <choria-adapterd/cad_module.h>

struct late {
	const struct cad_host *host;
	struct cad_context *ctx;
};

static int late_create(void **instance, const struct cad_host *host, struct cad_context *ctx,
		       const struct cad_config *cfg)
{
	(void)cfg;
	struct late *l = calloc(1, sizeof(*l));
	if (!l)
		return -12; /* ENOMEM */
	l->host = host;
	l->ctx = ctx;
	*instance = l;
	return 0;
}

static int late_start(void *instance)
{
	(void)instance;
	return 0;
}

static void late_stop(void *instance)
{
	(void)instance;
}

static void late_destroy(void *instance)
{
	struct late *l = instance;
	if (!l)
		return;
	static const char sender[] = "late.example.net", id[] = "0123456789abcdef0123456789abcdef";
	struct cad_msg *m = l->host->msg_new(sender, strlen(sender), id, strlen(id), 0, "{}", 2);
	if (m)
		l->host->submit(l->ctx, &m, 2);
	free(l);
}

static const struct cad_option late_options[] = {{.name = NULL}};

static const struct cad_module late = {
	.abi_major = CAD_ABI_MAJOR,
	.abi_minor = CAD_ABI_MINOR,
	.size = sizeof(struct cad_module),
	.kind = CAD_KIND_INGEST,
	.type = "late",
	.options = late_options,
	.create = late_create,
	.start = late_start,
	.stop = late_stop,
	.destroy = late_destroy,
};

CAD_EXPORT const struct cad_module *cad_module_entry(void);
CAD_EXPORT const struct cad_module *cad_module_entry(void)
{
	return &late;
}
