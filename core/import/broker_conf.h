/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A Choria broker configuration (broker.conf) as its lines say it: flat
 * `key = value` pairs, blank lines and comments (# or ;) skipped. A key
 * set twice keeps its last value, as Choria reads it.
 */
#ifndef CAD_IMPORT_BROKER_CONF_H
#define CAD_IMPORT_BROKER_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct broker_key {
	char *key;
	char *value;
	int line;
	bool used; /* carried over, or reported as not carried */
};

struct broker_conf {
	struct broker_key *keys;
	size_t n;
};

/* Read `in`. Returns 0; -EINVAL for a line that is neither a comment nor
 * `key = value` (err then says which line and why); -ENOMEM; or -EIO for
 * a read error. */
int broker_conf_read(struct broker_conf *c, FILE *in, char *err, size_t err_len);
void broker_conf_free(struct broker_conf *c);

/* The last setting of `key`, or NULL. */
struct broker_key *broker_conf_get(const struct broker_conf *c, const char *key);

/* The items of a comma-separated list, white space around each trimmed,
 * empty ones dropped: malloc'd strings in *items (free with
 * broker_conf_list_free). Returns the count, or -ENOMEM. */
int broker_conf_list(const char *value, char ***items);
void broker_conf_list_free(char **items, int n);

#endif
