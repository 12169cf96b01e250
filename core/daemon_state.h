/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the running daemon holds, shared by its main loop (daemon.c) and
 * the reload (reload.c). Main thread only, except what the metrics server
 * is handed through metrics_set_view().
 */
#ifndef CAD_DAEMON_STATE_H
#define CAD_DAEMON_STATE_H

#include <stdbool.h>
#include <stddef.h>

#include "adapters.h"
#include "config.h"
#include "metrics.h"

/* One running adapter, and the block it was created from: the block, and
 * the configuration that holds it, stay alive as long as the adapter,
 * since modules keep pointers into them. */
struct daemon_running {
	struct adapter *adapter;
	const struct adapter_config *block;
	struct config *conf;
};

struct daemon {
	struct config *conf;    /* the configuration loaded last */
	const char *module_dir; /* -M, or NULL */
	size_t n;
	struct daemon_running *run; /* one per adapter name */
	struct config **held;       /* earlier configurations, while adapters use them */
	size_t n_held;
	struct metrics *metrics;
	struct adapter **shown; /* what the metrics endpoint shows */
	size_t n_shown;
	size_t n_draining; /* the last of them, being removed */
	struct config_status status;
};

/* Show `adapters` (malloc'd, taken over; one per name), the last
 * `n_draining` of them being removed, on the metrics endpoint, with the
 * running identity and status; once it returns, the adapters shown before
 * are no longer read. */
void daemon_show(struct daemon *d, struct adapter **adapters, size_t n, size_t n_draining);
/* Show the same adapters with the current status and identity. */
void daemon_show_status(struct daemon *d);

/* Free the earlier configurations that no running adapter uses. */
void daemon_release_configs(struct daemon *d);

/* Say that the main thread is about to be busy for up to `seconds`, so
 * that the systemd watchdog, when on, waits that much longer. */
void daemon_expect_busy(long seconds);

/* Whether SIGTERM or SIGINT is pending, left pending. */
bool daemon_stop_is_pending(void);

/* A reload about to drain for up to `seconds` with a stop signal pending:
 * tell systemd that the daemon is stopping, and that its stop takes this
 * drain and the stop's own drain that follows. */
void daemon_notify_stopping_after(const struct daemon *d, long seconds);

/* Re-read the configuration file and apply it (SIGHUP); see reload.c. */
void daemon_reload(struct daemon *d);

#endif
