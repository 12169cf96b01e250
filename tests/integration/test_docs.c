/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The manual pages against the code: mandoc finds nothing to warn about in
 * any page, and every option the daemon and each built module accept is
 * in choria-adapterd.conf(5) with its type, the list taken from the
 * parser's own tables and from each module's descriptor; and every example
 * configuration the page shows loads.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <choria-adapterd/cad_module.h>
#include "config.h"
#include "daemon_proc.h"
#include "tmpdir.h"

#ifndef MANDOC_BIN
#define MANDOC_BIN ""
#endif

TestSuite(docs, .timeout = 60);

/* Run a shell command, its output into a malloc'd string. */
static int run(char **out, const char *cmd)
{
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p, "cannot run %s", cmd);
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	cr_assert_not_null(buf);
	size_t n;
	while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
		len += n;
		if (cap - len < 2) {
			cap *= 2;
			buf = realloc(buf, cap);
			cr_assert_not_null(buf);
		}
	}
	buf[len] = '\0';
	*out = buf;
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

Test(docs, every_page_is_lint_clean)
{
	cr_assert(*MANDOC_BIN,
		  "mandoc was not found at configure time: install the Debian package mandoc");
	static const char *const pages[] = {"choria-adapterd.8", "choria-adapterd.conf.5",
					    "choria-adapterd-module.3", "choria-adapterd-import.8",
					    NULL};
	for (const char *const *p = pages; *p; p++) {
		char cmd[1024], *out = NULL;
		snprintf(cmd, sizeof(cmd), "'%s' -Tlint -W warning '%s/man/%s' 2>&1", MANDOC_BIN,
			 TOP_BUILDDIR, *p);
		int st = run(&out, cmd);
		cr_expect(st == 0 && *out == '\0', "%s is not lint clean (status %d):\n%s", *p, st,
			  out);
		free(out);
	}
}

/* ------------------------------------------------- option coverage */

struct coverage {
	char *page;
	char missing[8192];
	size_t used;
	int checked;
	char known[16384]; /* " name name ... " */
	size_t known_len;
	char built[1024]; /* " stream_jetstream ingest_choria ... ": the modules loaded */
};

static void note(struct coverage *c, const char *fmt, ...) CAD_PRINTF(2, 3);
static void note(struct coverage *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (c->used < sizeof(c->missing))
		c->used += (size_t)vsnprintf(c->missing + c->used, sizeof(c->missing) - c->used,
					     fmt, ap);
	va_end(ap);
}

/* The page must hold a line ".It Cm NAME No = Ar TYPE" (more may follow). */
static void expect_option(struct coverage *c, const char *where, const char *name, const char *type)
{
	char want[256];
	snprintf(want, sizeof(want), "\n.It Cm %s No = Ar %s", name, type);
	c->checked++;
	if (c->known_len < sizeof(c->known))
		c->known_len += (size_t)snprintf(c->known + c->known_len,
						 sizeof(c->known) - c->known_len, " %s ", name);
	for (const char *p = c->page; (p = strstr(p, want)); p += strlen(want)) {
		char next = p[strlen(want)];
		if (next == '\n' || next == ' ')
			return;
	}
	note(c, "  %s: %s (want a line \".It Cm %s No = Ar %s\")\n", where, name, name, type);
}

static void on_core_option(void *arg, const char *where, const char *name, const char *type)
{
	expect_option(arg, where, name, type);
}

static const char *opt_type_word(enum cad_opt_type t)
{
	switch (t) {
	case CAD_OPT_STRING:
		return "string";
	case CAD_OPT_STRING_LIST:
		return "list";
	case CAD_OPT_INT:
		return "integer";
	case CAD_OPT_BOOL:
		return "boolean";
	}
	return "?";
}

/* Every module built in this tree: modules/<kind>_<type>/.libs/<kind>_<type>.so */
static int check_modules(struct coverage *c)
{
	char dir[1024];
	snprintf(dir, sizeof(dir), "%s/modules", TOP_BUILDDIR);
	DIR *d = opendir(dir);
	cr_assert_not_null(d, "no module folder %s", dir);
	int modules = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "ingest_", 7) != 0 && strncmp(e->d_name, "stream_", 7) != 0)
			continue;
		char path[2048];
		snprintf(path, sizeof(path), "%s/%s/.libs/%s.so", dir, e->d_name, e->d_name);
		if (access(path, F_OK) != 0)
			continue; /* not built in this configuration (--without-kafka) */
		void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		cr_assert_not_null(h, "cannot load %s: %s", path, dlerror());
		cad_module_entry_fn entry;
		*(void **)&entry = dlsym(h, CAD_MODULE_ENTRY_SYMBOL);
		cr_assert_not_null(entry, "%s has no entry point", path);
		const struct cad_module *m = entry();
		const char *kind = m->kind == CAD_KIND_INGEST ? "ingest" : "stream";
		size_t used = strlen(c->built);
		snprintf(c->built + used, sizeof(c->built) - used, " %s_%s ", kind, m->type);

		char heading[256];
		snprintf(heading, sizeof(heading), "\n.Sh MODULE %s (%s)\n", m->type, kind);
		if (!strstr(c->page, heading))
			note(c, "  %s module %s: no section \".Sh MODULE %s (%s)\"\n", kind,
			     m->type, m->type, kind);
		char where[128];
		snprintf(where, sizeof(where), "%s module %s", kind, m->type);
		for (const struct cad_option *o = m->options; o && o->name; o++)
			expect_option(c, where, o->name, opt_type_word(o->type));
		modules++;
		/* Left loaded: the libraries modules pull in keep global state. */
	}
	closedir(d);
	return modules;
}

