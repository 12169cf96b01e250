/* SPDX-License-Identifier: Apache-2.0 */
/*
 * choria-adapterd-import: reads a Choria broker's broker.conf and writes
 * the equivalent choria-adapterd.conf on standard output. Exit status 0
 * when everything carried over, 1 with warnings, 2 when the input cannot
 * be read or is not a broker.conf, or the output cannot be written.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build_config.h"
#include "broker_conf.h"
#include "import.h"

static int import_main_usage(FILE *to, int status)
{
	fprintf(to, "usage: choria-adapterd-import [-V] BROKER_CONF\n"
		    "  writes the choria-adapterd configuration equivalent to the adapters of\n"
		    "  BROKER_CONF (- for standard input) on standard output\n");
	return status;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "-V") == 0) {
		printf("choria-adapterd-import %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "-h") == 0)
		return import_main_usage(stdout, 0);
	if (argc != 2 || (argv[1][0] == '-' && argv[1][1] != '\0'))
		return import_main_usage(stderr, 2);

	const char *path = argv[1];
	bool from_stdin = strcmp(path, "-") == 0;
	const char *source = from_stdin ? "standard input" : path;
	FILE *in = from_stdin ? stdin : fopen(path, "r");
	if (!in) {
		fprintf(stderr, "choria-adapterd-import: cannot read %s: %s\n", path,
			strerror(errno));
		return 2;
	}
	struct broker_conf conf;
	char err[256] = "";
	int rc = broker_conf_read(&conf, in, err, sizeof(err));
	if (!from_stdin)
		fclose(in);
	if (rc != 0) {
		fprintf(stderr, "choria-adapterd-import: %s: %s\n", source,
			rc == -ENOMEM ? strerror(ENOMEM) : err);
		return 2;
	}
	int warnings = import_write(&conf, source, stdout, stderr);
	broker_conf_free(&conf);
	if (warnings < 0) {
		fprintf(stderr, "choria-adapterd-import: %s\n", strerror(-warnings));
		return 2;
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "choria-adapterd-import: cannot write the configuration: %s\n",
			strerror(errno));
		return 2;
	}
	return warnings ? 1 : 0;
}
