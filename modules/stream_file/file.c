/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `file` stream module: appends each message's envelope to a file as
 * one line of JSON, for debugging a fleet's traffic and for sites with no
 * streaming server. A message counts as published once its line is
 * written (and, with fsync = "always", on disk). A write that fails is
 * taken back and tried again with backoff, so a full disk delays messages
 * instead of losing them.
 *
 * The module notices log rotation by itself: before each write it checks
 * that `path` still names the file it holds open, and opens it anew when
 * the file was renamed or removed. The daemon's SIGHUP is not needed.
 *
 * Concurrency & locking: every worker writes to the one descriptor; `lock`
 * guards it, its identity and the rotation check, so that lines never
 * interleave and a partial line can be cut off again. A worker's list of
 * messages waiting for a retry is its own. host->msg_done() is called
 * outside the lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <choria-adapterd/cad_module.h>
#include "envelope.h"
#include "pacing.h"

#define RETRY_FIRST_MS 100
#define RETRY_MAX_MS 5000
/* Messages a worker holds for a retry before publish() waits for the
 * disk: past that the adapter's queue fills and counts what it drops. */
#define HELD_MAX 1024

struct file_out {
	const struct cad_host *host;
	struct cad_context *ctx;
	char *path;
	char *dir; /* the folder of path, whose entry for it is synced too */
	bool fsync_always;
	struct envelope_label label; /* output_protocol */

	pthread_mutex_t lock;
	int fd; /* -1 until start() */
	dev_t dev;
	ino_t ino;
	bool dir_unsynced;               /* opened (maybe created) since the folder's sync */
	struct cad_ratelimit warn_limit; /* shared by all workers */
};

struct held {
	struct cad_msg *msg;
	char *line;
	size_t len;
};

struct file_worker {
	struct file_out *f;
	/* Messages whose write failed, oldest first, with their lines. */
	struct held *held;
	size_t n_held;
	int64_t retry_at_ns;
	unsigned failures; /* in a row, for the backoff */
};

