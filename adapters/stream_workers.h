/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The threads that take messages off an adapter's queue and hand them to
 * its stream module. They belong to the adapter, which starts them with
 * stream_workers_start() and joins them with stream_workers_stop().
 */
#ifndef CAD_STREAM_WORKERS_H
#define CAD_STREAM_WORKERS_H

#include <stdint.h>

#include <choria-adapterd/cad_module.h>

struct adapter;
struct stream_workers;

/* Start `count` threads; each opens its module worker before reporting in.
 * Fails, with every thread joined, when any worker cannot open. */
CAD_MUSTCHECK int stream_workers_start(struct stream_workers **out, struct adapter *a,
				       unsigned count);

/* Give the threads their deadline (0: now) without waiting for them: they
 * publish what the queue holds until it is closed and empty or deadline_ns
 * passes, then close their module workers, which finish or give up their
 * in-flight publishes by the deadline. */
void stream_workers_set_deadline(struct stream_workers *w, int64_t deadline_ns);

/* Set the deadline if not set yet, close the queue, join the threads and
 * free `w`. */
void stream_workers_stop(struct stream_workers *w, int64_t deadline_ns);

#endif
