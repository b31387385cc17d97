/* test_abi.c - libspate's ABI (docs/embedding.md, "ABI and soname").
 *
 *  - the dynamic symbols libspate.so defines (nm -D --defined-only) are exactly the
 *    functions lib/libspate.map lists, each in version node SPATE_1.0, and nothing else
 *    (no internal sp_* function, no dependency's symbol);
 *  - every SPATE_API function of include/spate/spate.h is in the map, and the map lists
 *    nothing the header does not declare;
 *  - the soname is libspate.so.1;
 *  - `meson install --destdir` into a temporary tree, then a program compiled with
 *    `pkg-config --cflags --libs spate` from that tree builds, loads the installed
 *    library and runs a pipeline.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/common/util.h"

/* The most symbols the tests expect to see (the map has about 30). */
#define MAX_SYMS 256

typedef struct names {
	char *v[MAX_SYMS];
	size_t n;
} names_t;

static void names_add(names_t *s, const char *name, size_t len)
{
	cr_assert(s->n < MAX_SYMS, "more than %d symbols", MAX_SYMS);
	s->v[s->n++] = strndup(name, len);
}

static bool names_has(const names_t *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->v[i], name))
			return true;
	return false;
}

static void names_free(names_t *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	s->n = 0;
}

static const char *env_or(const char *name, const char *dflt)
{
	const char *s = getenv(name);
	return s && *s ? s : dflt;
}

static char *src_file(const char *rel)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", env_or("SPATE_SOURCE_DIR", "."), rel);
	char *t = t_read_file(p, NULL);
	cr_assert(t, "%s: %s", p, strerror(errno));
	return t;
}

/* The global names of lib/libspate.map, each checked to sit in node SPATE_1.0. */
static void map_names(names_t *out)
{
	char *t = src_file("lib/libspate.map");
	char *p = strstr(t, "*/"); /* past the opening comment */
	p = p ? p + 2 : t;
	char node[64] = "";
	bool global = false;
	for (char *line = strtok(p, "\n"); line; line = strtok(NULL, "\n")) {
		while (isspace((unsigned char)*line))
			line++;
		size_t len = strcspn(line, " \t;{");
		if (!len)
			continue;
		if (strchr(line, '{')) {
			snprintf(node, sizeof(node), "%.*s", (int)len, line);
			continue;
		}
		if (!strncmp(line, "global:", 7) || !strncmp(line, "local:", 6)) {
			global = line[0] == 'g';
			continue;
		}
		if (!global || line[0] == '}')
			continue;
		cr_assert_str_eq(node, "SPATE_1.0", "lib/libspate.map: %.*s is in node %s", (int)len, line,
		                 node);
		cr_assert(!strncmp(line, "spate_", 6), "lib/libspate.map exports %.*s, not a spate_* name",
		          (int)len, line);
		names_add(out, line, len);
	}
	free(t);
	cr_assert(out->n >= 20, "lib/libspate.map lists only %zu names", out->n);
}

/* The functions include/spate/spate.h declares with SPATE_API. */
static void header_names(names_t *out)
{
	char *t = src_file("include/spate/spate.h");
	for (char *p = t; (p = strstr(p, "SPATE_API ")); p += 10) {
		const char *bol = p;
		while (bol > t && bol[-1] != '\n')
			bol--;
		if (*bol == '#')
			continue; /* its #define */
		char *paren = strchr(p, '(');
		cr_assert(paren);
		char *e = paren;
		while (e > p && isspace((unsigned char)e[-1]))
			e--;
		char *b = e;
		while (b > p && (isalnum((unsigned char)b[-1]) || b[-1] == '_'))
			b--;
		cr_assert(e > b, "include/spate/spate.h: a SPATE_API declaration without a name: %.60s", p);
		names_add(out, b, (size_t)(e - b));
	}
	free(t);
	cr_assert(out->n >= 20, "include/spate/spate.h declares only %zu SPATE_API functions", out->n);
}

static const char *libspate(void)
{
	return env_or("SPATE_LIBSPATE", "build/libspate.so");
}

Test(abi, exported_symbols_are_the_map_in_spate_1_0)
{
	names_t map = {0}, got = {0};
	map_names(&map);
	const char *argv[] = {"nm", "-D", "--defined-only", "--with-symbol-versions", libspate(), NULL};
	char *out = NULL, *err = NULL;
	int rc = t_run((char *const *)argv, &out, &err);
	cr_assert(rc == 0, "nm -D %s: exit %d: %s", libspate(), rc, err);
	/* lines "ADDRESS TYPE NAME@@NODE"; the node itself is an absolute symbol "A SPATE_1.0" */
	size_t nodes = 0;
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		char type, name[256];
		cr_assert(sscanf(line, "%*s %c %255s", &type, name) == 2, "nm: \"%s\"", line);
		if (type == 'A') {
			cr_assert_str_eq(name, "SPATE_1.0", "libspate.so defines version node %s", name);
			nodes++;
			continue;
		}
		char *at = strstr(name, "@@");
		cr_assert(at, "libspate.so exports %s without a version", name);
		cr_assert_str_eq(at + 2, "SPATE_1.0", "libspate.so exports %s", name);
		*at = 0;
		cr_assert(type == 'T', "libspate.so exports %s of type %c, not a function", name, type);
		cr_expect(names_has(&map, name),
		          "libspate.so exports %s, which lib/libspate.map does not list", name);
		names_add(&got, name, strlen(name));
	}
	cr_assert_eq(nodes, 1, "version nodes: %zu", nodes);
	for (size_t i = 0; i < map.n; i++)
		cr_expect(names_has(&got, map.v[i]),
		          "lib/libspate.map lists %s, which libspate.so does not export", map.v[i]);
	cr_assert_eq(got.n, map.n);
	free(out);
	free(err);
	names_free(&map);
	names_free(&got);
}

