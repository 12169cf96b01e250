/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cad_module.h - the contract between choria-adapterd and its modules.
 *
 * This is the only core header a module includes, and the only way the core
 * knows a module. A module is a shared object named <kind>_<type>.so (for
 * example stream_jetstream.so) in the module folder. It exports exactly one
 * symbol, cad_module_entry(), which returns a static descriptor: the module's
 * kind, its type name, the options it accepts inside its config block, and
 * its callbacks.
 *
 * An adapter is one ingest instance and one stream instance joined by a
 * bounded queue:
 *
 *   ingest module --host->submit()--> queue --> stream workers --publish()-->
 *   stream module --host->msg_done()--> counted and freed
 *
 * Lifecycle, for both kinds:
 *   create()  once per adapter, on the main thread, with the parsed options.
 *             No network activity: `choria-adapterd -t` calls create() and
 *             destroy() to check a configuration.
 *   start()   connect (ingest: and subscribe). Must not fail because a server
 *             is unreachable: keep retrying in the background and say so.
 *   stop()    ingest only: stop accepting input; when it returns no further
 *             host->submit() call may happen.
 *   destroy() release everything; accepts an instance whose start() was never
 *             called or failed.
 *
 * Stream modules also receive work on threads the host owns: each of the
 * `workers` stream threads calls worker_open(), then publish() for every
 * message it takes off the queue (and worker_idle() when the queue has been
 * empty for a while), then worker_close() on shutdown.
 *
 * Building a module out of tree:
 *   cc -fPIC -shared -fvisibility=hidden $(pkg-config --cflags choria-adapterd) \
 *      -o stream_example.so example.c
 * and copy it into $(pkg-config --variable=moduledir choria-adapterd).
 * cad_module_entry() is declared below with default visibility, so hidden
 * visibility for everything else costs nothing.
 *
 * See choria-adapterd-module(3) for the full description.
 */
#ifndef CAD_MODULE_H
#define CAD_MODULE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * ABI version. The host loads a module whose abi_major equals CAD_ABI_MAJOR,
 * whose abi_minor is not greater than the host's, and whose descriptor
 * `size` is at least the host's sizeof(struct cad_module); it refuses any
 * other with a message naming both versions. A minor version gives meaning
 * to `reserved` slots, so the structs keep their size: a module built for
 * an older minor has those slots NULL, which the host reads as "not
 * provided". A new major may change anything. `choria-adapterd -V` prints
 * the version the daemon speaks.
 */
#define CAD_ABI_MAJOR 1
#define CAD_ABI_MINOR 3

#define CAD_EXPORT __attribute__((visibility("default")))
#define CAD_MUSTCHECK __attribute__((warn_unused_result))
#define CAD_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* What a module does inside an adapter. */
enum cad_kind {
	CAD_KIND_INGEST = 1, /* receives messages and submits them to the queue */
	CAD_KIND_STREAM = 2, /* takes messages off the queue and publishes them */
};

enum cad_log_level {
	CAD_LOG_DEBUG = 0,
	CAD_LOG_INFO = 1,
	CAD_LOG_WARN = 2,
	CAD_LOG_ERROR = 3,
};

/* ---------------------------------------------------------------------
 * Options a module accepts inside its `ingest { }` or `stream { }` block.
 *
 * The host owns `type` and `workers` (1 to CAD_WORKERS_MAX, or to the
 * module's max_workers) in every block; a module lists only its own options, in a table ending with an entry whose name is NULL. The
 * host rejects any option not in the table, checks types, `choices` and
 * ranges, and reports every error as `file:line: section: option: message`.
 * ------------------------------------------------------------------- */
enum cad_opt_type {
	CAD_OPT_STRING = 1,  /* "text" */
	CAD_OPT_STRING_LIST, /* {"a", "b"} */
	CAD_OPT_INT,         /* 42 */
	CAD_OPT_BOOL,        /* true | false */
};

#define CAD_WORKERS_MAX 1024 /* the most `workers` any block may ask for */
#define CAD_WORKERS_DEFAULT 10

#define CAD_OPT_REQUIRED 0x1u /* the block must set it */
#define CAD_OPT_SECRET 0x2u   /* never print the value (passwords, tokens) */
/* STRING without def_str: left out, it is the adapter's name (ABI 1.3). The
 * host fills it in, so that a reload sees it written out as no change. */
#define CAD_OPT_DEFAULT_ADAPTER_NAME 0x4u

