/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The NATS connection options of every block (tls_ca, tls_cert, tls_key,
 * user, password, token) against a real nats-server that demands them:
 * mutual TLS with client certificates made at test time, users with
 * passwords, tokens. Messages must flow end to end into JetStream with the
 * right credentials. A server that refuses them when the daemon starts
 * makes it exit with status 3 and the server's reason in its log; one that
 * refuses a reconnect later is retried, logged, until it accepts again.
 * Unreadable or wrong files are configuration errors naming the option.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "certs.h"
#include "nats_jwt.h"
#include "pipeline.h"
#include "tmpdir.h"

static char dir[512];
static struct nats_server server;
static struct js_client client;
static struct daemon_proc daemon_a;

static void teardown(void)
{
	pipeline_teardown(dir, &server, &client, &daemon_a);
}

TestSuite(nats_auth, .fini = teardown, .timeout = 120);

/* A server with `conf`, a test client with `auth`, and the stream. */
static void start_server(const char *conf, const struct js_client_auth *auth)
{
	cr_assert_eq(tmpdir_make(dir, sizeof(dir)), 0);
	cr_assert_eq(nats_server_start(&server, dir, 0, conf), 0, "nats-server must start");
	cr_assert_eq(js_client_open_auth(&client, server.url, auth), 0, "the test client connects");
	cr_assert_eq(js_stream_create(&client, "NODES", "choria.node_metadata.>", 1), 0);
}

/* Mutual TLS: the server presents tls_server.pem and requires a client
 * certificate from the test CA. */
static void start_tls_server(void)
{
	char conf[2048];
	snprintf(conf, sizeof(conf),
		 "tls {\n"
		 "  cert_file: \"%s\"\n"
		 "  key_file: \"%s\"\n"
		 "  ca_file: \"%s\"\n"
		 "  verify: true\n"
		 "  timeout: 2\n"
		 "}\n",
		 test_pki_path("tls_server.pem"), test_pki_path("leaf.key"),
		 test_pki_path("ca.pem"));
	struct js_client_auth auth = {.tls_ca = test_pki_path("ca.pem"),
				      .tls_cert = test_pki_path("tls_client.pem"),
				      .tls_key = test_pki_path("leaf.key")};
	start_server(conf, &auth);
}

/* A server that lets in user "adapter" with password "s3cret pass". */
static void start_password_server(void)
{
	struct js_client_auth auth = {.user = "adapter", .password = "s3cret pass"};
	start_server("authorization {\n  users = [\n"
		     "    {user: \"adapter\", password: \"s3cret pass\"}\n  ]\n}\n",
		     &auth);
}

/* One adapter; `ingest_auth` and `stream_auth` go into the blocks. */
static char *conf_with(const char *ingest_auth, const char *stream_auth)
{
	char *c = NULL;
	cr_assert(asprintf(&c,
			   "adapter node_data {\n"
			   "  ingest {\n"
			   "    type = \"choria\"\n"
			   "    servers = {\"%s\"}\n"
			   "    topic = \"choria.discovery\"\n"
			   "    security = \"none\"\n"
			   "    workers = 2\n"
			   "    connections = 2\n"
			   "    %s\n"
			   "  }\n"
			   "  stream {\n"
			   "    type = \"jetstream\"\n"
			   "    servers = {\"%s\"}\n"
			   "    topic = \"choria.node_metadata.%%s\"\n"
			   "    workers = 2\n"
			   "    %s\n"
			   "  }\n"
			   "}\n",
			   server.url, ingest_auth, server.url, stream_auth) > 0);
	return c;
}

/* The daemon on that server, with that user and password on both sides. */
static void start_password_daemon(void)
{
	char *conf = conf_with("user = \"adapter\" password = \"s3cret pass\"",
			       "user = \"adapter\" password = \"s3cret pass\"");
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
}

static char *tls_options(const char *cert)
{
	char *o = NULL;
	cr_assert(asprintf(&o, "tls_ca = \"%s\" tls_cert = \"%s\" tls_key = \"%s\"",
			   test_pki_path("ca.pem"), test_pki_path(cert),
			   test_pki_path("leaf.key")) > 0);
	return o;
}

/* Publish n requests and expect them all in the stream, then stop. */
static void expect_flow(int n)
{
	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, n, 0x7e5);
	cr_assert(js_stream_wait_count(&client, "NODES", (uint64_t)n, 15000),
		  "%d messages reach JetStream", n);
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	struct adapter_counts c;
	cr_assert(pipeline_counts(&daemon_a, "node_data", &c));
	cr_assert_eq(c.received, (uint64_t)n);
	cr_assert_eq(c.published, (uint64_t)n);
	cr_assert_eq(js_stream_count(&client, "NODES"), (uint64_t)n);
}

