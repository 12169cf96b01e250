/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The http module's configuration, through `choria-adapterd -t`: a good
 * block described without its headers' values, and each error operators
 * can make, with its file, line, option and message.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_suite.h"
#include "daemon_proc.h"
#include "tmpdir.h"

TestSuite(http_config, .init = conf_suite_setup, .fini = conf_suite_teardown, .timeout = 60);

/* The stream block's own lines start at line 5 of the file. */
static int check_conf(const char *stream_block, char **out, char *path, size_t len)
{
	return daemon_check_stream_block(out, conf_suite_dir, conf_suite_moddir, "http",
					 stream_block, path, len);
}

/* The check fails with "<path>:<line>: adapter a: stream: <what>". */
static void expect_error(const char *block, int line, const char *what)
{
	daemon_expect_stream_error(conf_suite_dir, conf_suite_moddir, "http", block, line, what);
}

Test(http_config, a_good_block_is_described_without_its_secrets)
{
	char path[700], *out = NULL;
	int st = check_conf(
		"    url = \"https://user:pw@collector.example.net/choria/%s?token=t0k\"\n"
		"    workers = 2\n"
		"    headers = {\"Authorization: Bearer s3cr3t\", \"X-Fleet: eu\"}\n"
		"    batch_max = 100\n"
		"    batch_wait_ms = 250\n",
		&out, path, sizeof(path));
	cr_assert_eq(st, 0, "%s", out);
	cr_assert_not_null(
		strstr(out, "stream http (2 workers, POST "
			    "https://collector.example.net:443/choria/%s, 2 more headers, "
			    "batches of up to 100 within 250 ms, at most 16 requests in flight, "
			    "timeout 10 s)"),
		"%s", out);
	cr_assert_null(strstr(out, "s3cr3t"), "a header's value is never printed:\n%s", out);
	cr_assert_null(strstr(out, "t0k"), "nor the query:\n%s", out);
	cr_assert_null(strstr(out, "pw@"), "nor the user:\n%s", out);
	free(out);
}

Test(http_config, the_url_is_required)
{
	expect_error("    method = \"PUT\"\n", 4, "url: required option is missing");
}

Test(http_config, the_sender_stands_only_in_the_path_or_query)
{
	expect_error("    url = \"http://%s.example.net/x\"\n", 5,
		     "url: 'http://%s.example.net/x': %s stands only in the path or the query");
	expect_error("    url = \"http://example.net:%s/x\"\n", 5,
		     "url: 'http://example.net:%s/x': %s stands only in the path or the query");
	expect_error("    url = \"http://example.net/x#%s\"\n", 5,
		     "url: 'http://example.net/x#%s': %s stands only in the path or the query");
}

Test(http_config, a_url_libcurl_cannot_parse_is_refused)
{
	expect_error("    url = \"http://exa mple.net/x\"\n", 5,
		     "url: 'http://exa mple.net/x': libcurl cannot parse it: ");
	expect_error("    url = \"collector/x\"\n", 5,
		     "url: 'collector/x': libcurl cannot parse it: ");
	expect_error("    url = \"ftp://example.net/x\"\n", 5,
		     "url: 'ftp://example.net/x': the scheme is http or https");
}

Test(http_config, headers_need_a_colon_and_never_show_their_value)
{
	char path[700], *out = NULL;
	expect_error("    url = \"http://example.net/\"\n"
		     "    headers = {\"X-Ok: 1\", \"Authorization Bearer s3cr3t\"}\n",
		     6, "headers: entry 2 is not \"Name: value\"");
	int st = check_conf("    url = \"http://example.net/\"\n"
			    "    headers = {\"Authorization Bearer s3cr3t\"}\n",
			    &out, path, sizeof(path));
	cr_assert_eq(st, 1);
	cr_assert_null(strstr(out, "s3cr3t"), "%s", out);
	free(out);
	expect_error("    url = \"http://example.net/\"\n"
		     "    headers = {\"Idempotency-Key: mine\"}\n",
		     6, "headers: entry 1 sets Idempotency-Key, which the module writes itself");
}

Test(http_config, tls_files_are_checked)
{
	char bad[700], block[1500], want[1500];
	cr_assert_eq(tmpdir_write(conf_suite_dir, "bad-ca.pem", "not a certificate\n", bad,
				  sizeof(bad)),
		     0);
	snprintf(block, sizeof(block), "    url = \"https://example.net/\"\n    tls_ca = \"%s\"\n",
		 bad);
	char held[1500];
	snprintf(held, sizeof(held), "tls_ca: %s holds no PEM certificate", bad);
	expect_error(block, 6, held);
	snprintf(block, sizeof(block),
		 "    url = \"https://example.net/\"\n    tls_ca = \"%s/missing.pem\"\n",
		 conf_suite_dir);
	snprintf(want, sizeof(want),
		 "tls_ca: cannot read %s/missing.pem: No such file or directory", conf_suite_dir);
	expect_error(block, 6, want);
	snprintf(block, sizeof(block),
		 "    url = \"https://example.net/\"\n    tls_cert = \"%s/missing.pem\"\n"
		 "    tls_key = \"%s\"\n",
		 conf_suite_dir, bad);
	snprintf(want, sizeof(want),
		 "tls_cert: cannot read %s/missing.pem: No such file or directory", conf_suite_dir);
	expect_error(block, 6, want);
	snprintf(block, sizeof(block),
		 "    url = \"https://example.net/\"\n    tls_cert = \"%s\"\n", bad);
	expect_error(block, 4, "tls_key: tls_cert and tls_key go together");
}

Test(http_config, ranges_are_checked)
{
	expect_error("    url = \"http://example.net/\"\n    batch_max = 1001\n", 6, "batch_max:");
	expect_error("    url = \"http://example.net/\"\n    timeout = 0\n", 6, "timeout:");
	expect_error("    url = \"http://example.net/\"\n    method = \"GET\"\n", 6, "method:");
}
