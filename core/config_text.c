/* SPDX-License-Identifier: Apache-2.0 */
#include "config_text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void config_text_strip_comments(char *p)
{
	enum {
		CODE,
		DQUOTE,
		SQUOTE,
		LINE_COMMENT,
		BLOCK_COMMENT
	} state = CODE;
	for (; *p; p++) {
		switch (state) {
		case CODE:
			if (*p == '"') {
				state = DQUOTE;
			} else if (*p == '\'') {
				state = SQUOTE;
			} else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
				state = LINE_COMMENT;
				*p = ' ';
			} else if (p[0] == '/' && p[1] == '*') {
				state = BLOCK_COMMENT;
				p[0] = ' ';
				p[1] = ' ';
				p++;
			}
			break;
		case DQUOTE:
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '"')
				state = CODE;
			break;
		case SQUOTE:
			if (*p == '\\' && p[1] == '\'')
				p++;
			else if (*p == '\'')
				state = CODE;
			break;
		case LINE_COMMENT:
			if (*p == '\n')
				state = CODE;
			else
				*p = ' ';
			break;
		case BLOCK_COMMENT:
			if (p[0] == '*' && p[1] == '/') {
				p[0] = ' ';
				p[1] = ' ';
				p++;
				state = CODE;
			} else if (*p != '\n') {
				*p = ' ';
			}
			break;
		}
	}
}

int config_text_read(char **out, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	size_t cap = 8192, n = 0;
	char *buf = malloc(cap);
	int rc = 0;
	while (buf) {
		n += fread(buf + n, 1, cap - n - 1, f);
		if (ferror(f)) {
			rc = -EIO;
			break;
		}
		if (feof(f))
			break;
		if (cap > (64u << 20)) {
			rc = -EFBIG; /* no configuration is that large */
			break;
		}
		cap *= 2;
		char *grown = realloc(buf, cap);
		if (!grown)
			free(buf);
		buf = grown;
	}
	fclose(f);
	if (!buf)
		return -ENOMEM;
	if (rc != 0) {
		free(buf);
		return rc;
	}
	buf[n] = '\0';
	if (memchr(buf, '\0', n)) {
		free(buf);
		return -EINVAL; /* a binary file, not a configuration */
	}
	config_text_strip_comments(buf);
	*out = buf;
	return 0;
}
