/* SPDX-License-Identifier: Apache-2.0 */
#include "broker_conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* `s` without the white space around it, in place. */
static char *broker_conf_trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* Choria's keys are dotted words: letters, digits, '_' and '-'. */
static bool broker_conf_key_valid(const char *k)
{
	if (!*k || *k == '.')
		return false;
	for (const char *p = k; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
			return false;
	return k[strlen(k) - 1] != '.';
}

static int broker_conf_add(struct broker_conf *c, const char *key, const char *value, int line)
{
	struct broker_key *keys = realloc(c->keys, (c->n + 1) * sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	c->keys = keys;
	struct broker_key *k = &keys[c->n];
	*k = (struct broker_key){.key = strdup(key), .value = strdup(value), .line = line};
	if (!k->key || !k->value) {
		free(k->key);
		free(k->value);
		return -ENOMEM;
	}
	c->n++;
	return 0;
}

int broker_conf_read(struct broker_conf *c, FILE *in, char *err, size_t err_len)
{
	char *buf = NULL;
	size_t cap = 0;
	ssize_t got;
	int line = 0, rc = 0;

	*c = (struct broker_conf){0};
	while ((got = getline(&buf, &cap, in)) >= 0) {
		line++;
		if (memchr(buf, '\0', (size_t)got)) {
			snprintf(err, err_len, "line %d: a NUL byte: not a text file", line);
			rc = -EINVAL;
			break;
		}
		char *s = broker_conf_trim(buf);
		if (!*s || *s == '#' || *s == ';')
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			snprintf(err, err_len, "line %d: not a `key = value` line", line);
			rc = -EINVAL;
			break;
		}
		*eq = '\0';
		char *key = broker_conf_trim(s), *value = broker_conf_trim(eq + 1);
		if (!broker_conf_key_valid(key)) {
			snprintf(err, err_len, "line %d: '%.64s' is not a configuration key", line,
				 key);
			rc = -EINVAL;
			break;
		}
		if ((rc = broker_conf_add(c, key, value, line)) != 0)
			break;
	}
	if (rc == 0 && ferror(in)) {
		snprintf(err, err_len, "%s", strerror(errno));
		rc = -EIO;
	}
	free(buf);
	if (rc != 0)
		broker_conf_free(c);
	return rc;
}

void broker_conf_free(struct broker_conf *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->keys[i].key);
		free(c->keys[i].value);
	}
	free(c->keys);
	*c = (struct broker_conf){0};
}

struct broker_key *broker_conf_get(const struct broker_conf *c, const char *key)
{
	for (size_t i = c->n; i-- > 0;)
		if (strcmp(c->keys[i].key, key) == 0)
			return &c->keys[i];
	return NULL;
}

int broker_conf_list(const char *value, char ***items)
{
	char *copy = strdup(value), *save = NULL;
	char **out = NULL;
	int n = 0;
	if (!copy)
		return -ENOMEM;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		t = broker_conf_trim(t);
		if (!*t)
			continue;
		char **grown = realloc(out, (size_t)(n + 1) * sizeof(*out));
		if (!grown || !(grown[n] = strdup(t))) {
			out = grown ? grown : out;
			broker_conf_list_free(out, n);
			free(copy);
			return -ENOMEM;
		}
		out = grown;
		n++;
	}
	free(copy);
	*items = out;
	return n;
}

void broker_conf_list_free(char **items, int n)
{
	for (int i = 0; i < n; i++)
		free(items[i]);
	free(items);
}
