/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The configuration is read twice. The first pass ignores unknown options
 * and only learns module_path and the `type` of every block, so the modules
 * can be loaded; the second pass is strict, with every loaded module's
 * options declared, and is followed by the per-block checks.
 *
 * libconfuse callbacks carry no user pointer, so the config being parsed is
 * kept in `parsing`; loading happens on the main thread only.
 */
#include "config.h"

#include <errno.h>
#include <libintl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_opts.h"
#include "config_text.h"
#include "log.h"
#include "metrics.h"

#ifndef CAD_PKGLIBDIR
#define CAD_PKGLIBDIR "/usr/lib/choria-adapterd"
#endif

static struct config *parsing;
static const char *parsing_text; /* the text being parsed, comments blanked */

/* ---------------------------------------------------------- reporting */

void config_error_at(const struct config *conf, int line, const char *adapter, const char *kind,
		     const char *opt, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	char where[256] = "";
	size_t n = 0;
	if (adapter)
		n += (size_t)snprintf(where + n, sizeof(where) - n, "adapter %s: ", adapter);
	if (kind && n < sizeof(where))
		n += (size_t)snprintf(where + n, sizeof(where) - n, "%s: ", kind);
	if (opt && n < sizeof(where))
		snprintf(where + n, sizeof(where) - n, "%s: ", opt);
	if (line > 0)
		log_error("%s:%d: %s%s", conf->file, line, where, msg);
	else
		log_error("%s: %s%s", conf->file, where, msg);
}

int config_line_of(const struct config *conf, cfg_t *sec, const char *opt, int fallback)
{
	for (size_t i = conf->n_lines; i-- > 0;)
		if (conf->lines[i].sec == sec && strcmp(conf->lines[i].opt, opt) == 0)
			return conf->lines[i].line;
	return fallback;
}

/* The adapter a line belongs to, from the first pass: the first adapter
 * whose block ends at or after it. */
static const char *adapter_at(const struct config *conf, int line)
{
	for (size_t i = 0; i < conf->n_adapters; i++)
		if (conf->adapters[i].line >= line)
			return conf->adapters[i].name;
	return NULL;
}

/* libconfuse says "found duplicate title" for a second adapter block of
 * the same name, without the first block's line. The message is known by
 * its format, in English or in libconfuse's own translation. */
static int is_duplicate_title(const char *fmt)
{
	static const char english[] = "found duplicate title '%s'";
	return strcmp(fmt, english) == 0 || strcmp(fmt, dgettext("confuse", english)) == 0;
}

/* Whether `p` starts `adapter NAME` or `adapter "NAME"`, in text whose
 * blanks are single spaces. */
static bool block_starts_at(const char *p, const char *name)
{
	size_t n = strlen(name);
	if (strncmp(p, "adapter ", 8) != 0)
		return false;
	p += 8;
	bool quoted = *p == '"';
	p += quoted;
	if (strncmp(p, name, n) != 0)
		return false;
	p += n;
	if (quoted && *p++ != '"')
		return false;
	return *p == ' ' || *p == '{';
}

/* The line where the block `name` that ends at line `end` starts: libconfuse
 * keeps only a section's last line. 0 when it cannot be found. */
static int block_start_line(const char *text, const char *name, int end)
{
	int line = 1, found = 0;
	bool line_start = true;
	for (const char *p = text; p && *p && line <= end; p++) {
		if (*p == '\n') {
			line++;
			line_start = true;
			continue;
		}
		if ((line_start || p[-1] == ' ' || p[-1] == '}' || p[-1] == ';') &&
		    block_starts_at(p, name))
			found = line;
		line_start = false;
	}
	return found;
}

static void on_confuse_error(cfg_t *cfg, const char *fmt, va_list ap)
{
	if (cfg && is_duplicate_title(fmt)) {
		/* Raised while the root section is parsing the second block,
		 * before it touches the first. */
		const char *name = va_arg(ap, const char *);
		cfg_t *first = cfg_gettsec(cfg, "adapter", name);
		int first_line = first ? block_start_line(parsing_text, name, first->line) : 0;
		config_error_at(parsing, cfg->line, NULL, NULL, NULL,
				"duplicate adapter name '%s' (first at line %d)", name,
				first_line ? first_line : (first ? first->line : 0));
		return;
	}
	char msg[1024];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	const char *adapter = NULL, *kind = NULL;
	if (cfg && cfg->name && strcmp(cfg->name, "adapter") == 0) {
		adapter = cfg->title;
	} else if (cfg && cfg->name &&
		   (strcmp(cfg->name, "ingest") == 0 || strcmp(cfg->name, "stream") == 0)) {
		kind = cfg->name;
		adapter = adapter_at(parsing, cfg->line);
	}
	config_error_at(parsing, cfg ? cfg->line : 0, adapter, kind, NULL, "%s", msg);
}

