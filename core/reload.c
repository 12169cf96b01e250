/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reload (SIGHUP), on the main thread: the file is loaded again with the
 * code that loads it at start and for `-t`, and adapters are matched by
 * name and compared by their effective configuration (config_effective.h).
 *
 * Everything that can refuse comes first, before any running adapter is
 * touched: the file must check, every new instance (added and changed
 * adapters) must be created, a moved metrics endpoint must bind and a new
 * log file must open. A refusal there undoes what was prepared and leaves
 * the daemon as it was. Then the new instances start; when one does not
 * start, the reload fails and retires nothing: changed adapters keep their
 * old instance, removed ones keep running, added ones that started stay.
 * Otherwise the replaced and removed adapters stop ingest and drain, side
 * by side, within drain_timeout.
 *
 * A changed adapter's new instance subscribes in the same queue group as
 * the old one before the old one unsubscribes, so the server gives each
 * message to one of them, and it shares the old one's counters, so its
 * series go on.
 */
#include "daemon_state.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <choria-adapterd/cad_clock.h>
#include "config_effective.h"
#include "log.h"

#define RELOAD_NONE SIZE_MAX
/* Seconds an adapter may take to start, or past its drain to be joined. */
#define RELOAD_BUSY_MARGIN_S 30

/* What becomes of a running adapter. */
enum reload_fate {
	RELOAD_KEEP,
	RELOAD_REPLACE, /* by a new instance of the same name */
	RELOAD_REMOVE,
};

struct reload_plan {
	struct config *conf;
	size_t n;                    /* blocks in `conf` */
	size_t *was;                 /* per block: index in d->run, or RELOAD_NONE */
	struct adapter **fresh;      /* per block: its new instance, NULL if unchanged */
	struct daemon_running *next; /* what runs after the reload */
	size_t n_next;
	enum reload_fate *fate;    /* per running adapter */
	struct adapter **draining; /* the endpoint's view while they drain */
	struct adapter **settled;  /* and after */
	struct metrics *metrics;   /* the moved endpoint, if it moved */
	bool metrics_moved;
	bool metrics_closed; /* the old endpoint closed to free its port */
	char why[256];       /* the first reason the reload failed */
};

