/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libconfuse needs one option table per section name, but every adapter's
 * `ingest` block may name another module. The table therefore holds every
 * loaded module's options, none with a default, and block_check() then
 * refuses, with the line, any option that the block's own module does not
 * declare, and applies that module's defaults.
 */
#include "config_opts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static const struct cad_option *module_option(const struct module *m, const char *name)
{
	for (const struct cad_option *o = m->desc->options; o && o->name; o++)
		if (strcmp(o->name, name) == 0)
			return o;
	return NULL;
}

static const char *type_name(enum cad_opt_type t)
{
	switch (t) {
	case CAD_OPT_STRING:
		return "string";
	case CAD_OPT_STRING_LIST:
		return "list of strings";
	case CAD_OPT_INT:
		return "integer";
	case CAD_OPT_BOOL:
		return "boolean";
	}
	return "?";
}

static int is_core_option(const char *name)
{
	return strcmp(name, "type") == 0 || strcmp(name, "workers") == 0;
}

cfg_opt_t *block_opts_new(struct config *conf, enum cad_kind kind, cfg_validate_callback_t line_cb)
{
	size_t cap = 3;
	for (size_t i = 0; i < conf->n_modules; i++)
		for (const struct cad_option *o = conf->modules[i]->desc->options; o && o->name;
		     o++)
			cap++;
	cfg_opt_t *opts = calloc(cap, sizeof(*opts));
	if (!opts)
		return NULL;

	size_t n = 0;
	opts[n++] = (cfg_opt_t)CFG_STR("type", NULL, CFGF_NODEFAULT);
	opts[n++] = (cfg_opt_t)CFG_INT("workers", CAD_WORKERS_DEFAULT, CFGF_NONE);
	opts[0].validcb = line_cb;
	opts[1].validcb = line_cb;

	int conflicts = 0;
	for (size_t i = 0; i < conf->n_modules; i++) {
		const struct module *m = conf->modules[i];
		if (m->kind != kind)
			continue;
		for (const struct cad_option *o = m->desc->options; o && o->name; o++) {
			if (is_core_option(o->name)) {
				log_error(
					"%s: %s module '%s' declares option '%s', which the daemon owns",
					conf->file, module_kind_name(kind), m->type, o->name);
				conflicts++;
				continue;
			}
			/* Already declared by another module: the types must agree. */
			size_t j;
			for (j = 2; j < n; j++)
				if (strcmp(opts[j].name, o->name) == 0)
					break;
			if (j < n) {
				for (size_t k = 0; k < i; k++) {
					const struct cad_option *p =
						module_option(conf->modules[k], o->name);
					if (conf->modules[k]->kind == kind && p &&
					    p->type != o->type) {
						log_error(
							"%s: option '%s' is a %s in %s module '%s' but a %s in '%s'",
							conf->file, o->name, type_name(p->type),
							module_kind_name(kind),
							conf->modules[k]->type, type_name(o->type),
							m->type);
						conflicts++;
					}
				}
				continue;
			}
			switch (o->type) {
			case CAD_OPT_STRING:
				opts[n] = (cfg_opt_t)CFG_STR(o->name, NULL, CFGF_NODEFAULT);
				break;
			case CAD_OPT_STRING_LIST:
				opts[n] = (cfg_opt_t)CFG_STR_LIST(o->name, NULL, CFGF_NODEFAULT);
				break;
			case CAD_OPT_INT:
				opts[n] = (cfg_opt_t)CFG_INT(o->name, 0, CFGF_NODEFAULT);
				break;
			case CAD_OPT_BOOL:
				opts[n] = (cfg_opt_t)CFG_BOOL(o->name, cfg_false, CFGF_NODEFAULT);
				break;
			}
			opts[n].validcb = line_cb;
			n++;
		}
	}
	opts[n] = (cfg_opt_t)CFG_END();
	if (conflicts) {
		free(opts);
		return NULL;
	}
	return opts;
}

void block_opts_free(cfg_opt_t *opts)
{
	free(opts);
}

static const char *kind_label(const struct cad_config *b)
{
	return module_kind_name(b->kind);
}

/* Set by the file, as opposed to left empty. */
static int is_set(const struct cad_config *b, const char *name)
{
	cfg_opt_t *opt = cfg_getopt(b->sec, name);
	return opt && opt->nvalues > 0;
}

static int check_value(struct cad_config *b, const struct cad_option *o)
{
	int line = config_line_of(b->conf, b->sec, o->name, b->line);
	if (o->type == CAD_OPT_INT && o->min < o->max) {
		long v = cfg_getint(b->sec, o->name);
		if (v < o->min || v > o->max) {
			config_error_at(b->conf, line, b->adapter, kind_label(b), o->name,
					"%ld is out of range (%ld to %ld)", v, o->min, o->max);
			return 1;
		}
	}
	if (o->type == CAD_OPT_STRING && o->choices) {
		const char *v = cfg_getstr(b->sec, o->name);
		for (const char *const *c = o->choices; *c; c++)
			if (strcmp(v, *c) == 0)
				return 0;
		char allowed[256] = "";
		size_t len = 0;
		for (const char *const *c = o->choices; *c && len < sizeof(allowed); c++)
			len += (size_t)snprintf(allowed + len, sizeof(allowed) - len, "%s%s",
						c == o->choices ? "" : ", ", *c);
		if (o->flags & CAD_OPT_SECRET)
			config_error_at(b->conf, line, b->adapter, kind_label(b), o->name,
					"the value is not one of: %s", allowed);
		else
			config_error_at(b->conf, line, b->adapter, kind_label(b), o->name,
					"'%s' is not one of: %s", v, allowed);
		return 1;
	}
	return 0;
}