/* libconfuse calls validcb right after it parses an option, while the
 * section's line is the option's own. */
static int record_line(cfg_t *sec, cfg_opt_t *opt)
{
	struct config *c = parsing;
	if (c->n_lines == c->cap_lines) {
		size_t cap = c->cap_lines ? c->cap_lines * 2 : 64;
		struct opt_line *l = realloc(c->lines, cap * sizeof(*l));
		if (!l)
			return 0; /* lines are only for messages */
		c->lines = l;
		c->cap_lines = cap;
	}
	c->lines[c->n_lines++] = (struct opt_line){sec, opt->name, sec->line};
	return 0;
}

/* ------------------------------------------------------------ pass 1 */

static int adapter_name_valid(const char *name)
{
	if (!*name)
		return 0;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
			return 0;
	return 1;
}

/* Every module type the process has loaded, and the file it came from,
 * for its whole life: modules stay loaded, so a reload that names a type
 * again opens the same file, whatever module_path says by then and however
 * many configurations ago it was named. Main thread only. */
struct config_loaded {
	enum cad_kind kind;
	char *type;
	char *path;
};
static struct config_loaded *config_loaded;
static size_t config_n_loaded;

static void config_remember(const struct module *m)
{
	for (size_t i = 0; i < config_n_loaded; i++)
		if (config_loaded[i].kind == m->kind && strcmp(config_loaded[i].type, m->type) == 0)
			return;
	struct config_loaded *grown =
		realloc(config_loaded, (config_n_loaded + 1) * sizeof(*grown));
	if (!grown)
		return; /* out of memory: the type is looked up in module_path */
	config_loaded = grown;
	struct config_loaded e = {m->kind, strdup(m->type), strdup(m->path)};
	if (!e.type || !e.path) {
		free(e.type);
		free(e.path);
		return;
	}
	config_loaded[config_n_loaded++] = e;
}

/* The folder a module of this kind and type was first loaded from, into
 * dir[len]. */
static bool config_loaded_dir(enum cad_kind kind, const char *type, char *dir, size_t len)
{
	for (size_t i = 0; i < config_n_loaded; i++) {
		const struct config_loaded *e = &config_loaded[i];
		if (e->kind != kind || strcmp(e->type, type) != 0)
			continue;
		const char *slash = strrchr(e->path, '/');
		size_t n = slash ? (size_t)(slash - e->path) : 0;
		if (n >= len)
			return false;
		memcpy(dir, e->path, n);
		dir[n] = '\0';
		return true;
	}
	return false;
}

static int find_or_load(struct config *c, struct cad_config *b, const char *type)
{
	for (size_t i = 0; i < c->n_modules; i++)
		if (c->modules[i]->kind == b->kind && strcmp(c->modules[i]->type, type) == 0) {
			b->module = c->modules[i];
			return 0;
		}
	char err[1024], dir[PATH_MAX];
	const char *from = c->module_path;
	if (c->running && config_loaded_dir(b->kind, type, dir, sizeof(dir)))
		from = dir;
	struct module *m;
	int rc = module_load(&m, from, b->kind, type, err, sizeof(err));
	if (rc != 0) {
		config_error_at(c, b->line, b->adapter, module_kind_name(b->kind), "type", "%s",
				err);
		return rc;
	}
	struct module **grown = realloc(c->modules, (c->n_modules + 1) * sizeof(*grown));
	if (!grown) {
		module_unload(m);
		return -ENOMEM;
	}
	c->modules = grown;
	c->modules[c->n_modules++] = m;
	b->module = m;
	config_remember(m);
	return 0;
}

/* Both passes parse the same text, read once: a file read twice could
 * change in between, and a pipe or FIFO has nothing left the second time. */
static int parse_text(cfg_t *cfg, const char *text)
{
	cfg_set_error_function(cfg, on_confuse_error);
	parsing_text = text;
	int rc = cfg_parse_buf(cfg, text) == CFG_SUCCESS ? 0 : -EINVAL;
	parsing_text = NULL;
	return rc;
}

/* Learn the module folder, the adapters and their block types, and load
 * the modules. */