static void reload_why(struct reload_plan *p, const char *fmt, ...) CAD_PRINTF(2, 3);
static void reload_why(struct reload_plan *p, const char *fmt, ...)
{
	if (p->why[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->why, sizeof(p->why), fmt, ap);
	va_end(ap);
}

static void reload_count(struct daemon *d, bool ok, const char *why)
{
	struct config_status *s = &d->status;
	s->last_ok = ok;
	if (ok) {
		s->reloads_ok++;
		s->success_unix_s = (int64_t)time(NULL);
		s->error[0] = '\0';
		log_info("configuration reloaded from %s", d->conf->file);
	} else {
		s->reloads_failed++;
		snprintf(s->error, sizeof(s->error), "%s", why);
		log_error("reload of %s failed: %s", d->conf->file, why);
	}
}

static void reload_plan_free(struct reload_plan *p)
{
	free(p->was);
	free(p->fresh);
	free(p->next);
	free(p->fate);
	free(p->draining);
	free(p->settled);
}

static struct metrics_view reload_view(const struct daemon *d)
{
	return (struct metrics_view){d->shown, d->n_shown, d->conf->identity, &d->status,
				     d->n_draining};
}

/* The old endpoint, closed to free its port for the new address, listens
 * again where it was. */
static void reload_metrics_restore(struct daemon *d)
{
	struct metrics_view v = reload_view(d);
	if (metrics_start(&d->metrics, d->conf->metrics_listen, d->conf->metrics_max_connections,
			  &v, METRICS_RUNNING) != 0) {
		d->metrics = NULL;
		log_error("metrics: cannot listen on %s again: /metrics and /healthz are no "
			  "longer served",
			  d->conf->metrics_listen);
		return;
	}
	log_warn("metrics: serving on %s again", d->conf->metrics_listen);
}

/* Undo what reload_prepare() did: nothing running was touched, but for an
 * endpoint closed to free its port, which listens again. */
static void reload_discard(struct daemon *d, struct reload_plan *p)
{
	for (size_t i = 0; p->fresh && i < p->n; i++)
		adapter_free(p->fresh[i]);
	metrics_stop(p->metrics);
	if (p->metrics_closed)
		reload_metrics_restore(d);
	config_free(p->conf);
	reload_plan_free(p);
}

static size_t reload_find_in(const struct daemon_running *run, size_t n, const char *name)
{
	for (size_t j = 0; j < n; j++)
		if (strcmp(adapter_name(run[j].adapter), name) == 0)
			return j;
	return RELOAD_NONE;
}

static size_t reload_find(const struct daemon *d, const char *name)
{
	return reload_find_in(d->run, d->n, name);
}

/* Create the new instances, every one even past a failure so that each
 * error is reported. */
static int reload_create(struct daemon *d, struct reload_plan *p)
{
	int failed = 0;
	for (size_t i = 0; i < p->n; i++) {
		const struct adapter_config *ac = &p->conf->adapters[i];
		size_t j = reload_find(d, ac->name);
		p->was[i] = j;
		if (j != RELOAD_NONE && config_effective_same(d->run[j].block, ac))
			continue;
		struct adapter *old = j == RELOAD_NONE ? NULL : d->run[j].adapter;
		int rc = adapter_new(&p->fresh[i], ac, p->conf->identity, old);
		if (rc != 0) {
			if (rc != -EINVAL)
				log_error("adapter %s: cannot be created: %s", ac->name,
					  strerror(-rc));
			reload_why(p, "adapter %s cannot be created", ac->name);
			failed++;
		}
	}
	return failed ? -EINVAL : 0;
}

/* A new address is bound beside the old one. When the old one holds the
 * port (0.0.0.0:8222 to 127.0.0.1:8222), it is closed first, and bound
 * again if the new one still cannot be. */
static int reload_metrics_bind(struct daemon *d, struct reload_plan *p)
{
	const char *to = p->conf->metrics_listen, *from = d->conf->metrics_listen;
	struct metrics_view v = reload_view(d);
	long max = p->conf->metrics_max_connections;
	int rc = metrics_try_start(&p->metrics, to, max, &v, METRICS_RUNNING);
	if (rc != -EADDRINUSE || !d->metrics || !metrics_listen_same_port(to, from)) {
		if (rc == -EADDRINUSE)
			log_error("metrics_listen: cannot listen on %s: %s", to, strerror(-rc));
		return rc;
	}
	log_info("metrics: %s holds the port of %s: closing it first", from, to);
	metrics_stop(d->metrics);
	d->metrics = NULL;
	p->metrics_closed = true;
	rc = metrics_start(&p->metrics, to, max, &v, METRICS_RUNNING);
	if (rc != 0) {
		p->metrics_closed = false;
		reload_metrics_restore(d);
	}
	return rc;
}

/* Everything that may refuse, with nothing running touched yet. */
static int reload_prepare(struct daemon *d, struct reload_plan *p)
{
	struct config *c = p->conf;
	p->n = c->n_adapters;
	p->was = calloc(p->n, sizeof(*p->was));
	p->fresh = calloc(p->n, sizeof(*p->fresh));
	p->next = calloc(p->n + d->n + 1, sizeof(*p->next));
	p->fate = calloc(d->n + 1, sizeof(*p->fate));
	p->draining = calloc(p->n + d->n + 1, sizeof(*p->draining));
	p->settled = calloc(p->n + d->n + 1, sizeof(*p->settled));
	if (!p->was || !p->fresh || !p->next || !p->fate || !p->draining || !p->settled) {
		reload_why(p, "out of memory");
		return -ENOMEM;
	}
	int rc = reload_create(d, p);
	if (rc != 0)
		return rc;

	p->metrics_moved = !metrics_listen_same(c->metrics_listen, d->conf->metrics_listen);
	if (p->metrics_moved && *c->metrics_listen) {
		rc = reload_metrics_bind(d, p);
		if (rc != 0) {
			reload_why(p, "metrics_listen: cannot listen on %s: %s", c->metrics_listen,
				   strerror(-rc));
			return rc;
		}
	}
	if (strcmp(c->log_file, d->conf->log_file) != 0) {
		rc = log_open(c->log_file);
		if (rc != 0) {
			reload_why(p, "log_file: cannot open %s: %s", c->log_file, strerror(-rc));
			return rc;
		}
		log_info("log file %s opened (reload)", c->log_file);
	}
	return 0;
}

/* A new instance that did not start: its ingest may have subscribed and
 * taken messages from the shared queue group before another part failed,
 * so it drains like any other within drain_timeout. */
static void reload_abandon(struct adapter *a, long drain_timeout)
{
	daemon_expect_busy(drain_timeout + RELOAD_BUSY_MARGIN_S);
	adapter_stop_ingest(a);
	adapter_drain(a, cad_clock_mono_ns() + drain_timeout * CAD_NS_PER_SEC);
	adapter_free(a);
}

/* Start the new instances and decide what runs from now on. When one
 * does not start, nothing is retired: a changed adapter keeps its old
 * instance (its new one, started or not, drains and goes), a removed one
 * keeps running, and an added one that started stays. */
static void reload_start(struct daemon *d, struct reload_plan *p)
{
	long drain_timeout = p->conf->drain_timeout;
	bool failed = false;
	for (size_t i = 0; i < p->n; i++) {
		struct adapter *a = p->fresh[i];
		if (!a || adapter_start(a) == 0)
			continue;
		const char *name = p->conf->adapters[i].name;
		p->fresh[i] = NULL;
		reload_abandon(a, drain_timeout);
		failed = true;
		if (p->was[i] != RELOAD_NONE) {
			log_error("adapter %s: its new configuration did not start; the running "
				  "one goes on",
				  name);
			reload_why(p, "adapter %s: the changed adapter did not start", name);
		} else {
			reload_why(p, "adapter %s: the added adapter did not start", name);
		}
	}

	for (size_t j = 0; j < d->n; j++)
		p->fate[j] = failed ? RELOAD_KEEP : RELOAD_REMOVE;
	size_t n = 0;
	for (size_t i = 0; i < p->n; i++) {
		size_t j = p->was[i];
		struct adapter *a = p->fresh[i];
		const char *name = p->conf->adapters[i].name;
		p->fresh[i] = NULL;
		if (j != RELOAD_NONE)
			p->fate[j] = RELOAD_KEEP;
		if (a && j != RELOAD_NONE && failed) {
			log_warn("adapter %s: its new configuration started but is not applied, "
				 "since another adapter did not start",
				 name);
			reload_abandon(a, drain_timeout);
			a = NULL;
		}
		if (a) {
			p->next[n++] = (struct daemon_running){a, &p->conf->adapters[i], p->conf};
			if (j != RELOAD_NONE)
				p->fate[j] = RELOAD_REPLACE;
			log_info("adapter %s: %s", name, j == RELOAD_NONE ? "added" : "changed");
		} else if (j != RELOAD_NONE) {
			p->next[n++] = d->run[j];
		}
	}
	/* Adapters the file removes, kept running by a failed start. */
	for (size_t j = 0; j < d->n; j++)
		if (failed &&
		    reload_find_in(p->next, n, adapter_name(d->run[j].adapter)) == RELOAD_NONE) {
			log_warn("adapter %s: kept running, since another adapter did not start",
				 adapter_name(d->run[j].adapter));
			p->next[n++] = d->run[j];
		}
	p->n_next = n;
}

/* Stop ingest of the replaced and removed adapters, then drain them side
 * by side within drain_timeout. A stop signal that arrived meanwhile waits
 * for this drain: systemd is told so before it begins. */
static void reload_retire(struct daemon *d, struct reload_plan *p, struct daemon_running *old,
			  size_t n_old, long drain_timeout)
{
	size_t retiring = 0;
	for (size_t j = 0; j < n_old; j++)
		retiring += p->fate[j] != RELOAD_KEEP;
	if (!retiring)
		return;
	if (daemon_stop_is_pending())
		daemon_notify_stopping_after(d, drain_timeout);
	for (size_t j = 0; j < n_old; j++)
		if (p->fate[j] != RELOAD_KEEP)
			adapter_stop_ingest(old[j].adapter);
	daemon_expect_busy(drain_timeout + RELOAD_BUSY_MARGIN_S);
	int64_t deadline = cad_clock_mono_ns() + drain_timeout * CAD_NS_PER_SEC;
	for (size_t j = 0; j < n_old; j++)
		if (p->fate[j] != RELOAD_KEEP)
			adapter_drain_begin(old[j].adapter, deadline);
	for (size_t j = 0; j < n_old; j++)
		if (p->fate[j] != RELOAD_KEEP) {
			adapter_drain(old[j].adapter, deadline);
			if (p->fate[j] == RELOAD_REMOVE) {
				adapter_log_stats(old[j].adapter);
				log_info("adapter %s: removed", adapter_name(old[j].adapter));
			}
		}
}

/* The moved endpoint takes over from the old one, which stops. */
static void reload_move_metrics(struct daemon *d, struct reload_plan *p)
{
	if (!p->metrics_moved)
		return;
	metrics_stop(d->metrics);
	d->metrics = p->metrics;
	p->metrics = NULL;
	if (!d->metrics)
		log_info("metrics: no longer served (metrics_listen is empty)");
}

static void reload_apply(struct daemon *d, struct reload_plan *p)
{
	/* Each new instance may take a connection timeout or two to start. */
	long starting = 0;
	for (size_t i = 0; i < p->n; i++)
		starting += p->fresh[i] != NULL;
	if (starting)
		daemon_expect_busy(starting * RELOAD_BUSY_MARGIN_S);
	struct config *was_conf = d->conf;
	log_set_level((enum cad_log_level)log_level_parse(p->conf->log_level));
	if (!p->metrics_moved)
		metrics_set_max_connections(d->metrics, p->conf->metrics_max_connections);
	reload_start(d, p);

	/* What runs now, in the order of the new file. */
	struct daemon_running *old = d->run;
	size_t n_old = d->n, shown = 0;
	d->run = p->next;
	d->n = p->n_next;
	p->next = NULL;
	d->held[d->n_held++] = was_conf;
	d->conf = p->conf;
	reload_move_metrics(d, p);

	/* Removed adapters stay on show until their drain ends; a replaced
	 * one is shown through its successor, which counts into the same
	 * counters: one series per name. */
	for (size_t i = 0; i < d->n; i++)
		p->draining[shown++] = d->run[i].adapter;
	for (size_t j = 0; j < n_old; j++)
		if (p->fate[j] == RELOAD_REMOVE)
			p->draining[shown++] = old[j].adapter;
	daemon_show(d, p->draining, shown, shown - d->n);
	p->draining = NULL;

	reload_retire(d, p, old, n_old, d->conf->drain_timeout);

	reload_count(d, p->why[0] == '\0', p->why);
	for (size_t i = 0; i < d->n; i++)
		p->settled[i] = d->run[i].adapter;
	daemon_show(d, p->settled, d->n, 0);
	p->settled = NULL;
	for (size_t j = 0; j < n_old; j++)
		if (p->fate[j] != RELOAD_KEEP)
			adapter_free(old[j].adapter);
	free(old);
	daemon_release_configs(d);
}

void daemon_reload(struct daemon *d)
{
	log_info("reloading %s (SIGHUP)", d->conf->file);
	struct reload_plan p = {0};
	/* Room to keep the running configuration, which its adapters may
	 * still use; taken first, so that nothing fails past the point of no
	 * return. */
	struct config **held = realloc(d->held, (d->n_held + 1) * sizeof(*held));
	if (!held) {
		reload_count(d, false, "out of memory");
		daemon_show_status(d);
		return;
	}
	d->held = held;
	int rc = config_load_again(&p.conf, d->conf->file, d->module_dir, d->conf);
	if (rc != 0) {
		reload_count(d, false,
			     rc == -EINVAL ? "the configuration is not valid (see the errors above)"
					   : strerror(-rc));
		daemon_show_status(d);
		return;
	}
	if (reload_prepare(d, &p) != 0) {
		reload_count(d, false, p.why);
		reload_discard(d, &p);
		daemon_show_status(d);
		return;
	}
	reload_apply(d, &p);
	reload_plan_free(&p);
}