struct cad_option {
	const char *name;
	enum cad_opt_type type;
	unsigned flags;              /* CAD_OPT_* bits */
	const char *def_str;         /* STRING default (NULL: unset) */
	const char *const *def_list; /* STRING_LIST default, NULL-terminated
	                                 (NULL: empty list) */
	long def_int;                /* INT default; BOOL default (0 or 1) */
	long min, max;               /* INT range, checked when min < max */
	const char *const *choices;  /* STRING: NULL-terminated allowed values */
	const char *help;            /* one line for operators */
};

/* Parsed values of one module block; read it through host->cfg_*(). */
struct cad_config;

/* ---------------------------------------------------------------------
 * The message an ingest module hands over and a stream module publishes.
 * Allocate with host->msg_new() (one allocation holds all the bytes) and
 * release with host->msg_free() or, in a stream module, host->msg_done().
 * Strings are NUL-terminated and also carry their length; `body` may
 * contain NUL bytes.
 * ------------------------------------------------------------------- */
struct cad_msg {
	const char *sender; /* the sending node's identity */
	size_t sender_len;
	const char *request_id; /* the request id it carried */
	size_t request_id_len;
	int64_t time;     /* the sender's timestamp, Unix seconds, UTC */
	const char *body; /* the payload exactly as received */
	size_t body_len;
	int64_t received_ns; /* CLOCK_MONOTONIC when received (set by msg_new) */
	void *module_data;   /* free for the owning stream module's use */
	uint32_t attempts;   /* publish attempts so far; the stream module's */
	uint32_t time_nsec;  /* nanoseconds past `time`, 0..999999999: 0 from
	                        msg_new(), set by an ingest whose senders keep
	                        finer time (ABI minor 3; it fills the padding,
	                        so the struct keeps its size) */
};

/* The adapter and role a module instance works for; opaque to modules. */
struct cad_context;

/* ---------------------------------------------------------------------
 * Services the host offers. Every function is thread-safe unless noted.
 * `ctx` is the context the instance received in create().
 * ------------------------------------------------------------------- */
struct cad_host {
	unsigned abi_major; /* CAD_ABI_MAJOR of the host */
	unsigned abi_minor; /* CAD_ABI_MINOR of the host */
	size_t size;        /* sizeof(struct cad_host) in the host */

	/* The daemon's `identity` when this instance's adapter was created;
	 * the host handed to create() is the instance's own, valid until
	 * destroy(), and no reload changes it. */
	const char *identity;

	/* Log one line, prefixed by the host with "adapter <name>: <type>: ". */
	void (*log)(struct cad_context *ctx, enum cad_log_level level, const char *fmt, ...)
		CAD_PRINTF(3, 4);
	/* Whether a line at `level` would be written: test before costly
	 * per-message debug formatting. */
	bool (*log_enabled)(enum cad_log_level level);

	/* Name of the adapter the context belongs to. */
	const char *(*adapter_name)(struct cad_context *ctx);

	/* Configuration access, valid during create() only (copy what you
	 * keep). cfg_str() returns NULL for an unset option without default. */
	const char *(*cfg_str)(const struct cad_config *cfg, const char *name);
	long (*cfg_int)(const struct cad_config *cfg, const char *name);
	bool (*cfg_bool)(const struct cad_config *cfg, const char *name);
	unsigned (*cfg_list_len)(const struct cad_config *cfg, const char *name);
	const char *(*cfg_list_str)(const struct cad_config *cfg, const char *name, unsigned i);
	/* Report a semantic error in the block (an unreadable file, options
	 * that conflict) as "file:line: adapter X: ingest: name: message".
	 * `name` may be NULL for the block itself. create() then returns
	 * -EINVAL; report every error found before returning. */
	void (*cfg_error)(const struct cad_config *cfg, const char *name, const char *fmt, ...)
		CAD_PRINTF(3, 4);

	/* A new message holding copies of the given bytes; NULL when out of
	 * memory. */
	struct cad_msg *(*msg_new)(const char *sender, size_t sender_len, const char *request_id,
				   size_t request_id_len, int64_t time, const char *body,
				   size_t body_len);
	void (*msg_free)(struct cad_msg *msg); /* accepts NULL */

	/* Ingest: hand a message to the adapter's queue. Ownership of *msg
	 * passes to the host whatever the result, and *msg is set to NULL.
	 * Returns 0 when queued, -ENOBUFS when the queue was full, or the
	 * adapter held max_bytes already, and the message was dropped
	 * (counted), -ESHUTDOWN when the adapter is
	 * stopping (counted). `wire_bytes` is the size of the message as it
	 * arrived. */
	int (*submit)(struct cad_context *ctx, struct cad_msg **msg, size_t wire_bytes);