/* Whether `p` is in the section of a module this build left out (built
 * only where its library is found). */
static bool in_module_not_built(const struct coverage *c, const char *p)
{
	const char *sh = NULL;
	for (const char *q = c->page; (q = strstr(q, "\n.Sh ")) && q < p; q++)
		sh = q;
	char type[64], kind[16], key[96];
	if (!sh || sscanf(sh, "\n.Sh MODULE %63s (%15[a-z])", type, kind) != 2)
		return false;
	snprintf(key, sizeof(key), " %s_%s ", kind, type);
	return !strstr(c->built, key);
}

Test(docs, every_option_the_code_accepts_is_in_the_conf_page)
{
	struct coverage c = {0};
	char path[1024];
	snprintf(path, sizeof(path), "%s/man/choria-adapterd.conf.5.in", TOP_SRCDIR);
	c.page = file_read(path);
	cr_assert_not_null(c.page, "cannot read %s", path);

	cr_assert_eq(config_each_option(on_core_option, &c), 0);
	int core = c.checked;
	cr_assert_geq(core, 9, "the daemon's own options were listed (%d)", core);
	int modules = check_modules(&c);
	cr_assert_geq(modules, 3, "the bundled modules were found (%d)", modules);
	cr_assert_gt(c.checked, core + 10, "the modules' options were listed");
	cr_expect_eq(c.used, 0, "choria-adapterd.conf(5) lacks %s:\n%s",
		     c.used ? "these options" : "nothing", c.missing);

	/* And the page documents no option the code does not accept. */
	const char *tag = "\n.It Cm ";
	for (const char *p = c.page; (p = strstr(p, tag)); p++) {
		char name[128], key[132];
		const char *at = p + strlen(tag);
		if (sscanf(at, "%127[a-z0-9_]", name) != 1 ||
		    strncmp(at + strlen(name), " No = Ar ", 9) != 0 || in_module_not_built(&c, p))
			continue;
		snprintf(key, sizeof(key), " %s ", name);
		cr_expect_not_null(strstr(c.known, key),
				   "choria-adapterd.conf(5) documents '%s', which nothing accepts",
				   name);
	}
	free(c.page);
}

/* ------------------------------------------------ example configurations */

/* roff escapes used in literal displays: \e is a backslash, \& nothing. */
static void unescape_roff(char *s)
{
	char *w = s;
	for (const char *r = s; *r;) {
		if (r[0] == '\\' && r[1] == 'e') {
			*w++ = '\\';
			r += 2;
		} else if (r[0] == '\\' && r[1] == '&') {
			r += 2;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
}

static void expect_loads(const char *dir, const char *moddir, const char *name, const char *text)
{
	char path[1024];
	cr_assert_eq(tmpdir_write(dir, name, text, path, sizeof(path)), 0);
	struct config *conf = NULL;
	int rc = config_load(&conf, path, moddir);
	cr_expect_eq(rc, 0, "%s does not load (%d):\n%s", name, rc, text);
	config_free(conf);
}

Test(docs, the_example_configurations_load)
{
	char dir[512], moddir[600];
	cr_assert_eq(tmpdir_make(dir, sizeof(dir)), 0);
	cr_assert_eq(daemon_modules_dir(moddir, sizeof(moddir), dir), 0);

	char path[1024];
	snprintf(path, sizeof(path), "%s/man/choria-adapterd.conf.5.in", TOP_SRCDIR);
	char *page = file_read(path);
	cr_assert_not_null(page);
	const char *mark = "\n.\\\" example configuration\n.Bd -literal -offset indent\n";
	int n = 0;
	for (const char *p = page; (p = strstr(p, mark)); n++) {
		p += strlen(mark);
		const char *end = strstr(p, "\n.Ed\n");
		cr_assert_not_null(end);
		char *text = strndup(p, (size_t)(end - p) + 1);
		unescape_roff(text);
		char name[64];
		snprintf(name, sizeof(name), "example-%d.conf", n + 1);
		expect_loads(dir, moddir, name, text);
		free(text);
		p = end;
	}
	cr_expect_geq(n, 3, "the page marks its example configurations (%d found)", n);
	free(page);

	snprintf(path, sizeof(path), "%s/conf/choria-adapterd.conf", TOP_SRCDIR);
	char *shipped = file_read(path);
	cr_assert_not_null(shipped);
	expect_loads(dir, moddir, "shipped.conf", shipped);
	free(shipped);
	tmpdir_remove(dir);
}
