/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The services the daemon offers its modules (struct cad_host), and the
 * message allocation they share.
 */
#ifndef CAD_HOST_H
#define CAD_HOST_H

#include <choria-adapterd/cad_module.h>

extern struct cad_host host_services;

struct cad_msg *host_msg_new(const char *sender, size_t sender_len, const char *request_id,
			     size_t request_id_len, int64_t time, const char *body,
			     size_t body_len);
void host_msg_free(struct cad_msg *msg);

struct adapter;
/* Free a message the adapter accepted, out of its byte budget. */
void host_msg_release(struct adapter *a, struct cad_msg *msg);

#endif
