/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Log lines go to one destination. Each line is formatted in full before a
 * single write, so lines from concurrent threads never interleave.
 *
 * Concurrency & locking: `lock` guards the destination (fd and path) against
 * a reopen on SIGHUP; the level is an atomic read on every call.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

enum dest_kind {
	DEST_STDERR,
	DEST_SYSLOG,
	DEST_FILE
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Atomic: a line is formatted for its destination before `lock` is taken. */
static _Atomic int dest = DEST_STDERR;
static int fd = STDERR_FILENO;
static char *path;
static _Atomic int level = CAD_LOG_INFO;

static const char *const names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *name)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	return -1;
}

const char *log_level_name(enum cad_log_level l)
{
	return (unsigned)l < 4 ? names[l] : "?";
}

void log_set_level(enum cad_log_level l)
{
	atomic_store(&level, (int)l);
}

bool log_enabled(enum cad_log_level l)
{
	return (int)l >= atomic_load_explicit(&level, memory_order_relaxed);
}

static int open_file(const char *p)
{
	int f = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	return f < 0 ? -errno : f;
}

int log_open(const char *d)
{
	if (strcmp(d, "stderr") == 0) {
		pthread_mutex_lock(&lock);
		log_close();
		dest = DEST_STDERR;
		fd = STDERR_FILENO;
		pthread_mutex_unlock(&lock);
		return 0;
	}
	if (strcmp(d, "syslog") == 0) {
		pthread_mutex_lock(&lock);
		log_close();
		openlog("choria-adapterd", LOG_PID, LOG_DAEMON);
		dest = DEST_SYSLOG;
		pthread_mutex_unlock(&lock);
		return 0;
	}
	int f = open_file(d);
	if (f < 0)
		return f;
	char *copy = strdup(d);
	if (!copy) {
		close(f);
		return -ENOMEM;
	}
	pthread_mutex_lock(&lock);
	log_close();
	dest = DEST_FILE;
	fd = f;
	path = copy;
	pthread_mutex_unlock(&lock);
	return 0;
}

int log_reopen(void)
{
	int rc = 0;
	pthread_mutex_lock(&lock);
	if (dest == DEST_FILE) {
		int f = open_file(path);
		if (f < 0) {
			rc = f;
		} else {
			close(fd);
			fd = f;
		}
	}
	pthread_mutex_unlock(&lock);
	return rc;
}

/* Called with `lock` held, or at exit. */
void log_close(void)
{
	if (dest == DEST_FILE) {
		close(fd);
		free(path);
		path = NULL;
	} else if (dest == DEST_SYSLOG) {
		closelog();
	}
	dest = DEST_STDERR;
	fd = STDERR_FILENO;
}

static const int syslog_prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};

void log_vmsg(enum cad_log_level l, const char *prefix, const char *fmt, va_list ap)
{
	if (!log_enabled(l))
		return;
	char line[2048];
	size_t n = 0;
	if (dest != DEST_SYSLOG) {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s ",
				      ts.tv_nsec / 1000000, names[l]);
	}
	if (prefix && n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s", prefix);
	if (n < sizeof(line))
		n += (size_t)vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';

	pthread_mutex_lock(&lock);
	if (dest == DEST_SYSLOG) {
		line[n - 1] = '\0';
		syslog(syslog_prio[l], "%s", line);
	} else {
		ssize_t w = write(fd, line, n);
		(void)w; /* nowhere left to report a failing log */
	}
	pthread_mutex_unlock(&lock);
}

void log_msg(enum cad_log_level l, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(l, NULL, fmt, ap);
	va_end(ap);
}
