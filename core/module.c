/* SPDX-License-Identifier: Apache-2.0 */
#include "module.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *module_kind_name(enum cad_kind kind)
{
	switch (kind) {
	case CAD_KIND_INGEST:
		return "ingest";
	case CAD_KIND_STREAM:
		return "stream";
	}
	return "unknown";
}

/* Type names become file names: keep them to [a-z0-9_] so that a config
 * can never point outside the module folder. */
static int type_valid(const char *type)
{
	if (!*type)
		return 0;
	for (const char *p = type; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return 0;
	return 1;
}

#define NEED(field, what)                                                                        \
	do {                                                                                     \
		if (!d->field) {                                                                 \
			snprintf(err, errlen, "%s module '%s' does not provide %s", kname, type, \
				 what);                                                          \
			return -EINVAL;                                                          \
		}                                                                                \
	} while (0)

int module_check(const struct cad_module *d, enum cad_kind kind, const char *type, char *err,
		 size_t errlen)
{
	const char *kname = module_kind_name(kind);
	if (d->abi_major != CAD_ABI_MAJOR || d->abi_minor > CAD_ABI_MINOR) {
		snprintf(err, errlen,
			 "%s module '%s' was built for module ABI %u.%u, this daemon speaks %u.%u",
			 kname, type, d->abi_major, d->abi_minor, CAD_ABI_MAJOR, CAD_ABI_MINOR);
		return -EPROTO;
	}
	if (d->size < sizeof(struct cad_module)) {
		snprintf(err, errlen, "%s module '%s' has a descriptor of %zu bytes, expected %zu",
			 kname, type, d->size, sizeof(struct cad_module));
		return -EPROTO;
	}
	if (d->kind != kind) {
		snprintf(err, errlen, "module '%s' is a %s module, not an %s module", type,
			 module_kind_name(d->kind), kname);
		return -EINVAL;
	}
	if (!d->type || strcmp(d->type, type) != 0) {
		snprintf(err, errlen, "%s module file for '%s' declares type '%s'", kname, type,
			 d->type ? d->type : "(none)");
		return -EINVAL;
	}
	NEED(create, "create()");
	NEED(start, "start()");
	NEED(destroy, "destroy()");
	if (kind == CAD_KIND_INGEST) {
		NEED(stop, "stop()");
	} else {
		NEED(worker_open, "worker_open()");
		NEED(publish, "publish()");
		NEED(worker_close, "worker_close()");
	}
	if (d->max_workers > CAD_WORKERS_MAX) {
		snprintf(err, errlen,
			 "%s module '%s' declares max_workers %u, more than the daemon's %d", kname,
			 type, d->max_workers, CAD_WORKERS_MAX);
		return -EINVAL;
	}
	for (const struct cad_option *o = d->options; o && o->name; o++) {
		if (o->type < CAD_OPT_STRING || o->type > CAD_OPT_BOOL) {
			snprintf(err, errlen, "%s module '%s' declares option '%s' of unknown type",
				 kname, type, o->name);
			return -EINVAL;
		}
	}
	return 0;
}

long module_max_workers(const struct module *m)
{
	return m->desc->max_workers ? (long)m->desc->max_workers : CAD_WORKERS_MAX;
}

int module_load(struct module **out, const char *dir, enum cad_kind kind, const char *type,
		char *err, size_t errlen)
{
	const char *kname = module_kind_name(kind);
	if (!type_valid(type)) {
		snprintf(err, errlen, "%s type '%s' is not a module name (use a-z, 0-9 and _)",
			 kname, type);
		return -EINVAL;
	}
	char *path = NULL;
	if (asprintf(&path, "%s/%s_%s.so", dir, kname, type) < 0)
		return -ENOMEM;

	int rc;
	struct stat st;
	void *h = NULL;
	if (stat(path, &st) != 0) {
		rc = -errno;
		snprintf(err, errlen, "unknown %s type '%s': %s: %s (module folder is %s)", kname,
			 type, path, strerror(errno), dir);
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		snprintf(err, errlen, "%s type '%s': %s is not a regular file", kname, type, path);
		goto fail;
	}
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		rc = -ENOEXEC;
		snprintf(err, errlen,
			 "%s type '%s': cannot load %s: %s (ldd(1) shows missing libraries)", kname,
			 type, path, dlerror());
		goto fail;
	}
	cad_module_entry_fn entry;
	*(void **)&entry = dlsym(h, CAD_MODULE_ENTRY_SYMBOL);
	if (!entry) {
		rc = -ENOEXEC;
		snprintf(err, errlen, "%s type '%s': %s is not a choria-adapterd module (no %s)",
			 kname, type, path, CAD_MODULE_ENTRY_SYMBOL);
		goto fail;
	}
	const struct cad_module *d = entry();
	if (!d) {
		rc = -ENOEXEC;
		snprintf(err, errlen, "%s type '%s': %s returned no descriptor", kname, type, path);
		goto fail;
	}
	rc = module_check(d, kind, type, err, errlen);
	if (rc != 0)
		goto fail;

	struct module *m = calloc(1, sizeof(*m));
	if (!m || !(m->type = strdup(type))) {
		free(m);
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	m->handle = h;
	m->desc = d;
	m->kind = kind;
	m->path = path;
	*out = m;
	return 0;
fail:
	if (h)
		dlclose(h);
	free(path);
	return rc;
}

void module_unload(struct module *m)
{
	if (!m)
		return;
	/* The code stays mapped until the process exits: the libraries a
	 * module pulls in (cnats, OpenSSL) keep threads and global state that
	 * outlive its instances, and unmapping them under those would leave
	 * dangling code. */
	(void)m->handle;
	free(m->type);
	free(m->path);
	free(m);
}
