/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where cad-bench's http mode sends the daemon: an HTTP server in the
 * bench's own process (libevent's evhttp on a loopback port, in a thread
 * of its own) that answers every request 204 and counts the envelopes it
 * received, one per line of a batch.
 */
#ifndef CAD_BENCH_HTTP_204_H
#define CAD_BENCH_HTTP_204_H

#include <stdint.h>

/* Start the server; its port, or -1 (said on stderr). */
int http_204_start(void);
void http_204_stop(void);
/* Envelopes received since the last reset. */
uint64_t http_204_count(void);
void http_204_reset(void);

#endif