static int first_pass(struct config *c, const char *text, const char *module_dir)
{
	cfg_opt_t block[] = {CFG_STR("type", NULL, CFGF_NODEFAULT),
			     CFG_STR_LIST("__unknown", NULL, CFGF_NONE), CFG_END()};
	block[0].validcb = record_line;
	cfg_opt_t adapter[] = {CFG_SEC("ingest", block, CFGF_NODEFAULT),
			       CFG_SEC("stream", block, CFGF_NODEFAULT),
			       CFG_STR_LIST("__unknown", NULL, CFGF_NONE), CFG_END()};
	/* Without NO_TITLE_DUPES, libconfuse would merge a second block of the
	 * same name into the first, and load modules for the wrong types. */
	cfg_opt_t root[] = {CFG_STR("module_path", CAD_PKGLIBDIR, CFGF_NONE),
			    CFG_SEC("adapter", adapter,
				    CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
			    CFG_STR_LIST("__unknown", NULL, CFGF_NONE), CFG_END()};
	cfg_t *cfg = cfg_init(root, CFGF_IGNORE_UNKNOWN);
	if (!cfg)
		return -ENOMEM;
	int rc = parse_text(cfg, text);
	if (rc != 0)
		goto out;

	c->module_path = strdup(module_dir ? module_dir : cfg_getstr(cfg, "module_path"));
	c->n_adapters = cfg_size(cfg, "adapter");
	c->adapters = calloc(c->n_adapters ? c->n_adapters : 1, sizeof(*c->adapters));
	if (!c->module_path || !c->adapters) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < c->n_adapters; i++) {
		cfg_t *a = cfg_getnsec(cfg, "adapter", (unsigned)i);
		struct adapter_config *ac = &c->adapters[i];
		ac->name = strdup(cfg_title(a));
		if (!ac->name) {
			rc = -ENOMEM;
			goto out;
		}
		ac->line = a->line;
		ac->ingest.kind = CAD_KIND_INGEST;
		ac->stream.kind = CAD_KIND_STREAM;
	}
	/* Types are looked at after every adapter is known, so that errors in
	 * a block can name their adapter. */
	for (size_t i = 0; i < c->n_adapters; i++) {
		cfg_t *a = cfg_getnsec(cfg, "adapter", (unsigned)i);
		struct adapter_config *ac = &c->adapters[i];
		struct cad_config *blocks[] = {&ac->ingest, &ac->stream};
		for (int k = 0; k < 2; k++) {
			struct cad_config *b = blocks[k];
			b->conf = c;
			b->adapter = ac->name;
			const char *kind = module_kind_name(b->kind);
			cfg_t *sec = cfg_size(a, kind) ? cfg_getsec(a, kind) : NULL;
			if (!sec) {
				config_error_at(c, ac->line, ac->name, NULL, kind,
						"the %s block is missing", kind);
				rc = -EINVAL;
				continue;
			}
			const char *type = cfg_getstr(sec, "type");
			if (!type) {
				config_error_at(c, sec->line, ac->name, kind, "type",
						"required option is missing");
				rc = -EINVAL;
				continue;
			}
			b->line = config_line_of(c, sec, "type", sec->line);
			if (find_or_load(c, b, type) != 0)
				rc = -EINVAL;
		}
	}
out:
	cfg_free(cfg);
	c->n_lines = 0; /* the sections they point at are gone */
	return rc;
}

/* ------------------------------------------------------------ pass 2 */

static int check_globals(struct config *c)
{
	int errors = 0;
	cfg_t *cfg = c->cfg;
	if (log_level_parse(cfg_getstr(cfg, "log_level")) < 0) {
		config_error_at(c, config_line_of(c, cfg, "log_level", 0), NULL, NULL, "log_level",
				"'%s' is not one of: debug, info, warn, error",
				cfg_getstr(cfg, "log_level"));
		errors++;
	}
	c->drain_timeout = cfg_getint(cfg, "drain_timeout");
	if (c->drain_timeout < 0 || c->drain_timeout > 3600) {
		config_error_at(c, config_line_of(c, cfg, "drain_timeout", 0), NULL, NULL,
				"drain_timeout", "%ld is out of range (0 to 3600 seconds)",
				c->drain_timeout);
		errors++;
	}
	const char *listen = cfg_getstr(cfg, "metrics_listen"), *why;
	if (*listen && !metrics_listen_parse(NULL, NULL, listen, &why)) {
		config_error_at(c, config_line_of(c, cfg, "metrics_listen", 0), NULL, NULL,
				"metrics_listen", "'%s': %s", listen, why);
		errors++;
	}
	c->metrics_max_connections = cfg_getint(cfg, "metrics_max_connections");
	if (c->metrics_max_connections < 1 ||
	    c->metrics_max_connections > CONFIG_METRICS_MAX_CONNECTIONS_MAX) {
		config_error_at(c, config_line_of(c, cfg, "metrics_max_connections", 0), NULL, NULL,
				"metrics_max_connections", "%ld is out of range (1 to %ld)",
				c->metrics_max_connections, CONFIG_METRICS_MAX_CONNECTIONS_MAX);
		errors++;
	}
	if (c->n_adapters == 0) {
		config_error_at(c, 0, NULL, NULL, NULL, "no adapter is configured");
		errors++;
	}
	const char *id = cfg_getstr(cfg, "identity");
	char host[HOST_NAME_MAX + 1] = "localhost";
	if (!id) {
		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		id = host;
	}
	c->identity = strdup(id);
	c->log_level = strdup(cfg_getstr(cfg, "log_level"));
	c->log_file = strdup(cfg_getstr(cfg, "log_file"));
	c->metrics_listen = strdup(cfg_getstr(cfg, "metrics_listen"));
	if (!c->identity || !c->log_level || !c->log_file || !c->metrics_listen)
		return -ENOMEM;
	return errors;
}

