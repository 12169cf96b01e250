/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's life once its configuration is loaded: build the adapters,
 * start them, wait for signals, drain and stop.
 */
#ifndef CAD_DAEMON_H
#define CAD_DAEMON_H

#include <stdbool.h>

#include "config.h"

/* Exit statuses, documented in choria-adapterd(8). */
#define EXIT_OK 0
#define EXIT_CONFIG 1  /* the configuration or a module is wrong */
#define EXIT_USAGE 2   /* bad command line */
#define EXIT_RUNTIME 3 /* could not start (threads, memory, log file) */

/* Create every adapter's module instances, print a summary of each, and
 * release them: what `-t` does after loading. Returns an exit status. */
int daemon_check(struct config *conf);

/* Run until SIGTERM or SIGINT, then drain; SIGHUP reloads the file
 * conf->file, with modules from `module_dir` (-M) when not NULL. Takes
 * `conf` over, and frees it. Returns an exit status. */
int daemon_run(struct config *conf, const char *module_dir);

#endif
