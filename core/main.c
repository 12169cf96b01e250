/* SPDX-License-Identifier: Apache-2.0 */
/*
 * choria-adapterd: republish what a Choria fleet says on NATS into
 * JetStream. This file reads the command line and hands over to the
 * configuration loader and the daemon.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build_config.h"
#include "config.h"
#include "daemon.h"
#include "log.h"

#ifndef CAD_SYSCONFDIR
#define CAD_SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFIG CAD_SYSCONFDIR "/choria-adapterd/choria-adapterd.conf"

static void usage(FILE *to)
{
	fprintf(to,
		"usage: choria-adapterd [-t] [-c FILE] [-M MODULE_DIR]\n"
		"       choria-adapterd -V | -h\n"
		"  -c FILE        configuration file (default %s)\n"
		"  -M MODULE_DIR  load modules from MODULE_DIR instead of module_path\n"
		"  -t             check the configuration and the modules it names, then exit\n"
		"  -V             print the version and exit\n"
		"  -h             print this help and exit\n"
		"See choria-adapterd(8) and choria-adapterd.conf(5).\n",
		DEFAULT_CONFIG);
}

/*
 * glibc gives each thread that allocates its own arena, up to 8 per core;
 * each arena keeps freed memory for its threads. Most of the daemon's
 * allocations are freed on another thread than the one that made them
 * anyway, so two arenas per core cost no contention worth having and
 * about a megabyte less memory under load. The operator's own setting
 * (MALLOC_ARENA_MAX, or GLIBC_TUNABLES) wins.
 */
static void limit_malloc_arenas(void)
{
	const char *tunables = getenv("GLIBC_TUNABLES");
	if (getenv("MALLOC_ARENA_MAX") || (tunables && strstr(tunables, "arena_max")))
		return;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int arenas = cpus > 2 ? (int)(2 * cpus) : 4;
	mallopt(M_ARENA_MAX, arenas);
}

int main(int argc, char **argv)
{
	limit_malloc_arenas();
	const char *file = DEFAULT_CONFIG, *module_dir = NULL;
	int check = 0, opt;
	while ((opt = getopt(argc, argv, "c:M:tVh")) != -1) {
		switch (opt) {
		case 'c':
			file = optarg;
			break;
		case 'M':
			module_dir = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'V':
			printf("choria-adapterd %s (module ABI %d.%d)\n", PACKAGE_VERSION,
			       CAD_ABI_MAJOR, CAD_ABI_MINOR);
			return EXIT_OK;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "choria-adapterd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}

	struct config *conf = NULL;
	int rc = config_load(&conf, file, module_dir);
	if (rc != 0) {
		/* The loader has reported each error. */
		fprintf(stderr, "choria-adapterd: %s: configuration is not valid\n", file);
		return EXIT_CONFIG;
	}
	log_set_level((enum cad_log_level)log_level_parse(conf->log_level));

	int status;
	if (check) {
		status = daemon_check(conf);
		if (status != EXIT_OK)
			fprintf(stderr, "choria-adapterd: %s: configuration is not valid\n", file);
	} else {
		rc = log_open(conf->log_file);
		if (rc != 0) {
			log_error("cannot open the log file %s: %s", conf->log_file, strerror(-rc));
			status = EXIT_RUNTIME;
		} else {
			status = daemon_run(conf, module_dir);
			conf = NULL; /* the daemon freed it */
		}
	}
	config_free(conf);
	log_close();
	return status;
}
