/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loading choria-adapterd.conf: the global options, the adapter blocks and
 * each block's module options, checked in full. Every error is written to
 * the log as "file:line: section path: message", and loading goes on far
 * enough to report every error it can before failing.
 */
#ifndef CAD_CONFIG_H
#define CAD_CONFIG_H

#include <confuse.h>
#include <stddef.h>

#include <choria-adapterd/cad_module.h>
#include "module.h"

struct config;

/* One `ingest { }` or `stream { }` block: what the module receives as its
 * struct cad_config. */
struct cad_config {
	struct config *conf;
	const char *adapter; /* the adapter's name */
	enum cad_kind kind;
	struct module *module; /* loaded for `type` */
	cfg_t *sec;            /* the parsed block */
	long workers;
	int line;   /* where `type` was set */
	int errors; /* semantic errors reported through cfg_error */
};

/* An adapter's queue: at most this many messages, and a full queue holds
 * the ingest back at most this long, which keeps the wait inside the 5 s a
 * stopping choria ingest gives its subscriptions to drain. */
#define CONFIG_QUEUE_LEN_MAX 10000000L
#define CONFIG_QUEUE_WAIT_MS_MAX 5000L
/* An adapter's byte budget: what its queue and its stream module hold. */
#define CONFIG_MAX_BYTES_DEFAULT (256L * 1024 * 1024)
#define CONFIG_MAX_BYTES_MIN (1024L * 1024)
#define CONFIG_MAX_BYTES_MAX (1L << 50)
/* Connections the metrics endpoint holds at once, at most. */
#define CONFIG_METRICS_MAX_CONNECTIONS_MAX 10000L

struct adapter_config {
	char *name;
	long queue_len;
	long queue_wait_ms;
	long max_bytes;
	int line;
	struct cad_config ingest;
	struct cad_config stream;
};

struct opt_line {
	cfg_t *sec;
	const char *opt;
	int line;
};

struct config {
	char *file;
	char *identity;
	char *module_path;
	char *log_level;
	char *log_file;
	char *metrics_listen;
	long metrics_max_connections;
	long drain_timeout;

	size_t n_adapters;
	struct adapter_config *adapters;

	size_t n_modules;
	struct module **modules; /* each (kind, type) loaded once */

	const struct config *running; /* while a reload loads: see config_load_again */

	cfg_t *cfg;
	cfg_opt_t *ingest_opts, *stream_opts; /* tables `cfg` was built from */

	/* where each option was set: (section, option) -> line */
	size_t n_lines, cap_lines;
	struct opt_line *lines;
};

/* Parse and check `file`. `module_dir` (from -M) overrides module_path
 * when not NULL. Returns 0, -EINVAL after reporting config errors, or
 * another negative errno. */
CAD_MUSTCHECK int config_load(struct config **out, const char *file, const char *module_dir);
/* The same for a reload: a module type the process has ever loaded is
 * opened again from the file it first came from, so that a changed
 * module_path applies only to types loaded from now on. `running` is the
 * configuration that runs. */
CAD_MUSTCHECK int config_load_again(struct config **out, const char *file, const char *module_dir,
				    const struct config *running);
void config_free(struct config *conf); /* accepts NULL */

/* Call fn for every option the daemon itself accepts, from the tables the
 * parser uses: `where` is "global", "adapter", "ingest" or "stream" (the
 * options the daemon owns in every block), `type` is "string", "integer",
 * "boolean" or "list". Modules' own options are in their descriptors. For
 * the documentation tests. Returns 0 or -ENOMEM. */
typedef void (*config_option_fn)(void *arg, const char *where, const char *name, const char *type);
int config_each_option(config_option_fn fn, void *arg);

/* The line an option was set on in a block, or the block's line. */
int config_line_of(const struct config *conf, cfg_t *sec, const char *opt, int fallback);

/* Report an error as "file:line: adapter NAME: KIND: OPT: message". */
void config_error_at(const struct config *conf, int line, const char *adapter, const char *kind,
		     const char *opt, const char *fmt, ...) CAD_PRINTF(6, 7);

#endif
