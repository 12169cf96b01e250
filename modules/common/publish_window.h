/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The window of a stream module that publishes asynchronously: the
 * messages it holds between publish() and their acknowledgement, parked
 * for a resend with backoff when an attempt fails, settled with the host
 * once answered or given up. The module keeps the messages in its own
 * entries (a table found by token, or places whose addresses the library
 * keeps); each entry embeds a struct publish_window_entry, and the window
 * walks them by stride when it looks for what is due.
 *
 * The per-message calls (add, remove, done, park) are direct and take no
 * lock of their own: the caller holds `lock`. Only the walks (resend what
 * is due, give up, help a closing window drain) call back into the module.
 *
 * Concurrency & locking: `lock` guards every field but `due_ns` and
 * `watch_ns` (written under it, read without it) and `settling` (atomic).
 * `room` is broadcast when the window falls to its low-water mark or
 * empties, and when an entry is parked. host->msg_done() is called
 * outside the lock.
 */
#ifndef CAD_PUBLISH_WINDOW_H
#define CAD_PUBLISH_WINDOW_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <choria-adapterd/cad_module.h>

/* Entries for a stream module's option table. */
#define PUBLISH_WINDOW_OPTIONS                                                                     \
	{.name = "max_inflight",                                                                   \
	 .type = CAD_OPT_INT,                                                                      \
	 .def_int = 256,                                                                           \
	 .min = 1,                                                                                 \
	 .max = 65536,                                                                             \
	 .help = "unacknowledged publishes per worker"},                                           \
		{.name = "ack_timeout",                                                            \
		 .type = CAD_OPT_INT,                                                              \
		 .def_int = 5,                                                                     \
		 .min = 1,                                                                         \
		 .max = 300,                                                                       \
		 .help = "seconds to wait for an acknowledgement before publishing again"},        \
	{                                                                                          \
		.name = "retry_max_interval", .type = CAD_OPT_INT, .def_int = 10, .min = 1,        \
		.max = 3600,                                                                       \
		.help = "longest pause, in seconds, between two attempts to publish or to connect" \
	}

struct publish_window_opts {
	long max_inflight;
	int64_t ack_timeout_ms;
	int64_t retry_max_ms;
};

/* Read PUBLISH_WINDOW_OPTIONS from a block (the host checked the ranges). */
void publish_window_opts_read(struct publish_window_opts *o, const struct cad_host *host,
			      const struct cad_config *cfg);

/* How many publishes of a full window of `size` are still unacknowledged
 * when its waiting publishers are woken: a quarter of it is free (one
 * place in a window under 4). Waking them at every acknowledgement costs a
 * context switch per message whenever the window is the limit. */
long publish_window_low_water(long size);

/* The delay before the first resend; each later one doubles it, up to
 * retry_max_ms. */
#define PUBLISH_WINDOW_RETRY_FIRST_MS 100
/* A parked entry's retry_at_ns that is due at once (0 means in flight). */
#define PUBLISH_WINDOW_NOW 1

/* The part of a module's entry the window reads. */
struct publish_window_entry {
	struct cad_msg *msg; /* NULL: a free place */
	int64_t retry_at_ns; /* 0: awaiting its answer; else parked until then */
	int64_t sent_ns;     /* last handed to the connection; set when the window times out */
};

/* The module entry that embeds `ptr`, its `member`. */
#define PUBLISH_WINDOW_OWNER(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* What the window's walks ask of the module; `owner` is what the caller
 * passed (a worker). */
struct publish_window_ops {
	/* Help the window along, without the lock: notice a lost connection,
	 * resend what is due. `in_time` is false once the drain deadline
	 * has passed. */
	void (*service)(void *owner, bool in_time);
	/* Send a parked entry whose time has come: called with the lock
	 * held, unparks it with publish_window_unpark_locked() and may
	 * release the lock meanwhile; returns with it held. False when it
	 * cannot be sent now (no connection): the walk stops. */
	bool (*resend_locked)(void *owner, struct publish_window_entry *e);
	/* Remove an entry and give its message back with `status`: called
	 * with the lock held, returns with it released. */
	void (*settle_unlock)(void *owner, struct publish_window_entry *e, int status,
			      const char *reason);
};