Test(abi, the_header_and_the_map_name_the_same_functions)
{
	names_t map = {0}, hdr = {0};
	map_names(&map);
	header_names(&hdr);
	for (size_t i = 0; i < hdr.n; i++)
		cr_expect(
		    names_has(&map, hdr.v[i]),
		    "include/spate/spate.h declares SPATE_API %s, which lib/libspate.map does not export",
		    hdr.v[i]);
	for (size_t i = 0; i < map.n; i++)
		cr_expect(names_has(&hdr, map.v[i]),
		          "lib/libspate.map lists %s, which include/spate/spate.h does not declare",
		          map.v[i]);
	names_free(&map);
	names_free(&hdr);
}

Test(abi, soname_is_libspate_so_1)
{
	const char *argv[] = {"readelf", "-d", libspate(), NULL};
	char *out = NULL, *err = NULL;
	int rc = t_run((char *const *)argv, &out, &err);
	cr_assert(rc == 0, "readelf -d %s: exit %d: %s", libspate(), rc, err);
	cr_assert(strstr(out, "Library soname: [libspate.so.1]"), "%s", out);
	free(out);
	free(err);
}

/* Run a shell command line, return its status; stdout and stderr into *out. */
static int sh(const char *cmd, char **out)
{
	char *err = NULL;
	const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
	int rc = t_run((char *const *)argv, out, &err);
	if (rc != 0 && out) {
		size_t n = strlen(*out) + strlen(err) + 2;
		char *both = malloc(n);
		snprintf(both, n, "%s%s", *out, err);
		free(*out);
		*out = both;
	}
	free(err);
	return rc;
}

Test(abi, a_program_builds_against_the_installed_library_with_pkg_config, .timeout = 300)
{
	char dir[PATH_MAX], cmd[32768], *out = NULL;
	t_mkdtemp(dir, sizeof(dir));
	const char *build = env_or("SPATE_BUILD_DIR", "build");
	snprintf(cmd, sizeof(cmd), "meson install -C '%s' --no-rebuild --quiet --destdir '%s/root'", build,
	         dir);
	cr_assert(sh(cmd, &out) == 0, "%s: %s", cmd, out);
	free(out);
	/* the .pc file, wherever the libdir is (lib/x86_64-linux-gnu on Debian) */
	snprintf(cmd, sizeof(cmd), "find '%s/root' -name spate.pc -path '*/pkgconfig/*'", dir);
	cr_assert(sh(cmd, &out) == 0 && *out, "no installed spate.pc: %s", out);
	char pcdir[PATH_MAX];
	snprintf(pcdir, sizeof(pcdir), "%.*s", (int)strcspn(out, "\n"), out);
	*strrchr(pcdir, '/') = 0;
	free(out);
	/* The tree is a DESTDIR: the .pc names the configured prefix, and PKG_CONFIG_SYSROOT_DIR
	 * maps it into the tree (--define-prefix would guess the prefix from the .pc's place,
	 * which is wrong for a multiarch libdir). */
	char pc[3 * PATH_MAX];
	snprintf(pc, sizeof(pc), "PKG_CONFIG_PATH='%s' PKG_CONFIG_SYSROOT_DIR='%s/root' pkg-config", pcdir,
	         dir);
	snprintf(cmd, sizeof(cmd), "%s --cflags --libs spate", pc);
	cr_assert(sh(cmd, &out) == 0, "%s: %s", cmd, out);
	char flags[2048];
	snprintf(flags, sizeof(flags), "%.*s", (int)strcspn(out, "\n"), out);
	free(out);
	cr_assert(strstr(flags, "-lspate") && strstr(flags, dir), "pkg-config gives %s", flags);
	snprintf(cmd, sizeof(cmd), "%s --variable=libdir spate", pc);
	cr_assert(sh(cmd, &out) == 0, "%s: %s", cmd, out);
	char libdir[2 * PATH_MAX];
	snprintf(libdir, sizeof(libdir), "%.*s", (int)strcspn(out, "\n"), out);
	cr_assert(!strncmp(libdir, dir, strlen(dir)), "pkg-config's libdir %s is outside the tree %s", libdir,
	          dir);
	free(out);

	/* compile like a user: the header and library of the tree only (the build's sanitizer,
	 * if any, because the library needs its runtime) */
	const char *san = env_or("SPATE_SANITIZE", "none");
	char sanflag[128] = "";
	if (strcmp(san, "none"))
		snprintf(sanflag, sizeof(sanflag), "-fsanitize=%s", san);
	snprintf(cmd, sizeof(cmd),
	         "%s -std=c11 -Wall -Wextra -Werror %s -o '%s/installed' '%s/tests/abi/installed.c' %s",
	         env_or("SPATE_CC", "cc"), sanflag, dir, env_or("SPATE_SOURCE_DIR", "."), flags);
	cr_assert(sh(cmd, &out) == 0, "%s: %s", cmd, out);
	free(out);
	snprintf(cmd, sizeof(cmd), "LD_LIBRARY_PATH='%s' '%s/installed'", libdir, dir);
	cr_assert(sh(cmd, &out) == 0, "%s: %s", cmd, out);
	char want[3 * PATH_MAX];
	snprintf(want, sizeof(want), "library %s/libspate.so.1\n", libdir);
	cr_assert(strstr(out, want), "the program did not load the installed library (%s): %s", want, out);
	cr_assert(strstr(out, "version 0.1.0 matches\n"), "%s", out);
	cr_assert(strstr(out, "handled 10000\n"), "%s", out);
	free(out);
	t_rmrf(dir);
}