Test(nats_auth, a_server_whose_certificate_the_ca_did_not_sign_is_refused_at_start)
{
	start_tls_server();
	/* The daemon's own certificate is good; it trusts only the other CA. */
	char *tls = NULL;
	cr_assert(asprintf(&tls, "tls_ca = \"%s\" tls_cert = \"%s\" tls_key = \"%s\"",
			   test_pki_path("ca2.pem"), test_pki_path("tls_client.pem"),
			   test_pki_path("leaf.key")) > 0);
	char *conf = conf_with(tls, tls);
	cr_assert_eq(daemon_start(&daemon_a, dir, conf), 0);
	free(conf);
	free(tls);
	cr_assert_eq(daemon_wait_exit(&daemon_a, 30000), 3, "the start fails");
	cr_assert_gt(daemon_log_count(&daemon_a, "certificate verify failed"), 0,
		     "the log says why");
	cr_assert_eq(daemon_log_count(&daemon_a, "running"), 0);
}

Test(nats_auth, mutual_tls_on_both_sides_carries_messages_into_jetstream)
{
	start_tls_server();
	char *tls = tls_options("tls_client.pem");
	char *conf = conf_with(tls, tls);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	free(tls);
	cr_assert(daemon_wait_log(&daemon_a, "ingest 2: connected", 5000));
	expect_flow(30);
	cr_assert_eq(daemon_log_count(&daemon_a, "SSL"), 0, "no TLS trouble on the way");
}

/* Start the daemon on conf; it must exit with status 3 at start-up, its
 * log naming the refusal of connection `conn` with `reason` and `hint`. */
static void expect_conn_refused_at_start(const char *conf, const char *conn, const char *reason,
					 const char *hint)
{
	cr_assert_eq(daemon_start(&daemon_a, dir, conf), 0);
	int st = daemon_wait_exit(&daemon_a, 30000);
	char *log = file_read(daemon_a.log);
	cr_assert_eq(st, 3, "a refused connection fails the start (status %d):\n%s", st, log);
	char want[128];
	snprintf(want, sizeof(want), "%s: cannot connect to %s: ", conn, server.url);
	const char *line = strstr(log, want);
	cr_assert_not_null(line, "the refusal is logged:\n%s", log);
	const char *eol = strchr(line, '\n');
	char *first = strndup(line, eol ? (size_t)(eol - line) : strlen(line));
	cr_assert_not_null(strstr(first, reason), "the reason '%s' is given: %s", reason, first);
	cr_assert_not_null(strstr(first, hint), "the options to check are named: %s", first);
	free(first);
	free(log);
}

static void expect_refused_at_start(const char *conf, const char *reason, const char *hint)
{
	expect_conn_refused_at_start(conf, "ingest 1", reason, hint);
}

Test(nats_auth, a_client_certificate_of_another_ca_is_refused_at_start)
{
	start_tls_server();
	char *good = tls_options("tls_client.pem"), *wrong = tls_options("tls_wrong.pem");
	char *conf = conf_with(wrong, good);
	expect_refused_at_start(conf, "TLS: ", "check tls_ca, tls_cert and tls_key");
	free(conf);
	free(good);
	free(wrong);
	char server_log[700];
	snprintf(server_log, sizeof(server_log), "%s/nats-server.log", dir);
	char *text = file_read(server_log);
	cr_assert_not_null(strstr(text, "TLS handshake error"), "the server refused it too");
	free(text);
	cr_assert_eq(js_stream_count(&client, "NODES"), 0);
}

Test(nats_auth, without_a_client_certificate_the_server_refuses_the_daemon)
{
	start_tls_server();
	char ca_only[800], *good = tls_options("tls_client.pem");
	snprintf(ca_only, sizeof(ca_only), "tls_ca = \"%s\"", test_pki_path("ca.pem"));
	char *conf = conf_with(ca_only, good);
	expect_refused_at_start(conf, "TLS: ", "check tls_ca, tls_cert and tls_key");
	free(conf);
	free(good);
}