static int check_adapter(struct config *c, size_t i)
{
	int errors = 0;
	cfg_t *a = cfg_getnsec(c->cfg, "adapter", (unsigned)i);
	struct adapter_config *ac = &c->adapters[i];
	ac->line = a->line;
	if (!adapter_name_valid(ac->name)) {
		config_error_at(c, a->line, ac->name, NULL, NULL,
				"the adapter name may hold only letters, digits, '_' and '-'");
		errors++;
	}
	ac->queue_len = cfg_getint(a, "queue_len");
	if (ac->queue_len < 1 || ac->queue_len > CONFIG_QUEUE_LEN_MAX) {
		config_error_at(c, config_line_of(c, a, "queue_len", a->line), ac->name, NULL,
				"queue_len", "%ld is out of range (1 to %ld)", ac->queue_len,
				CONFIG_QUEUE_LEN_MAX);
		errors++;
	}
	ac->queue_wait_ms = cfg_getint(a, "queue_wait_ms");
	if (ac->queue_wait_ms < 0 || ac->queue_wait_ms > CONFIG_QUEUE_WAIT_MS_MAX) {
		config_error_at(c, config_line_of(c, a, "queue_wait_ms", a->line), ac->name, NULL,
				"queue_wait_ms", "%ld is out of range (0 to %ld)",
				ac->queue_wait_ms, CONFIG_QUEUE_WAIT_MS_MAX);
		errors++;
	}
	ac->max_bytes = cfg_getint(a, "max_bytes");
	if (ac->max_bytes < CONFIG_MAX_BYTES_MIN || ac->max_bytes > CONFIG_MAX_BYTES_MAX) {
		config_error_at(c, config_line_of(c, a, "max_bytes", a->line), ac->name, NULL,
				"max_bytes", "%ld is out of range (%ld to %ld)", ac->max_bytes,
				CONFIG_MAX_BYTES_MIN, CONFIG_MAX_BYTES_MAX);
		errors++;
	}
	struct cad_config *blocks[] = {&ac->ingest, &ac->stream};
	for (int k = 0; k < 2; k++) {
		/* The first pass made sure both blocks and their types exist. */
		struct cad_config *b = blocks[k];
		b->sec = cfg_getsec(a, module_kind_name(b->kind));
		b->line = config_line_of(c, b->sec, "type", b->sec->line);
		errors += block_check(b);
	}
	return errors;
}

/* The strict tables: the daemon's own options, with the blocks' tables
 * (block_opts_new) inside. config_each_option() walks the same ones. */
#define ADAPTER_OPTS(ingest, stream)                                                             \
	{                                                                                        \
		CFG_INT("queue_len", 1000, CFGF_NONE), CFG_INT("queue_wait_ms", 250, CFGF_NONE), \
			CFG_INT("max_bytes", CONFIG_MAX_BYTES_DEFAULT, CFGF_NONE),               \
			CFG_SEC("ingest", ingest, CFGF_NONE),                                    \
			CFG_SEC("stream", stream, CFGF_NONE), CFG_END()                          \
	}
#define ROOT_OPTS(adapter)                                                      \
	{                                                                       \
		CFG_STR("identity", NULL, CFGF_NODEFAULT),                      \
			CFG_STR("module_path", CAD_PKGLIBDIR, CFGF_NONE),       \
			CFG_STR("log_level", "info", CFGF_NONE),                \
			CFG_STR("log_file", "stderr", CFGF_NONE),               \
			CFG_STR("metrics_listen", "", CFGF_NONE),               \
			CFG_INT("metrics_max_connections", 64, CFGF_NONE),      \
			CFG_INT("drain_timeout", 10, CFGF_NONE),                \
			CFG_SEC("adapter", adapter,                             \
				CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES), \
			CFG_END()                                               \
	}

