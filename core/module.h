/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Finding, loading and checking modules: <dir>/<kind>_<type>.so, opened
 * with dlopen(3), accepted only when its descriptor matches the ABI and
 * kind the host expects and carries every required callback.
 */
#ifndef CAD_MODULE_LOADER_H
#define CAD_MODULE_LOADER_H

#include <stddef.h>

#include <choria-adapterd/cad_module.h>

struct module {
	void *handle;
	const struct cad_module *desc;
	enum cad_kind kind;
	char *type;
	char *path;
};

const char *module_kind_name(enum cad_kind kind); /* "ingest" or "stream" */

/* Load <dir>/<kind>_<type>.so. On failure returns a negative errno and
 * writes the reason for the operator into err. */
CAD_MUSTCHECK int module_load(struct module **out, const char *dir, enum cad_kind kind,
			      const char *type, char *err, size_t errlen);
void module_unload(struct module *m); /* accepts NULL */

/* The most `workers` a block of this module may ask for: its descriptor's
 * max_workers, or CAD_WORKERS_MAX when it declares none. */
long module_max_workers(const struct module *m);

/* Check a descriptor as module_load() does; exposed for tests. */
CAD_MUSTCHECK int module_check(const struct cad_module *d, enum cad_kind kind, const char *type,
			       char *err, size_t errlen);

#endif