/* Whether a line of the log holds both texts, within timeout_ms. */
static bool wait_line_with(struct daemon_proc *d, const char *a, const char *b, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 100) {
		char *log = file_read(d->log);
		bool found = false;
		for (char *line = log ? strtok(log, "\n") : NULL; line && !found;
		     line = strtok(NULL, "\n"))
			found = strstr(line, a) && strstr(line, b);
		free(log);
		if (found)
			return true;
		nats_Sleep(100);
	}
	return false;
}

Test(nats_auth, tls_refused_on_reconnect_is_retried_and_logged_until_it_is_accepted)
{
	start_tls_server();
	char *tls = tls_options("tls_client.pem");
	char *conf = conf_with(tls, tls);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	free(tls);
	cr_assert(daemon_wait_log(&daemon_a, "ingest 2: connected", 5000));

	/* The server comes back trusting only the other CA for its clients. */
	char good_conf[sizeof(server.conf)];
	memcpy(good_conf, server.conf, sizeof(good_conf));
	char *ca = strstr(server.conf, "ca.pem\"");
	cr_assert_not_null(ca);
	memmove(ca + 3, ca + 2, strlen(ca + 2) + 1);
	memcpy(ca, "ca2", 3);
	nats_server_stop(&server);
	cr_assert_eq(nats_server_restart(&server), 0);
	cr_assert(wait_line_with(&daemon_a, "ingest 1: cannot connect to", "TLS: ", 20000),
		  "refused reconnects are logged with the reason");

	/* Fixed on the server side: the daemon, still running, gets back. */
	nats_server_stop(&server);
	memcpy(server.conf, good_conf, sizeof(good_conf));
	cr_assert_eq(nats_server_restart(&server), 0);
	cr_assert(daemon_wait_log(&daemon_a, "ingest 1: reconnected", 20000) ||
			  daemon_log_count(&daemon_a, "ingest 1: connected") > 1,
		  "the daemon reconnects by itself");
	/* The test client reconnects as well: a flush answered says it has. */
	for (int i = 0; i < 200 && natsConnection_Status(client.nc) != NATS_CONN_STATUS_CONNECTED;
	     i++)
		nats_Sleep(100);
	cr_assert_eq(natsConnection_FlushTimeout(client.nc, 10000), NATS_OK,
		     "the test client is back");
	expect_flow(10);
}

Test(nats_auth, user_and_password_carry_messages_and_a_wrong_password_is_refused)
{
	start_password_server();
	start_password_daemon();
	expect_flow(20);
	cr_assert_eq(daemon_log_count(&daemon_a, "s3cret"), 0, "the password is never logged");

	char wdir[600];
	snprintf(wdir, sizeof(wdir), "%s/wrong", dir);
	cr_assert_eq(mkdir(wdir, 0755), 0);
	snprintf(dir + strlen(dir), sizeof(dir) - strlen(dir), "/wrong");
	char *conf = conf_with("user = \"adapter\" password = \"not it\"",
			       "user = \"adapter\" password = \"s3cret pass\"");
	expect_refused_at_start(conf, "Authorization Violation",
				"check user, password, token or credentials");
	free(conf);
	cr_assert_eq(daemon_log_count(&daemon_a, "not it"), 0, "nor the wrong one");
	*strrchr(dir, '/') = '\0';
}

Test(nats_auth, a_server_that_refuses_the_credentials_twice_on_reconnect_is_given_up_loudly)
{
	start_password_server();
	start_password_daemon();
	/* The server comes back with another password. */
	nats_server_stop(&server);
	char *pass = strstr(server.conf, "s3cret pass");
	cr_assert_not_null(pass);
	memcpy(pass, "changed!!!!", 11);
	cr_assert_eq(nats_server_restart(&server), 0);
	cr_assert(daemon_wait_log(&daemon_a, "the NATS client gave up the connection", 30000),
		  "the operator is told, as an error");
	cr_assert_gt(daemon_log_count(&daemon_a, "restart the daemon once this is fixed"), 0);
	cr_assert_eq(kill(daemon_a.pid, 0), 0, "the daemon keeps running");
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
}

Test(nats_auth, a_wrong_password_fails_a_natsstream_start_too)
{
	start_password_server();
	char *conf = NULL;
	cr_assert(
		asprintf(
			&conf,
			"adapter node_data {\n"
			"  ingest { type = \"choria\" servers = {\"%s\"} topic = \"choria.discovery\"\n"
			"           security = \"none\" user = \"adapter\" password = \"s3cret pass\" }\n"
			"  stream { type = \"natsstream\" servers = {\"%s\"} clusterid = \"test-cluster\"\n"
			"           topic = \"choria.node_metadata.%%s\"\n"
			"           user = \"adapter\" password = \"not it\" }\n"
			"}\n",
			server.url, server.url) > 0);
	expect_conn_refused_at_start(conf, "stream", "Authorization Violation",
				     "check user, password, token or credentials");
	free(conf);
	cr_assert_eq(daemon_log_count(&daemon_a, "not it"), 0, "the password is never logged");
}

