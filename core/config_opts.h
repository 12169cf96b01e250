/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Module options in libconfuse terms: the option table for a block (the
 * host's `type` and `workers` plus every loaded module's options), the
 * checks made once a block's module is known, and the struct cad_config
 * accessors handed to modules.
 */
#ifndef CAD_CONFIG_OPTS_H
#define CAD_CONFIG_OPTS_H

#include <confuse.h>

#include "config.h"

/* A CFG_END-terminated table for blocks of `kind`, holding the union of the
 * options of every loaded module of that kind; each option records the
 * line it is set on through `line_cb`. NULL when two modules declare one
 * name with different types (reported). Free with block_opts_free(). */
cfg_opt_t *block_opts_new(struct config *conf, enum cad_kind kind, cfg_validate_callback_t line_cb);
void block_opts_free(cfg_opt_t *opts);

/* Check a parsed block against its module: options of other modules,
 * required options, choices and ranges; then fill in the module's
 * defaults. Returns the number of errors reported. */
int block_check(struct cad_config *block);

/* Accessors for struct cad_host. */
const char *block_cfg_str(const struct cad_config *cfg, const char *name);
long block_cfg_int(const struct cad_config *cfg, const char *name);
bool block_cfg_bool(const struct cad_config *cfg, const char *name);
unsigned block_cfg_list_len(const struct cad_config *cfg, const char *name);
const char *block_cfg_list_str(const struct cad_config *cfg, const char *name, unsigned i);
void block_cfg_error(const struct cad_config *cfg, const char *name, const char *fmt, ...)
	CAD_PRINTF(3, 4);

#endif
