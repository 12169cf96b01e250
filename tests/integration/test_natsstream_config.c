/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The natsstream module's configuration, through `choria-adapterd -t`:
 * what a good block looks like described, and the errors operators see.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_suite.h"
#include "daemon_proc.h"
#include "tmpdir.h"

TestSuite(natsstream_config, .init = conf_suite_setup, .fini = conf_suite_teardown, .timeout = 60);

static int check_conf(const char *stream_block, char **out, char *path, size_t len)
{
	return daemon_check_stream_block(out, conf_suite_dir, conf_suite_moddir, "natsstream",
					 stream_block, path, len);
}

Test(natsstream_config, a_good_block_is_described)
{
	char path[700], *out = NULL;
	int st = check_conf("    clusterid = \"prod\"\n    topic = \"nodes.%s\"\n    workers = 3\n",
			    &out, path, sizeof(path));
	cr_assert_eq(st, 0, "%s", out);
	cr_assert_not_null(strstr(out, "stream natsstream (3 workers"), "%s", out);
	cr_assert_not_null(strstr(out, "cluster prod, channel nodes.%s"), "%s", out);
	free(out);
}

Test(natsstream_config, clusterid_is_required)
{
	char path[700], *out = NULL;
	int st = check_conf("    topic = \"nodes.%s\"\n", &out, path, sizeof(path));
	cr_assert_eq(st, 1, "%s", out);
	char want[800];
	snprintf(want, sizeof(want),
		 "%s:4: adapter a: stream: clusterid: required option is missing", path);
	cr_assert_not_null(strstr(out, want), "expected '%s' in:\n%s", want, out);
	free(out);
}

Test(natsstream_config, bad_values_name_their_line_and_option)
{
	char path[700], *out = NULL;
	int st = check_conf("    clusterid = \"a b\"\n    topic = \"x.*\"\n", &out, path,
			    sizeof(path));
	cr_assert_eq(st, 1, "%s", out);
	cr_assert_not_null(
		strstr(out,
		       ":5: adapter a: stream: clusterid: 'a b' cannot stand in a NATS subject"),
		"%s", out);
	cr_assert_not_null(strstr(out, ":6: adapter a: stream: topic: 'x.*'"), "%s", out);
	free(out);
	st = check_conf("    clusterid = \"c\"\n    ping_max_out = 1\n", &out, path, sizeof(path));
	cr_assert_eq(st, 1, "%s", out);
	cr_assert_not_null(
		strstr(out, ":6: adapter a: stream: ping_max_out: 1 is out of range (2 to 1000)"),
		"%s", out);
	free(out);
}