/* The daemon with its ingest on the operator-mode `server`, signing in
 * with the .creds file `creds`, and its stream on `js`. */
static char *conf_creds(const char *creds, const struct nats_server *js)
{
	char *conf = NULL;
	cr_assert(
		asprintf(
			&conf,
			"adapter node_data {\n"
			"  ingest { type = \"choria\" servers = {\"%s\"} topic = \"choria.discovery\"\n"
			"           security = \"none\" credentials = \"%s\" }\n"
			"  stream { type = \"jetstream\" servers = {\"%s\"}\n"
			"           topic = \"choria.node_metadata.%%s\" }\n"
			"}\n",
			server.url, creds, js->url) > 0);
	return conf;
}

Test(nats_auth, a_creds_file_signs_the_ingest_into_an_operator_mode_server)
{
	/* The fleet's server trusts an operator; the ingest connects as a user
	 * of its account with a .creds file. JetStream is on its own server. */
	struct nats_jwt_trust trust, stranger;
	cr_assert_eq(nats_jwt_make(&trust, "adapter"), 0);
	cr_assert_eq(nats_jwt_make(&stranger, "adapter"), 0);
	cr_assert_eq(tmpdir_make(dir, sizeof(dir)), 0);
	char creds[600], wrong[600], js_dir[600];
	cr_assert_eq(tmpdir_write(dir, "adapter.creds", trust.user_creds, creds, sizeof(creds)), 0);
	cr_assert_eq(tmpdir_write(dir, "stranger.creds", stranger.user_creds, wrong, sizeof(wrong)),
		     0);
	cr_assert_eq(nats_server_start(&server, dir, 0, trust.server_conf), 0,
		     "nats-server starts in operator mode");
	nats_jwt_free(&trust);
	nats_jwt_free(&stranger);
	struct js_client nobody;
	cr_assert_neq(js_client_open(&nobody, server.url), 0, "nobody connects without creds");
	struct js_client_auth auth = {.creds = creds};
	int rc = -1;
	for (int i = 0; i < 20 && (rc = js_client_open_auth(&client, server.url, &auth)) != 0; i++)
		nats_Sleep(100);
	cr_assert_eq(rc, 0, "the test client connects with the creds file");
	snprintf(js_dir, sizeof(js_dir), "%s/js", dir);
	cr_assert_eq(mkdir(js_dir, 0755), 0);
	static struct nats_server js;
	struct js_client js_reader;
	cr_assert_eq(nats_server_start(&js, js_dir, 0, NULL), 0);
	cr_assert_eq(js_client_open(&js_reader, js.url), 0);
	cr_assert_eq(js_stream_create(&js_reader, "NODES", "choria.node_metadata.>", 1), 0);

	char *conf = conf_creds(creds, &js);
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	pipeline_publish(&client, "choria.discovery", CHORIA_MSG_REQUEST, 0, 10, 0x7e5);
	cr_assert(js_stream_wait_count(&js_reader, "NODES", 10, 15000),
		  "10 messages reach JetStream");
	cr_assert_eq(daemon_stop(&daemon_a, SIGTERM, 20000), 0);
	struct adapter_counts c;
	cr_assert(pipeline_counts(&daemon_a, "node_data", &c));
	cr_assert_eq(c.received, 10);
	cr_assert_eq(c.published, 10);

	/* A user of another operator's account is refused at start. */
	char wdir[600];
	snprintf(wdir, sizeof(wdir), "%s/wrong", dir);
	cr_assert_eq(mkdir(wdir, 0755), 0);
	snprintf(dir + strlen(dir), sizeof(dir) - strlen(dir), "/wrong");
	conf = conf_creds(wrong, &js);
	expect_refused_at_start(conf, "Authorization Violation",
				"check user, password, token or credentials");
	free(conf);
	*strrchr(dir, '/') = '\0';
	js_client_close(&js_reader);
	nats_server_stop(&js);
}

