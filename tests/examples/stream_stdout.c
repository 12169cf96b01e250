/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stream_stdout.c - an example choria-adapterd stream module, built outside
 * the daemon's tree: it prints one line per message on the daemon's
 * standard output,
 *
 *   <prefix> <sender> <request id> <time> <body length> [<body start>]
 *
 * Build it and drop it into the module folder:
 *
 *   cc -fPIC -shared -fvisibility=hidden \
 *      $(pkg-config --cflags choria-adapterd) -o stream_stdout.so stream_stdout.c
 *   cp stream_stdout.so "$(pkg-config --variable=moduledir choria-adapterd)"
 *
 * then name it in an adapter:  stream { type = "stdout" prefix = "node" }
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <choria-adapterd/cad_module.h>

/* One per adapter that uses the module: what create() read. */
struct stdout_out {
	const struct cad_host *host;
	struct cad_context *ctx;
	char *prefix;
	long body_bytes;
};

/* Every worker of every adapter shares standard output. */
static pthread_mutex_t stdout_lock = PTHREAD_MUTEX_INITIALIZER;

/* The options of a `stream { type = "stdout" ... }` block. The host checks
 * types, ranges and unknown names, and fills in the defaults. */
static const struct cad_option stdout_options[] = {
	{.name = "prefix",
	 .type = CAD_OPT_STRING,
	 .def_str = "message",
	 .help = "the first word of every line"},
	{.name = "body_bytes",
	 .type = CAD_OPT_INT,
	 .def_int = 0,
	 .min = 0,
	 .max = 1024,
	 .help = "how much of the body to show"},
	{.name = NULL},
};

static void stdout_destroy(void *instance)
{
	struct stdout_out *o = instance;
	if (!o)
		return;
	free(o->prefix);
	free(o);
}

/* Main thread. Read the options (valid only now: copy what is kept) and
 * check what the host cannot. No output, no network: `choria-adapterd -t`
 * calls this too. */
static int stdout_create(void **instance, const struct cad_host *host, struct cad_context *ctx,
			 const struct cad_config *cfg)
{
	struct stdout_out *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->host = host;
	o->ctx = ctx;
	o->body_bytes = host->cfg_int(cfg, "body_bytes");
	o->prefix = strdup(host->cfg_str(cfg, "prefix"));
	if (!o->prefix) {
		stdout_destroy(o);
		return -ENOMEM;
	}
	if (!*o->prefix || strpbrk(o->prefix, " \t\n")) {
		/* Printed as "file:line: adapter X: stream: prefix: ..." */
		host->cfg_error(cfg, "prefix", "'%s' is not one word", o->prefix);
		stdout_destroy(o);
		return -EINVAL;
	}
	*instance = o;
	return 0;
}

static int stdout_start(void *instance)
{
	struct stdout_out *o = instance;
	o->host->log(o->ctx, CAD_LOG_INFO, "printing messages as '%s'", o->prefix);
	return 0;
}

/* For `choria-adapterd -t` and the start-up log. */
static void stdout_describe(void *instance, char *buf, size_t len)
{
	struct stdout_out *o = instance;
	snprintf(buf, len, "prefix %s, %ld body bytes", o->prefix, o->body_bytes);
}

/* Each worker thread calls this once; this module needs no state per
 * worker, so the worker is the instance. */
static int stdout_worker_open(void **worker, void *instance, unsigned index)
{
	(void)index;
	*worker = instance;
	return 0;
}

/* A worker thread, with a message it now owns. */
static void stdout_publish(void *worker, struct cad_msg *msg)
{
	struct stdout_out *o = worker;
	size_t show = msg->body_len < (size_t)o->body_bytes ? msg->body_len : (size_t)o->body_bytes;

	pthread_mutex_lock(&stdout_lock);
	int rc = printf("%s %s %s %lld %zu%s", o->prefix, msg->sender, msg->request_id,
			(long long)msg->time, msg->body_len, show ? " " : "");
	for (size_t i = 0; rc >= 0 && i < show; i++) {
		unsigned char c = (unsigned char)msg->body[i];
		rc = putchar(isprint(c) ? c : '.');
	}
	if (rc >= 0)
		rc = putchar('\n');
	if (rc >= 0)
		rc = fflush(stdout);
	pthread_mutex_unlock(&stdout_lock);

	/* Exactly once per message: published (0), or lost with a reason
	 * and a negative errno. A stream that can retry should hold the
	 * message and try again instead (host->count_retry()). */
	if (rc < 0)
		o->host->msg_done(o->ctx, msg, -EIO, "write_failed");
	else
		o->host->msg_done(o->ctx, msg, 0, NULL);
}

/* Nothing is held between publish() calls: nothing to finish. */
static void stdout_worker_close(void *worker, int64_t deadline_ns)
{
	(void)worker;
	(void)deadline_ns;
}

static const struct cad_module stdout_module = {
	.abi_major = CAD_ABI_MAJOR,
	.abi_minor = CAD_ABI_MINOR,
	.size = sizeof(struct cad_module),
	.kind = CAD_KIND_STREAM,
	.type = "stdout", /* so the file must be stream_stdout.so */
	.version = "1.0",
	.summary = "print one line per message on standard output",
	.options = stdout_options,
	.create = stdout_create,
	.start = stdout_start,
	.destroy = stdout_destroy,
	.describe = stdout_describe,
	.worker_open = stdout_worker_open,
	.publish = stdout_publish,
	.worker_close = stdout_worker_close,
};

const struct cad_module *cad_module_entry(void)
{
	return &stdout_module;
}
