/* SPDX-License-Identifier: Apache-2.0 */
#include "import.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IMPORT_ADAPTER_PREFIX "plugin.choria.adapter."
#define IMPORT_PUPPET_SSLDIR "/etc/puppetlabs/puppet/ssl"

struct import {
	struct broker_conf *c;
	const char *source;
	FILE *out, *warn;
	int warnings;
	bool nomem;
	/* From the security provider: NULL when unknown. */
	char *tls_ca, *tls_cert, *tls_key;
	/* The broker's own client address, and the middleware. */
	char **middleware;
	int n_middleware;
	char *broker_url;
};

static void import_warn(struct import *x, const struct broker_key *k, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void import_warn(struct import *x, const struct broker_key *k, const char *fmt, ...)
{
	va_list ap;
	if (k)
		fprintf(x->warn, "choria-adapterd-import: %s:%d: %s: ", x->source, k->line, k->key);
	else
		fprintf(x->warn, "choria-adapterd-import: %s: ", x->source);
	va_start(ap, fmt);
	vfprintf(x->warn, fmt, ap);
	va_end(ap);
	fputc('\n', x->warn);
	x->warnings++;
}

/* A setting that is not carried over: a comment in the output, at
 * `indent`, and a warning. */
static void import_drop(struct import *x, const char *indent, struct broker_key *k, const char *why)
{
	k->used = true;
	fprintf(x->out, "%s# not carried over (%s): %s = %s\n", indent, why, k->key, k->value);
	import_warn(x, k, "%s: not carried over", why);
}

static struct broker_key *import_get(struct import *x, const char *key)
{
	/* Earlier settings of the key are overridden: used as well. */
	for (size_t i = 0; i < x->c->n; i++)
		if (strcmp(x->c->keys[i].key, key) == 0)
			x->c->keys[i].used = true;
	return broker_conf_get(x->c, key);
}

/* `s` as a libconfuse string: quoted, '"' and '\\' escaped. */
static void import_quoted(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', out);
		fputc(*s, out);
	}
	fputc('"', out);
}

static void import_str(struct import *x, const char *indent, const char *name, const char *v)
{
	fprintf(x->out, "%s%-15s = ", indent, name);
	import_quoted(x->out, v);
	fputc('\n', x->out);
}

/* host:port as a NATS URL; a URL as it is. */
static void import_url(FILE *out, const char *s)
{
	if (strstr(s, "://")) {
		import_quoted(out, s);
		return;
	}
	char *url = NULL;
	if (asprintf(&url, "nats://%s", s) < 0) {
		import_quoted(out, s);
		return;
	}
	import_quoted(out, url);
	free(url);
}

static void import_urls(struct import *x, const char *indent, char **urls, int n)
{
	fprintf(x->out, "%s%-15s = {", indent, "servers");
	for (int i = 0; i < n; i++) {
		if (i)
			fputs(", ", x->out);
		import_url(x->out, urls[i]);
	}
	fputs("}\n", x->out);
}