Test(nats_auth, a_token_carries_messages)
{
	struct js_client_auth auth = {.token = "t0ken-abc"};
	start_server("authorization {\n  token: \"t0ken-abc\"\n}\n", &auth);
	char *conf = conf_with("token = \"t0ken-abc\"", "token = \"t0ken-abc\"");
	pipeline_start_daemon(&daemon_a, dir, conf);
	free(conf);
	expect_flow(10);
	cr_assert_eq(daemon_log_count(&daemon_a, "t0ken"), 0, "the token is never logged");
}

/* `choria-adapterd -t` with `extra` in the ingest block (line 3); the
 * error must be reported at `line`: 3 for an option set there, 2 (the
 * block) for one missing. */
static char last_output[4096];

static void check_config_error(const char *extra, int line, const char *want)
{
	char moddir[600], path[700], text[2000];
	cr_assert_eq(tmpdir_make(dir, sizeof(dir)), 0);
	cr_assert_eq(daemon_modules_dir(moddir, sizeof(moddir), dir), 0);
	snprintf(text, sizeof(text),
		 "adapter a {\n"
		 "  ingest { type = \"choria\" topic = \"t\" security = \"none\"\n"
		 "    %s }\n"
		 "  stream { type = \"jetstream\" }\n"
		 "}\n",
		 extra);
	cr_assert_eq(tmpdir_write(dir, "check.conf", text, path, sizeof(path)), 0);
	char *out = NULL;
	cr_assert_eq(daemon_run_cmd(&out, dir, "-t", "-c", path, "-M", moddir, NULL), 1, "%s", out);
	char expect[1500];
	snprintf(expect, sizeof(expect), "%s:%d: adapter a: ingest: %s", path, line, want);
	cr_assert_not_null(strstr(out, expect), "expected '%s' in:\n%s", expect, out);
	snprintf(last_output, sizeof(last_output), "%s", out);
	free(out);
	tmpdir_remove(dir);
	dir[0] = '\0';
}

Test(nats_auth, unreadable_files_and_conflicting_credentials_are_configuration_errors)
{
	char extra[1500];
	check_config_error("tls_ca = \"/nonexistent/ca.pem\"", 3,
			   "tls_ca: cannot read /nonexistent/ca.pem: No such file or directory");
	snprintf(extra, sizeof(extra), "tls_cert = \"/nonexistent/c.pem\" tls_key = \"%s\"",
		 test_pki_path("leaf.key"));
	check_config_error(extra, 3, "tls_cert: cannot read /nonexistent/c.pem");
	snprintf(extra, sizeof(extra), "tls_cert = \"%s\" tls_key = \"/nonexistent/k.pem\"",
		 test_pki_path("tls_client.pem"));
	check_config_error(extra, 3, "tls_key: cannot read /nonexistent/k.pem");
	snprintf(extra, sizeof(extra), "tls_cert = \"%s\"", test_pki_path("tls_client.pem"));
	check_config_error(extra, 2, "tls_key: tls_cert and tls_key go together");
	/* Readable, but not what the option needs. */
	snprintf(extra, sizeof(extra), "tls_ca = \"%s\"", test_pki_path("leaf.key"));
	check_config_error(extra, 3, "tls_ca: ");
	cr_assert(strstr(last_output, "holds no PEM certificate"), "%s", last_output);
	snprintf(extra, sizeof(extra), "tls_cert = \"%s\" tls_key = \"%s\"",
		 test_pki_path("leaf.key"), test_pki_path("leaf.key"));
	check_config_error(extra, 3, "tls_cert: ");
	cr_assert(strstr(last_output, "does not start with a PEM certificate"), "%s", last_output);
	snprintf(extra, sizeof(extra), "tls_cert = \"%s\" tls_key = \"%s\"",
		 test_pki_path("tls_client.pem"), test_pki_path("ca.pem"));
	check_config_error(extra, 3, "tls_key: ");
	cr_assert(strstr(last_output, "is not an unencrypted PEM private key"), "%s", last_output);
	snprintf(extra, sizeof(extra), "tls_cert = \"%s\" tls_key = \"%s\"",
		 test_pki_path("ca.pem"), test_pki_path("leaf.key"));
	check_config_error(extra, 3, "tls_key: ");
	cr_assert(strstr(last_output, "is not the private key of the certificate"), "%s",
		  last_output);
	check_config_error("credentials = \"/nonexistent/a.creds\"", 3,
			   "credentials: cannot read /nonexistent/a.creds");
	check_config_error("password = \"x\"", 3, "password: a password needs a user");
	check_config_error("user = \"u\" token = \"t\"", 3,
			   "token: use only one of user, token and credentials");
}

int main(int argc, char **argv)
{
	return test_pki_main(argc, argv);
}