	/* Ingest: count a received message that is rejected. `reason` is a
	 * short stable label (a string literal: "malformed", "bad_signature");
	 * the detail goes to the log, rate-limited. */
	void (*reject)(struct cad_context *ctx, const char *reason, size_t wire_bytes,
		       const char *fmt, ...) CAD_PRINTF(4, 5);

	/* Stream: report the end of a message's custody and free it. status 0:
	 * the stream acknowledged it; otherwise a negative errno and `reason`,
	 * a short stable label ("too_large", "shutdown"), counted as lost and
	 * logged. Call exactly once per message received in publish(). */
	void (*msg_done)(struct cad_context *ctx, struct cad_msg *msg, int status,
			 const char *reason);

	/* Stream: count one publish retry. */
	void (*count_retry)(struct cad_context *ctx);

	/* Report a connection's state, for logs, metrics and health. `name`
	 * identifies the connection within the instance ("ingest 1"). */
	void (*conn_state)(struct cad_context *ctx, const char *name, bool up);

	/* Since ABI 1.1 (check host->abi_minor before calling). 0 while the
	 * adapter runs; once it drains, the CLOCK_MONOTONIC time by which
	 * stream work must end. A publish() that waits for room checks it, so
	 * that a stream side that is away cannot hold the shutdown past
	 * drain_timeout. */
	int64_t (*drain_deadline)(struct cad_context *ctx);

	void *reserved[7];
};

/* ---------------------------------------------------------------------
 * The descriptor a module returns from cad_module_entry().
 * Instance callbacks are called from the main thread; stream worker
 * callbacks from that worker's own thread, one worker per thread.
 * Returns are 0 or a negative errno.
 * ------------------------------------------------------------------- */
struct cad_module {
	unsigned abi_major; /* CAD_ABI_MAJOR the module was built with */
	unsigned abi_minor; /* CAD_ABI_MINOR the module was built with */
	size_t size;        /* sizeof(struct cad_module) as built */
	enum cad_kind kind;
	const char *type;                 /* the `type` name: must match the file name */
	const char *version;              /* the module's own version, for logs */
	const char *summary;              /* one line: what it does */
	const struct cad_option *options; /* may be NULL: no options */

	/* Required, both kinds. */
	int (*create)(void **instance, const struct cad_host *host, struct cad_context *ctx,
		      const struct cad_config *cfg);
	int (*start)(void *instance);
	void (*destroy)(void *instance);

	/* Optional: one line for `choria-adapterd -t` (servers, subjects). */
	void (*describe)(void *instance, char *buf, size_t len);

	/* Ingest only, required: see the lifecycle above. */
	void (*stop)(void *instance);

	/* Stream only, required except worker_idle. */
	int (*worker_open)(void **worker, void *instance, unsigned index);
	/* Takes ownership of msg: the module must call host->msg_done() for
	 * it exactly once, now or later, from any thread. May block to limit
	 * the publishes in flight. */
	void (*publish)(void *worker, struct cad_msg *msg);
	/* Called about every 100 ms while no message arrives: retry what is
	 * due, reap acknowledgements. */
	void (*worker_idle)(void *worker);
	/* Finish in-flight publishes until `deadline_ns` (CLOCK_MONOTONIC),
	 * then report every message still held with msg_done(..., -ETIMEDOUT,
	 * "shutdown") and release the worker. */
	void (*worker_close)(void *worker, int64_t deadline_ns);

	/* Since ABI 1.2: the most `workers` this module accepts in a block,
	 * 1 to CAD_WORKERS_MAX; 0 (as a module built for 1.1 leaves it)
	 * means CAD_WORKERS_MAX. The host refuses a block that asks for
	 * more, naming the line and this limit, before create(). Takes the
	 * place of a reserved slot: the descriptor keeps its size. */
	unsigned max_workers;

	void *reserved[7];
};

/* The one symbol a module exports. The host calls it once, right after
 * loading the file, from the main thread; it returns a descriptor that
 * lives as long as the process (a static const object). Modules are never
 * unloaded. */
CAD_EXPORT const struct cad_module *cad_module_entry(void);
typedef const struct cad_module *(*cad_module_entry_fn)(void);
#define CAD_MODULE_ENTRY_SYMBOL "cad_module_entry"

#ifdef __cplusplus
}
#endif

#endif /* CAD_MODULE_H */