static bool import_is_count(const char *v)
{
	if (!*v || strlen(v) > 9)
		return false;
	for (const char *p = v; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	return true;
}

static void import_int(struct import *x, const char *indent, const char *name, struct broker_key *k)
{
	if (!k)
		return;
	if (import_is_count(k->value))
		fprintf(x->out, "%s%-15s = %s\n", indent, name, k->value);
	else
		import_drop(x, indent, k, "not a whole number");
}

/* ------------------------------------------------ the broker's own settings */

static char *import_dup(struct import *x, const char *s)
{
	char *d = strdup(s);
	if (!d)
		x->nomem = true;
	return d;
}

static char *import_printf(struct import *x, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static char *import_printf(struct import *x, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0) {
		s = NULL;
		x->nomem = true;
	}
	va_end(ap);
	return s;
}

/* Where the security provider keeps the CA, certificate and key. */
static void import_security(struct import *x)
{
	struct broker_key *prov = import_get(x, "plugin.security.provider");
	const char *provider = prov ? prov->value : "puppet";
	struct broker_key *ssldir = import_get(x, "plugin.choria.ssldir");
	struct broker_key *ca = import_get(x, "plugin.security.file.ca");
	struct broker_key *cert = import_get(x, "plugin.security.file.certificate");
	struct broker_key *key = import_get(x, "plugin.security.file.key");

	if (strcmp(provider, "file") == 0) {
		if (ca)
			x->tls_ca = import_dup(x, ca->value);
		if (cert)
			x->tls_cert = import_dup(x, cert->value);
		if (key)
			x->tls_key = import_dup(x, key->value);
		if (!ca || !cert || !key)
			import_warn(
				x, prov,
				"the file provider needs plugin.security.file.ca, .certificate and .key; set tls_ca, tls_cert, tls_key and ca by hand");
		return;
	}
	if (strcmp(provider, "puppet") != 0) {
		import_warn(
			x, prov,
			"the %s provider's files are not known here; set tls_ca, tls_cert, tls_key and ca by hand",
			provider);
		return;
	}
	/* Puppet's layout under its ssldir, the certificate named after
	 * the identity (the host name when the broker sets none). */
	const char *dir = ssldir ? ssldir->value : IMPORT_PUPPET_SSLDIR;
	struct broker_key *id = broker_conf_get(x->c, "identity");
	char host[256] = "";
	if (!id && gethostname(host, sizeof(host) - 1) != 0)
		snprintf(host, sizeof(host), "localhost");
	const char *certname = id ? id->value : host;
	x->tls_ca = import_printf(x, "%s/certs/ca.pem", dir);
	x->tls_cert = import_printf(x, "%s/certs/%s.pem", dir, certname);
	x->tls_key = import_printf(x, "%s/private_keys/%s.pem", dir, certname);
}

/* The broker's client address (its own NATS server) and the middleware
 * that adapters without stream servers publish to. */
static void import_network(struct import *x)
{
	struct broker_key *port = import_get(x, "plugin.choria.network.client_port");
	struct broker_key *addr = import_get(x, "plugin.choria.network.listen_address");
	struct broker_key *mw = import_get(x, "plugin.choria.middleware_hosts");
	const char *p = "4222", *a = "127.0.0.1";

	if (port && import_is_count(port->value))
		p = port->value;
	else if (port)
		import_warn(x, port, "not a port number: 4222 is used");
	/* A wildcard address is reached on loopback from the same host. */
	if (addr && *addr->value && strcmp(addr->value, "::") != 0 &&
	    strcmp(addr->value, "0.0.0.0") != 0 && strcmp(addr->value, "[::]") != 0)
		a = addr->value;
	bool v6 = strchr(a, ':') && a[0] != '[';
	x->broker_url = import_printf(x, "nats://%s%s%s:%s", v6 ? "[" : "", a, v6 ? "]" : "", p);
	if (mw) {
		int n = broker_conf_list(mw->value, &x->middleware);
		if (n < 0)
			x->nomem = true;
		else
			x->n_middleware = n;
	}
}

static void import_globals(struct import *x)
{
	struct broker_key *id = import_get(x, "identity");
	struct broker_key *level = import_get(x, "loglevel");

	if (id && *id->value)
		import_str(x, "", "identity", id->value);
	if (level) {
		static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
		const char *v = NULL;
		for (const char *const *l = levels; *l; l++)
			if (strcmp(level->value, *l) == 0)
				v = *l;
		if (strcmp(level->value, "fatal") == 0)
			v = "error";
		if (v)
			import_str(x, "", "log_level", v);
		else
			import_drop(x, "", level, "not a log level");
	}
}

/* ----------------------------------------------------------- an adapter */

static struct broker_key *import_akey(struct import *x, const char *name, const char *sub)
{
	char key[512];
	snprintf(key, sizeof(key), IMPORT_ADAPTER_PREFIX "%s.%s", name, sub);
	return import_get(x, key);
}

static void import_tls(struct import *x, const char *indent)
{
	if (x->tls_ca)
		import_str(x, indent, "tls_ca", x->tls_ca);
	if (x->tls_cert)
		import_str(x, indent, "tls_cert", x->tls_cert);
	if (x->tls_key)
		import_str(x, indent, "tls_key", x->tls_key);
}

static void import_ingest(struct import *x, const char *name)
{
	const char *in = "        ";
	struct broker_key *topic = import_akey(x, name, "ingest.topic");
	struct broker_key *protocol = import_akey(x, name, "ingest.protocol");

	fprintf(x->out, "    ingest {\n");
	import_str(x, in, "type", "choria");
	import_urls(x, in, &x->broker_url, 1);
	if (topic)
		import_str(x, in, "topic", topic->value);
	else
		import_warn(x, NULL, "adapter %s: no ingest.topic: set topic in its ingest block",
			    name);
	if (protocol &&
	    (strcmp(protocol->value, "request") == 0 || strcmp(protocol->value, "reply") == 0))
		import_str(x, in, "protocol", protocol->value);
	else if (protocol)
		import_drop(x, in, protocol, "neither request nor reply");
	import_int(x, in, "workers", import_akey(x, name, "ingest.workers"));
	import_str(x, in, "security", "verify");
	if (x->tls_ca)
		import_str(x, in, "ca", x->tls_ca);
	import_tls(x, in);
	fprintf(x->out, "    }\n");
}

static void import_stream(struct import *x, const char *name, const char *type)
{
	const char *in = "        ";
	struct broker_key *servers = import_akey(x, name, "stream.servers");
	struct broker_key *topic = import_akey(x, name, "stream.topic");
	struct broker_key *cluster = import_akey(x, name, "stream.clusterid");
	bool stan = strcmp(type, "natsstream") == 0;

	fprintf(x->out, "    stream {\n");
	import_str(x, in, "type", type);
	char **urls = NULL;
	int n = servers ? broker_conf_list(servers->value, &urls) : 0;
	if (n < 0)
		x->nomem = true;
	if (n > 0)
		import_urls(x, in, urls, n);
	else if (x->n_middleware > 0)
		import_urls(x, in, x->middleware, x->n_middleware);
	else
		import_urls(x, in, &x->broker_url, 1);
	if (n > 0)
		broker_conf_list_free(urls, n);
	if (topic)
		import_str(x, in, "topic", topic->value);
	import_int(x, in, "workers", import_akey(x, name, "stream.workers"));
	if (stan && cluster)
		import_str(x, in, "clusterid", cluster->value);
	else if (stan)
		import_warn(x, NULL,
			    "adapter %s: no stream.clusterid: set clusterid in its stream block",
			    name);
	else if (cluster)
		import_drop(x, in, cluster, "only nats_stream adapters have a cluster");
	import_str(x, in, "output_protocol",
		   stan ? IMPORT_NATSSTREAM_PROTOCOL : IMPORT_CHORIA_STREAMS_PROTOCOL);
	import_tls(x, in);
	fprintf(x->out, "    }\n");
}

static void import_adapter(struct import *x, const char *name)
{
	struct broker_key *type = import_akey(x, name, "type");
	const char *stream = NULL;

	if (!type)
		stream = "jetstream";
	else if (strcmp(type->value, "jetstream") == 0 ||
		 strcmp(type->value, "choria_streams") == 0)
		stream = "jetstream";
	else if (strcmp(type->value, "nats_stream") == 0)
		stream = "natsstream";
	fprintf(x->out, "\nadapter %s {\n", name);
	if (!stream) {
		import_drop(x, "    ", type, "no stream module of this type");
		stream = "jetstream";
	} else if (!type) {
		import_warn(x, NULL, "adapter %s: no type: written as a jetstream adapter", name);
	}
	import_int(x, "    ", "queue_len", import_akey(x, name, "queue_len"));
	import_ingest(x, name);
	import_stream(x, name, stream);

	/* What else is said of this adapter. */
	size_t plen = strlen(IMPORT_ADAPTER_PREFIX), nlen = strlen(name);
	for (size_t i = 0; i < x->c->n; i++) {
		struct broker_key *k = &x->c->keys[i];
		if (!k->used && strncmp(k->key, IMPORT_ADAPTER_PREFIX, plen) == 0 &&
		    strncmp(k->key + plen, name, nlen) == 0 && k->key[plen + nlen] == '.')
			import_drop(x, "    ", k, "unknown adapter setting");
	}
	fprintf(x->out, "}\n");
}

/* An adapter name choria-adapterd takes as a block title. */
static bool import_name_valid(const char *s)
{
	if (!*s)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
			return false;
	return true;
}

int import_write(struct broker_conf *c, const char *source, FILE *out, FILE *warn)
{
	struct import x = {.c = c, .source = source, .out = out, .warn = warn};

	fprintf(out, "# choria-adapterd.conf(5) for the adapters of %s,\n", source);
	fprintf(out, "# written by choria-adapterd-import(8).\n");
	import_security(&x);
	import_network(&x);
	import_globals(&x);

	struct broker_key *list = import_get(&x, "plugin.choria.adapters");
	char **names = NULL;
	int n = list ? broker_conf_list(list->value, &names) : 0;
	if (n < 0)
		x.nomem = true;
	if (n <= 0)
		import_warn(&x, list, "no adapters to carry over");
	for (int i = 0; i < n; i++) {
		bool again = false;
		for (int j = 0; j < i; j++)
			again = again || strcmp(names[i], names[j]) == 0;
		if (again)
			import_warn(&x, list, "adapter %s is listed twice: written once", names[i]);
		else if (!import_name_valid(names[i]))
			import_warn(&x, list, "'%s' cannot name an adapter block: left out",
				    names[i]);
		else
			import_adapter(&x, names[i]);
	}
	if (n > 0)
		broker_conf_list_free(names, n);

	/* Settings of adapters the broker does not run. */
	bool heading = false;
	for (size_t i = 0; i < c->n; i++) {
		struct broker_key *k = &c->keys[i];
		if (k->used ||
		    strncmp(k->key, IMPORT_ADAPTER_PREFIX, strlen(IMPORT_ADAPTER_PREFIX)))
			continue;
		if (!heading)
			fputc('\n', out);
		heading = true;
		/* Its last setting stands for every earlier one. */
		struct broker_key *last = import_get(&x, k->key);
		import_drop(&x, "", last, "not an adapter in plugin.choria.adapters");
	}

	free(x.tls_ca);
	free(x.tls_cert);
	free(x.tls_key);
	free(x.broker_url);
	broker_conf_list_free(x.middleware, x.n_middleware);
	return x.nomem ? -ENOMEM : x.warnings;
}