static void apply_default(struct cad_config *b, const struct cad_option *o)
{
	switch (o->type) {
	case CAD_OPT_STRING:
		if (o->def_str)
			cfg_setstr(b->sec, o->name, o->def_str);
		else if (o->flags & CAD_OPT_DEFAULT_ADAPTER_NAME)
			cfg_setstr(b->sec, o->name, b->adapter);
		break;
	case CAD_OPT_STRING_LIST: {
		unsigned n = 0;
		while (o->def_list && o->def_list[n])
			n++;
		if (n)
			cfg_setmulti(b->sec, o->name, n, (char **)o->def_list);
		break;
	}
	case CAD_OPT_INT:
		cfg_setint(b->sec, o->name, o->def_int);
		break;
	case CAD_OPT_BOOL:
		cfg_setbool(b->sec, o->name, o->def_int ? cfg_true : cfg_false);
		break;
	}
}

int block_check(struct cad_config *b)
{
	int errors = 0;
	const struct module *m = b->module;

	/* Options that belong to another module of this kind. */
	for (cfg_opt_t *opt = b->sec->opts; opt && opt->name; opt++) {
		if (is_core_option(opt->name) || opt->nvalues == 0 || module_option(m, opt->name))
			continue;
		config_error_at(b->conf, config_line_of(b->conf, b->sec, opt->name, b->line),
				b->adapter, kind_label(b), opt->name,
				"no such option for %s type '%s'", kind_label(b), m->type);
		errors++;
	}

	/* The one place the range of `workers` is decided: the daemon's
	 * limit, or the module's own when it declares a lower one. */
	long w = cfg_getint(b->sec, "workers");
	long max = module_max_workers(m);
	if (w < 1 || w > max) {
		int line = config_line_of(b->conf, b->sec, "workers", b->line);
		if (max < CAD_WORKERS_MAX)
			config_error_at(b->conf, line, b->adapter, kind_label(b), "workers",
					"%ld is out of range (1 to %ld for %s type '%s')", w, max,
					kind_label(b), m->type);
		else
			config_error_at(b->conf, line, b->adapter, kind_label(b), "workers",
					"%ld is out of range (1 to %ld)", w, max);
		errors++;
	}
	b->workers = w;

	for (const struct cad_option *o = m->desc->options; o && o->name; o++) {
		if (is_set(b, o->name)) {
			errors += check_value(b, o);
		} else if (o->flags & CAD_OPT_REQUIRED) {
			config_error_at(b->conf, b->line, b->adapter, kind_label(b), o->name,
					"required option is missing");
			errors++;
		} else {
			apply_default(b, o);
		}
	}
	return errors;
}

/* ---- accessors handed to modules through struct cad_host ---- */

const char *block_cfg_str(const struct cad_config *b, const char *name)
{
	cfg_opt_t *opt = cfg_getopt(b->sec, name);
	return opt && opt->nvalues ? cfg_opt_getnstr(opt, 0) : NULL;
}

long block_cfg_int(const struct cad_config *b, const char *name)
{
	if (strcmp(name, "workers") == 0)
		return b->workers;
	cfg_opt_t *opt = cfg_getopt(b->sec, name);
	return opt && opt->nvalues ? cfg_opt_getnint(opt, 0) : 0;
}

bool block_cfg_bool(const struct cad_config *b, const char *name)
{
	cfg_opt_t *opt = cfg_getopt(b->sec, name);
	return opt && opt->nvalues ? cfg_opt_getnbool(opt, 0) == cfg_true : false;
}

unsigned block_cfg_list_len(const struct cad_config *b, const char *name)
{
	cfg_opt_t *opt = cfg_getopt(b->sec, name);
	return opt ? opt->nvalues : 0;
}

const char *block_cfg_list_str(const struct cad_config *b, const char *name, unsigned i)
{
	cfg_opt_t *opt = cfg_getopt(b->sec, name);
	return opt && i < opt->nvalues ? cfg_opt_getnstr(opt, i) : NULL;
}

void block_cfg_error(const struct cad_config *cb, const char *name, const char *fmt, ...)
{
	struct cad_config *b = (struct cad_config *)cb; /* the host's own record */
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	int line = name ? config_line_of(b->conf, b->sec, name, b->line) : b->line;
	config_error_at(b->conf, line, b->adapter, kind_label(b), name, "%s", msg);
	b->errors++;
}