static void file_sleep_until(int64_t when_ns)
{
	int64_t d = when_ns - cad_clock_mono_ns();
	if (d <= 0)
		return;
	struct timespec ts = cad_clock_timespec(d);
	nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ options */

static const char *const file_fsync_choices[] = {"never", "always", NULL};

static const struct cad_option file_options[] = {
	{.name = "path",
	 .type = CAD_OPT_STRING,
	 .flags = CAD_OPT_REQUIRED,
	 .help = "file the envelopes are appended to, one JSON line each"},
	{.name = "fsync",
	 .type = CAD_OPT_STRING,
	 .def_str = "never",
	 .choices = file_fsync_choices,
	 .help = "always: a message is published once its line is on disk"},
	ENVELOPE_OPTIONS(ENVELOPE_PROTOCOL_FILE),
	{.name = NULL},
};

static void file_destroy(void *instance)
{
	struct file_out *f = instance;
	if (!f)
		return;
	if (f->fd >= 0)
		close(f->fd);
	pthread_mutex_destroy(&f->lock);
	free(f->path);
	free(f->dir);
	free(f);
}

/* Whether the file could be opened for appending, without creating it:
 * `choria-adapterd -t` leaves no trace. */
static int file_check_writable(const char *path)
{
	struct stat st;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return -EISDIR;
	if (access(path, W_OK) == 0)
		return 0;
	if (errno != ENOENT)
		return -errno;
	char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	int rc = access(dirname(copy), W_OK | X_OK) == 0 ? 0 : -errno;
	free(copy);
	return rc;
}

static int file_create(void **instance, const struct cad_host *host, struct cad_context *ctx,
		       const struct cad_config *cfg)
{
	struct file_out *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->host = host;
	f->ctx = ctx;
	f->fd = -1;
	pthread_mutex_init(&f->lock, NULL);
	int rc = 0;
	const char *fsync_mode = host->cfg_str(cfg, "fsync");
	f->fsync_always = fsync_mode && strcmp(fsync_mode, "always") == 0;
	if (envelope_label_read(&f->label, host, cfg) != 0) {
		rc = -EINVAL;
		goto fail;
	}
	f->path = strdup(host->cfg_str(cfg, "path"));
	char *copy = f->path ? strdup(f->path) : NULL;
	f->dir = copy ? strdup(dirname(copy)) : NULL;
	free(copy);
	if (!f->path || !f->dir) {
		rc = -ENOMEM;
		goto fail;
	}
	if (!*f->path) {
		host->cfg_error(cfg, "path", "must name a file");
		rc = -EINVAL;
		goto fail;
	}
	rc = file_check_writable(f->path);
	if (rc == -ENOMEM)
		goto fail;
	if (rc != 0) {
		host->cfg_error(cfg, "path", "cannot write %s: %s", f->path, strerror(-rc));
		rc = -EINVAL;
		goto fail;
	}
	*instance = f;
	return 0;
fail:
	file_destroy(f);
	return rc;
}

/* Open `path` for appending and remember which file it is. Lock held, or
 * no worker yet. */
static int file_open(struct file_out *f)
{
	int fd = open(f->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	if (f->fd >= 0)
		close(f->fd);
	f->fd = fd;
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	f->dir_unsynced = true;
	return 0;
}

/* A file just created is on disk once its folder's entry for it is: sync
 * the folder after the first line written to a newly opened file. */
static int file_sync_dir(struct file_out *f)
{
	int dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	int rc = fsync(dfd) == 0 ? 0 : -errno;
	close(dfd);
	if (rc == 0)
		f->dir_unsynced = false;
	return rc;
}

static int file_start(void *instance)
{
	struct file_out *f = instance;
	int rc = file_open(f);
	if (rc != 0) {
		f->host->log(f->ctx, CAD_LOG_ERROR, "cannot open %s: %s", f->path, strerror(-rc));
		return rc;
	}
	f->host->log(f->ctx, CAD_LOG_INFO, "appending to %s", f->path);
	return 0;
}

static void file_describe(void *instance, char *buf, size_t len)
{
	struct file_out *f = instance;
	snprintf(buf, len, "file %s, fsync %s", f->path, f->fsync_always ? "always" : "never");
}

/* ------------------------------------------------------------ writing */

/* When `path` no longer names the open file (rotated away or removed),
 * open it anew. If that fails, lines keep going to the old file rather
 * than nowhere. Lock held. */
static void file_follow_rotation(struct file_out *f)
{
	struct stat st;
	if (stat(f->path, &st) == 0 && st.st_dev == f->dev && st.st_ino == f->ino)
		return;
	int rc = file_open(f);
	if (rc == 0)
		f->host->log(f->ctx, CAD_LOG_INFO, "%s was rotated: reopened", f->path);
	else
		pacing_warn(
			f->host, f->ctx, &f->warn_limit,
			"%s was rotated but cannot be opened again (%s): still writing to the old file",
			f->path, strerror(-rc));
}

/* Write one whole line, or nothing: a failed write is cut off again so
 * that the retry does not leave half a line in front of it. */
static int file_write_line(struct file_out *f, const char *line, size_t len)
{
	pthread_mutex_lock(&f->lock);
	file_follow_rotation(f);
	struct stat st;
	off_t start = fstat(f->fd, &st) == 0 ? st.st_size : -1;
	size_t done = 0;
	int rc = 0;
	while (done < len) {
		ssize_t n = write(f->fd, line + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		done += (size_t)n;
	}
	if (rc == 0 && f->fsync_always && fdatasync(f->fd) != 0)
		rc = -errno;
	if (rc == 0 && f->fsync_always && f->dir_unsynced) {
		/* The line itself is on disk; a folder that cannot be synced
		 * (not readable, or a file system that refuses) is the
		 * operator's to know, not a reason to hold every line. */
		int d = file_sync_dir(f);
		if (d != 0) {
			f->dir_unsynced = false;
			f->host->log(
				f->ctx, CAD_LOG_WARN,
				"cannot sync the folder %s after creating %s: %s; a crash may lose the new file",
				f->dir, f->path, strerror(-d));
		}
	}
	/* A line that is not known to be whole and on disk is taken back,
	 * so that its retry does not write it twice. When it cannot be cut,
	 * it is ended, so that the retry starts on a line of its own. */
	if (rc != 0 && done > 0 && (start < 0 || ftruncate(f->fd, start) != 0) && done < len)
		(void)!write(f->fd, "\n", 1);
	if (rc != 0)
		pacing_warn(f->host, f->ctx, &f->warn_limit, "cannot write to %s: %s; retrying",
			    f->path, strerror(-rc));
	pthread_mutex_unlock(&f->lock);
	return rc;
}

/* Write what is held, oldest first, until one fails. */
static void file_flush_held(struct file_worker *w)
{
	struct file_out *f = w->f;
	size_t i = 0;
	for (; i < w->n_held; i++) {
		struct held *h = &w->held[i];
		if (h->msg->attempts++ > 0)
			f->host->count_retry(f->ctx);
		if (file_write_line(f, h->line, h->len) != 0)
			break;
		free(h->line);
		f->host->msg_done(f->ctx, h->msg, 0, NULL);
	}
	memmove(w->held, w->held + i, (w->n_held - i) * sizeof(*w->held));
	w->n_held -= i;
	if (w->n_held) {
		w->failures++;
		int64_t delay_ms = pacing_backoff_ms(RETRY_FIRST_MS, RETRY_MAX_MS, w->failures);
		w->retry_at_ns = cad_clock_mono_ns() + delay_ms * CAD_NS_PER_MS;
	} else {
		w->failures = 0;
	}
}

static void file_publish(void *worker, struct cad_msg *m)
{
	struct file_worker *w = worker;
	struct file_out *f = w->f;
	char *env = NULL;
	size_t len = 0;
	int rc = envelope_encode(&env, &len, &f->label, m);
	char *line = rc == 0 ? realloc(env, len + 1) : NULL;
	if (!line) {
		free(env);
		f->host->msg_done(f->ctx, m, rc ? rc : -ENOMEM, "encode_failed");
		return;
	}
	line[len++] = '\n';

	/* Behind a failed write: keep the order, wait for room, but not past
	 * the drain deadline. */
	while (w->n_held == HELD_MAX) {
		int64_t deadline = f->host->abi_minor >= 1 ? f->host->drain_deadline(f->ctx) : 0;
		int64_t now = cad_clock_mono_ns();
		if (deadline && now >= deadline) {
			free(line);
			f->host->msg_done(f->ctx, m, -ETIMEDOUT, "shutdown");
			return;
		}
		int64_t wake = now + 100 * CAD_NS_PER_MS;
		file_sleep_until(w->retry_at_ns < wake ? w->retry_at_ns : wake);
		if (cad_clock_mono_ns() >= w->retry_at_ns)
			file_flush_held(w);
	}
	w->held[w->n_held++] = (struct held){m, line, len};
	if (w->n_held == 1 || cad_clock_mono_ns() >= w->retry_at_ns)
		file_flush_held(w);
}

static void file_worker_idle(void *worker)
{
	struct file_worker *w = worker;
	if (w->n_held && cad_clock_mono_ns() >= w->retry_at_ns)
		file_flush_held(w);
}

static int file_worker_open(void **out, void *instance, unsigned index)
{
	(void)index;
	struct file_worker *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->held = calloc(HELD_MAX, sizeof(*w->held));
	if (!w->held) {
		free(w);
		return -ENOMEM;
	}
	w->f = instance;
	*out = w;
	return 0;
}

static void file_worker_close(void *worker, int64_t deadline_ns)
{
	struct file_worker *w = worker;
	while (w->n_held && cad_clock_mono_ns() < deadline_ns) {
		file_sleep_until(w->retry_at_ns < deadline_ns ? w->retry_at_ns : deadline_ns);
		if (cad_clock_mono_ns() >= w->retry_at_ns)
			file_flush_held(w);
	}
	for (size_t i = 0; i < w->n_held; i++) {
		free(w->held[i].line);
		w->f->host->msg_done(w->f->ctx, w->held[i].msg, -ETIMEDOUT, "shutdown");
	}
	free(w->held);
	free(w);
}

static const struct cad_module file_module = {
	.abi_major = CAD_ABI_MAJOR,
	.abi_minor = CAD_ABI_MINOR,
	.size = sizeof(struct cad_module),
	.kind = CAD_KIND_STREAM,
	.type = "file",
	.version = PACKAGE_VERSION,
	.summary = "append envelopes to a file as JSON lines",
	.options = file_options,
	.create = file_create,
	.start = file_start,
	.destroy = file_destroy,
	.describe = file_describe,
	.worker_open = file_worker_open,
	.publish = file_publish,
	.worker_idle = file_worker_idle,
	.worker_close = file_worker_close,
};

CAD_EXPORT const struct cad_module *cad_module_entry(void)
{
	return &file_module;
}
