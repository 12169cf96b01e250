/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The configuration's text as the parser gets it: comments blanked out,
 * every newline kept. libconfuse counts a comment's line more than once,
 * so with comments in place its line numbers drift; without them they are
 * exact.
 */
#ifndef CAD_CONFIG_TEXT_H
#define CAD_CONFIG_TEXT_H

#include <stddef.h>

/* Read `path` into a malloc'd, NUL-terminated buffer with the comments
 * (#, // and C-style) outside quoted strings replaced by one blank each,
 * and runs of blanks outside quoted strings shrunk to one. Returns 0 or a
 * negative errno. */
int config_text_read(char **out, const char *path);

/* The same on a buffer, in place; the text can only get shorter. */
void config_text_strip_comments(char *text);

#endif