static int second_pass(struct config *c, const char *text)
{
	int rc = -ENOMEM;
	cfg_opt_t *ingest = block_opts_new(c, CAD_KIND_INGEST, record_line);
	cfg_opt_t *stream = block_opts_new(c, CAD_KIND_STREAM, record_line);
	if (!ingest || !stream)
		goto out;
	cfg_opt_t adapter[] = ADAPTER_OPTS(ingest, stream);
	cfg_opt_t root[] = ROOT_OPTS(adapter);
	for (cfg_opt_t *o = root; o->name; o++)
		o->validcb = record_line;
	for (cfg_opt_t *o = adapter; o->name; o++)
		if (o->type != CFGT_SEC)
			o->validcb = record_line;

	c->cfg = cfg_init(root, CFGF_NONE);
	if (!c->cfg)
		goto out;
	rc = parse_text(c->cfg, text);
	if (rc != 0)
		goto out;

	int errors = check_globals(c);
	if (errors < 0) {
		rc = errors;
		goto out;
	}
	for (size_t i = 0; i < c->n_adapters; i++)
		errors += check_adapter(c, i);
	rc = errors ? -EINVAL : 0;
out:
	/* The parsed sections keep pointers into these tables until cfg_free,
	 * so they live as long as the config. */
	c->ingest_opts = ingest;
	c->stream_opts = stream;
	return rc;
}

int config_load(struct config **out, const char *file, const char *module_dir)
{
	return config_load_again(out, file, module_dir, NULL);
}

int config_load_again(struct config **out, const char *file, const char *module_dir,
		      const struct config *running)
{
	struct config *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->running = running;
	c->file = strdup(file);
	if (!c->file) {
		free(c);
		return -ENOMEM;
	}
	char *text = NULL;
	int rc = config_text_read(&text, c->file);
	if (rc != 0) {
		log_error("%s: cannot read the configuration: %s", c->file,
			  rc == -EINVAL ? "it is not a text file" : strerror(-rc));
		config_free(c);
		return rc;
	}
	parsing = c;
	/* The strict pass needs every module's options: when a module cannot
	 * be loaded, its block's options would only add noise. */
	rc = first_pass(c, text, module_dir);
	if (rc == 0)
		rc = second_pass(c, text);
	parsing = NULL;
	c->running = NULL;
	free(text);
	if (rc != 0) {
		config_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void config_free(struct config *c)
{
	if (!c)
		return;
	if (c->cfg)
		cfg_free(c->cfg);
	block_opts_free(c->ingest_opts);
	block_opts_free(c->stream_opts);
	for (size_t i = 0; i < c->n_adapters; i++)
		free(c->adapters[i].name);
	free(c->adapters);
	for (size_t i = 0; i < c->n_modules; i++)
		module_unload(c->modules[i]);
	free(c->modules);
	free(c->lines);
	free(c->file);
	free(c->identity);
	free(c->module_path);
	free(c->log_level);
	free(c->log_file);
	free(c->metrics_listen);
	free(c);
}

static const char *type_word(const cfg_opt_t *o)
{
	if (o->flags & CFGF_LIST)
		return "list";
	switch (o->type) {
	case CFGT_INT:
		return "integer";
	case CFGT_BOOL:
		return "boolean";
	default:
		return "string";
	}
}

static void each_in(const cfg_opt_t *opts, const char *where, config_option_fn fn, void *arg)
{
	for (const cfg_opt_t *o = opts; o && o->name; o++)
		if (o->type != CFGT_SEC)
			fn(arg, where, o->name, type_word(o));
}

int config_each_option(config_option_fn fn, void *arg)
{
	/* With no module loaded, a block's table holds the daemon's part. */
	struct config none = {.file = "(options)"};
	cfg_opt_t *ingest = block_opts_new(&none, CAD_KIND_INGEST, NULL);
	cfg_opt_t *stream = block_opts_new(&none, CAD_KIND_STREAM, NULL);
	if (!ingest || !stream) {
		block_opts_free(ingest);
		block_opts_free(stream);
		return -ENOMEM;
	}
	cfg_opt_t adapter[] = ADAPTER_OPTS(ingest, stream);
	cfg_opt_t root[] = ROOT_OPTS(adapter);
	each_in(root, "global", fn, arg);
	each_in(adapter, "adapter", fn, arg);
	each_in(ingest, "ingest", fn, arg);
	each_in(stream, "stream", fn, arg);
	block_opts_free(ingest);
	block_opts_free(stream);
	return 0;
}
