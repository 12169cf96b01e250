/* SPDX-License-Identifier: Apache-2.0 */
#include "config_effective.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_opts.h"

/* Strings are quoted with escapes, so that no value can pass for another
 * option's text. */
static void effective_quoted(FILE *f, const char *s)
{
	if (!s) {
		fputs("(unset)", f);
		return;
	}
	fputc('"', f);
	for (const char *p = s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fputc('\\', f);
		if (*p == '\n')
			fputs("\\n", f);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static void effective_option(FILE *f, const struct cad_config *b, const struct cad_option *o)
{
	fprintf(f, "  %s = ", o->name);
	switch (o->type) {
	case CAD_OPT_STRING:
		effective_quoted(f, block_cfg_str(b, o->name));
		break;
	case CAD_OPT_STRING_LIST: {
		unsigned n = block_cfg_list_len(b, o->name);
		fputc('{', f);
		for (unsigned i = 0; i < n; i++) {
			fputs(i ? ", " : "", f);
			effective_quoted(f, block_cfg_list_str(b, o->name, i));
		}
		fputc('}', f);
		break;
	}
	case CAD_OPT_INT:
		fprintf(f, "%ld", block_cfg_int(b, o->name));
		break;
	case CAD_OPT_BOOL:
		fputs(block_cfg_bool(b, o->name) ? "true" : "false", f);
		break;
	}
	fputc('\n', f);
}

/* Only the options of the block's own module: the parser's table also
 * holds those of every other module loaded, which depend on what else the
 * file names. */
static void effective_block(FILE *f, const struct cad_config *b)
{
	fprintf(f, "%s {\n  type = ", module_kind_name(b->kind));
	effective_quoted(f, b->module->type);
	fprintf(f, "\n  workers = %ld\n", b->workers);
	for (const struct cad_option *o = b->module->desc->options; o && o->name; o++)
		effective_option(f, b, o);
	fputs("}\n", f);
}

int config_effective_text(char **out, const struct adapter_config *ac)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return -ENOMEM;
	fputs("adapter ", f);
	effective_quoted(f, ac->name);
	fprintf(f, "\nqueue_len = %ld\nqueue_wait_ms = %ld\nmax_bytes = %ld\n", ac->queue_len,
		ac->queue_wait_ms, ac->max_bytes);
	effective_block(f, &ac->ingest);
	effective_block(f, &ac->stream);
	if (ferror(f) | fclose(f)) {
		free(buf);
		return -ENOMEM;
	}
	*out = buf;
	return 0;
}

bool config_effective_same(const struct adapter_config *a, const struct adapter_config *b)
{
	char *ta = NULL, *tb = NULL;
	bool same = config_effective_text(&ta, a) == 0 && config_effective_text(&tb, b) == 0 &&
		    strcmp(ta, tb) == 0;
	free(ta);
	free(tb);
	return same;
}
