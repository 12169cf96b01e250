/* SPDX-License-Identifier: Apache-2.0 */
#include "config_text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The text shrinks as it is cleaned: a comment becomes one blank, and a
 * run of blanks outside strings becomes one. The parser's scanner restarts
 * a token from its first byte every time it reads more input, so a long
 * run of blanks (a 4 MB comment line blanked in place) would cost it time
 * quadratic in the run's length. Newlines are all kept, so line numbers
 * stay exact; columns are never reported. */
void config_text_strip_comments(char *text)
{
	enum {
		CODE,
		DQUOTE,
		SQUOTE,
		LINE_COMMENT,
		BLOCK_COMMENT
	} state = CODE;
	char *w = text;
	int blank = 0; /* a separator is owed before the next code byte */
	for (const char *p = text; *p; p++) {
		switch (state) {
		case CODE:
			if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
				state = LINE_COMMENT;
				blank = 1;
				continue;
			}
			if (p[0] == '/' && p[1] == '*') {
				state = BLOCK_COMMENT;
				blank = 1;
				p++;
				continue;
			}
			if (*p == ' ' || *p == '\t') {
				blank = 1;
				continue;
			}
			if (*p == '"')
				state = DQUOTE;
			else if (*p == '\'')
				state = SQUOTE;
			if (blank && *p != '\n')
				*w++ = ' ';
			blank = 0;
			*w++ = *p;
			break;
		case DQUOTE:
			if (*p == '\\' && p[1])
				*w++ = *p++;
			else if (*p == '"')
				state = CODE;
			*w++ = *p;
			break;
		case SQUOTE:
			if (*p == '\\' && p[1] == '\'')
				*w++ = *p++;
			else if (*p == '\'')
				state = CODE;
			*w++ = *p;
			break;
		case LINE_COMMENT:
			if (*p == '\n') {
				state = CODE;
				blank = 0;
				*w++ = '\n';
			}
			break;
		case BLOCK_COMMENT:
			if (p[0] == '*' && p[1] == '/') {
				p++;
				state = CODE;
			} else if (*p == '\n') {
				blank = 0;
				*w++ = '\n';
			}
			break;
		}
	}
	*w = '\0';
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
