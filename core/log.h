/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's log: levels, and a destination that is stderr, syslog or a
 * file (reopened on SIGHUP so logrotate can move it away).
 */
#ifndef CAD_LOG_H
#define CAD_LOG_H

#include <stdarg.h>
#include <stdbool.h>

#include <choria-adapterd/cad_module.h>

/* Parse "debug", "info", "warn" or "error"; -1 when unknown. */
int log_level_parse(const char *name);
const char *log_level_name(enum cad_log_level level);

void log_set_level(enum cad_log_level level);
bool log_enabled(enum cad_log_level level);

/* "stderr", "syslog" or a file path. Returns 0 or a negative errno (the
 * previous destination stays in use on failure). */
CAD_MUSTCHECK int log_open(const char *dest);
/* Reopen a file destination (SIGHUP); no-op for stderr and syslog. */
CAD_MUSTCHECK int log_reopen(void);
void log_close(void);

void log_msg(enum cad_log_level level, const char *fmt, ...) CAD_PRINTF(2, 3);
void log_vmsg(enum cad_log_level level, const char *prefix, const char *fmt, va_list ap)
	CAD_PRINTF(3, 0);

#define log_debug(...) log_msg(CAD_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(CAD_LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(CAD_LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(CAD_LOG_ERROR, __VA_ARGS__)

#endif
