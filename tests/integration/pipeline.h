/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the integration tests share: a nats-server, a stream, the daemon
 * with a generated configuration, Choria messages published like a fleet
 * publishes them, and the daemon's own accounting read from its log.
 */
#ifndef CAD_TEST_PIPELINE_H
#define CAD_TEST_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "choria_msg.h"
#include "daemon_proc.h"
#include "js_reader.h"
#include "nats_server.h"

struct adapter_counts {
	uint64_t received, published, in_flight, retries, rejected, dropped, lost;
};

/* The last counter line the daemon logged for `adapter`; false if none. */
bool pipeline_counts(struct daemon_proc *d, const char *adapter, struct adapter_counts *out);
/* Ask for the counters (SIGUSR1) every 50 ms, for up to timeout_ms, until
 * `adapter` has received n messages; the last ones read (asserts n). */
struct adapter_counts pipeline_counts_once_received(struct daemon_proc *d, const char *adapter,
						    uint64_t n, int timeout_ms);
/* The same, until `adapter` has also settled every one of them (none in
 * flight): published, rejected, dropped or lost, so that it publishes
 * nothing more of them (asserts both). */
struct adapter_counts pipeline_counts_once_settled(struct daemon_proc *d, const char *adapter,
						   uint64_t n, int timeout_ms);

/* Publish `n` valid messages of `kind` on `subject`, sender "node-<i>.example.net"
 * (i from `first`), request id derived from `seed` and i. */
void pipeline_publish(struct js_client *c, const char *subject, enum choria_msg_kind kind,
		      int first, int n, unsigned seed);
/* The same messages, built first, then published back to back with one
 * flush at the end: a burst the daemon cannot have taken in before it. */
void pipeline_publish_burst(struct js_client *c, const char *subject, enum choria_msg_kind kind,
			    int first, int n, unsigned seed);
/* One request from big.example.net with a body of about 6 KB. */
void pipeline_publish_big(struct js_client *c, const char *subject);
/* Build the message `s` describes and publish it on `subject` (asserts);
 * returns its length on the wire. */
size_t pipeline_publish_spec(struct js_client *c, const char *subject,
			     const struct choria_msg_spec *s);
/* The request id pipeline_publish() gives message i. */
void pipeline_request_id(char out[33], unsigned seed, int i);

/* A test's world: a fresh folder `dir` (`len` bytes), a nats-server with
 * JetStream in it, a client, and, when `stream` is set, that stream over
 * choria.node_metadata.> (asserts). */
void pipeline_setup(char *dir, size_t len, struct nats_server *s, struct js_client *c,
		    const char *stream);
/* Undo it: kill the daemon if it runs, close the client, stop the server,
 * remove the folder unless CAD_TEST_KEEP is set (to read the logs). */
void pipeline_teardown(const char *dir, struct nats_server *s, struct js_client *c,
		       struct daemon_proc *d);

/* One adapter, node_data: a choria ingest on server_url (`protocol`, `topic`,
 * two workers, and `extra` inside its block) into a jetstream stream on the
 * same server (choria.node_metadata.%s); `head` goes first. malloc'd. */
char *pipeline_choria_conf(const char *head, const char *server_url, const char *protocol,
			   const char *topic, const char *extra);

/* `choria-adapterd -t` on dir/check.conf, one adapter whose choria ingest
 * (topic t, `protocol`) holds `extra`: asserts it exits with `status` and
 * returns its output (malloc'd); the file's path goes to path. */
char *pipeline_check_conf(const char *dir, const char *protocol, const char *extra, int status,
			  char *path, size_t path_len);

/* Start the daemon on conf and wait until it runs (asserts). */
void pipeline_start_daemon(struct daemon_proc *d, const char *dir, const char *conf);
/* The same with LD_PRELOAD=preload in the daemon's environment. */
void pipeline_start_daemon_preloaded(struct daemon_proc *d, const char *dir, const char *conf,
				     const char *preload);

/* Read every message of `stream`; *distinct receives how many different
 * Nats-Msg-Id values they carry. Returns the number of messages read. */
uint64_t pipeline_stream_ids(struct js_client *c, const char *stream, uint64_t *distinct);

/* Fails the test with the daemon's log unless the balance holds:
 * received = published + rejected + dropped + lost + in flight. */
void pipeline_assert_balance(struct daemon_proc *d, const struct adapter_counts *n);
/* The counters once the daemon has exited on SIGTERM: asserts exit 0,
 * that it logged them, and their balance. */
struct adapter_counts pipeline_stop_and_count(struct daemon_proc *d, const char *adapter);

/* The count for `reason` in the last "rejected=N (reason=n, ...)" of the
 * adapter's counter line in the daemon's log; 0 when absent. */
uint64_t pipeline_rejected_for(struct daemon_proc *d, const char *adapter, const char *reason);

/* Ask for the counters until `lost` messages are counted lost. */
struct adapter_counts pipeline_wait_lost(struct daemon_proc *d, const char *adapter, uint64_t lost,
					 int timeout_ms);

/* Ask /healthz on 127.0.0.1:port until it answers `want`, with `reason`
 * in its body when given: true, or false after timeout_ms, with the last
 * answer's status and body in *status and body when they are not NULL. */
bool pipeline_health_within(int port, int want, const char *reason, int timeout_ms, int *status,
			    char *body, size_t body_len);
/* The same, failing the test after timeout_ms. */
void pipeline_wait_health(int port, int want, const char *reason, int timeout_ms);

/* The choria_adapter_connection_up sample of `connection` in /metrics on
 * 127.0.0.1:port: 1, 0, or -1 when there is none. */
int pipeline_connection_up(int port, const char *connection);

#endif