struct publish_window {
	const struct cad_host *host;
	struct cad_context *ctx;
	const struct publish_window_ops *ops;
	pthread_mutex_t lock;
	pthread_cond_t room;
	long size;      /* at most this many entries in use */
	long low_water; /* in use when waiting publishers are woken */
	int64_t retry_max_ms;
	int64_t ack_timeout_ns; /* 0: the library times publishes out itself */
	int64_t scan_every_ns;  /* how often unanswered publishes are looked for */
	/* The module's entries, walked by stride. */
	char *places;
	size_t stride;
	size_t n_places;
	size_t used;          /* entries holding a message */
	size_t waiting;       /* parked entries */
	int64_t next_scan_ns; /* when unanswered publishes are next looked for */
	/* No parked entry is due, and no scan, before this. */
	_Atomic int64_t due_ns;
	/* Messages out of the window whose msg_done() has not returned yet:
	 * until it has, the host has not counted them, and a closing worker
	 * that saw only an empty window would let the adapter log its counts,
	 * or go away, too soon. */
	_Atomic size_t settling;
	/* Whether the stream side answers at all (empty name: not watched).
	 * Publishes held and none answered for stall_after_ns make it
	 * stalled, reported as the connection `stall_name` going down; the
	 * next answer brings it up. */
	char stall_name[48];
	int64_t stall_after_ns;
	int64_t watch_every_ns;
	uint64_t answered;      /* messages settled, since the start */
	uint64_t answered_seen; /* ...at the last watch that saw a change */
	int64_t answered_ns;    /* that watch, or the last that saw none held */
	bool stalled;
	_Atomic int64_t watch_ns; /* the next watch is due then */
};

/* The lock and condition; the rest is set by publish_window_size(). */
void publish_window_init(struct publish_window *pw, const struct cad_host *host,
			 struct cad_context *ctx, const struct publish_window_ops *ops);
void publish_window_destroy(struct publish_window *pw);
/* At most `size` entries; `time_out`: the window itself sends again what
 * is not answered within ack_timeout. */
void publish_window_size(struct publish_window *pw, const struct publish_window_opts *o, long size,
			 bool time_out);
/* Watch the stream side for a stall (publishes held, none answered for
 * ack_timeout) and report it as the connection `name`, down while it
 * lasts. Before the workers start. */
void publish_window_report_stalls(struct publish_window *pw, const char *name);

/* Look for a stall or its end when due; cheap to call for every message.
 * publish_window_resend_due() calls it: a module calls it itself only
 * where it does not call that. */
void publish_window_check_stall(struct publish_window *pw);

/* The module's `n` entries, `stride` bytes apart, starting with `first`. */
void publish_window_places(struct publish_window *pw, struct publish_window_entry *first,
			   size_t stride, size_t n);

/* With the lock held: wait until the window has room for one more entry,
 * serving it meanwhile. Returns true, the lock held; false, the lock
 * released, when the adapter drains and its deadline has passed without
 * room (the message is not sent). */
bool publish_window_wait_room_locked(struct publish_window *pw, void *owner);

/* Put message m in a free entry e. Lock held. In flight: it is sent now,
 * its first attempt; else parked, due at once. */
void publish_window_add_locked(struct publish_window *pw, struct publish_window_entry *e,
			       struct cad_msg *m, bool in_flight);

/* Take an entry's message out of the window; the module frees the entry
 * next, then calls publish_window_done_unlock(). Lock held. */
struct cad_msg *publish_window_remove_locked(struct publish_window *pw,
					     struct publish_window_entry *e);

/* Give a removed message back to the host. Called with the lock held;
 * returns with it released. */
void publish_window_done_unlock(struct publish_window *pw, struct cad_msg *m, int status,
				const char *reason);

/* Park an entry in flight for a resend after its backoff. Lock held. */
void publish_window_park_locked(struct publish_window *pw, struct publish_window_entry *e);

/* Hand an entry to the connection (again): no longer parked. Lock held.
 * Returns whether this attempt is a retry. */
bool publish_window_unpark_locked(struct publish_window *pw, struct publish_window_entry *e);

/* Make every parked entry due at once (a connection came back). Lock held. */
void publish_window_due_now_locked(struct publish_window *pw);

/* Park every publish left unanswered for ack_timeout (when the window
 * times out), and send again every parked one whose time has come. Cheap
 * to call for every message: it does nothing before `due_ns`. Returns how
 * many publishes timed out. */
size_t publish_window_resend_due(struct publish_window *pw, void *owner);

/* Give every message still held back to the host as lost ("shutdown");
 * with `parked_only`, those the library still holds stay. Lock held. */
void publish_window_give_up_locked(struct publish_window *pw, void *owner, bool parked_only);

/* Serve the window until it is empty and every msg_done() has returned,
 * or deadline_ns has passed. */
void publish_window_drain(struct publish_window *pw, void *owner, int64_t deadline_ns);

/* Wait for every msg_done() in progress to return. Settled messages are
 * counted even past the deadline: msg_done() is quick, and the host's
 * counts must be whole when it logs them. */
void publish_window_wait_settled(struct publish_window *pw);

#endif
