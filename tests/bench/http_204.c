/* SPDX-License-Identifier: Apache-2.0 */
#include "http_204.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* The bench is one process with one server. */
static struct event_base *http_204_base;
static struct evhttp *http_204_http;
static pthread_t http_204_thread;
static _Atomic uint64_t http_204_envelopes;

static void http_204_on_request(struct evhttp_request *req, void *arg)
{
	(void)arg;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	uint64_t n = 0;
	struct evbuffer_ptr p;
	evbuffer_ptr_set(in, &p, 0, EVBUFFER_PTR_SET);
	while ((p = evbuffer_search(in, "\n", 1, &p)).pos >= 0) {
		n++;
		evbuffer_ptr_set(in, &p, 1, EVBUFFER_PTR_ADD);
	}
	if (n == 0 && len > 0)
		n = 1; /* one envelope, no newline */
	atomic_fetch_add(&http_204_envelopes, n);
	evhttp_send_reply(req, 204, "No Content", NULL);
}

static void *http_204_loop(void *arg)
{
	(void)arg;
	event_base_loop(http_204_base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

int http_204_start(void)
{
	evthread_use_pthreads();
	http_204_base = event_base_new();
	http_204_http = http_204_base ? evhttp_new(http_204_base) : NULL;
	struct evhttp_bound_socket *b =
		http_204_http ? evhttp_bind_socket_with_handle(http_204_http, "127.0.0.1", 0)
			      : NULL;
	if (!b) {
		fprintf(stderr, "cad-bench: cannot start the HTTP server\n");
		return -1;
	}
	evhttp_set_allowed_methods(http_204_http, EVHTTP_REQ_POST | EVHTTP_REQ_PUT);
	evhttp_set_gencb(http_204_http, http_204_on_request, NULL);
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	getsockname(evhttp_bound_socket_get_fd(b), (struct sockaddr *)&sa, &sl);
	if (pthread_create(&http_204_thread, NULL, http_204_loop, NULL) != 0)
		return -1;
	return ntohs(sa.sin_port);
}

void http_204_stop(void)
{
	event_base_loopbreak(http_204_base);
	pthread_join(http_204_thread, NULL);
	evhttp_free(http_204_http);
	event_base_free(http_204_base);
}

uint64_t http_204_count(void)
{
	return atomic_load(&http_204_envelopes);
}

void http_204_reset(void)
{
	atomic_store(&http_204_envelopes, 0);
}
