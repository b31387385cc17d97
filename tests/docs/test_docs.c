/* test_docs.c - the commands README.md and docs/ show do what the docs say.
 *
 * A fenced block whose info string is `sh doc-test` is a terminal transcript: a line
 * starting with "$ " is a command (a line ending in '\' continues it), and the lines up
 * to the next command are what it prints, stdout and stderr together as a terminal
 * shows them. Every such block of a file runs in order, in one fresh directory per file,
 * through /bin/sh with the built `spate` (SPATE_CLI) first on PATH. The directory holds
 * links to the repository's benchmarks/, examples/ and scripts/ and to the build
 * directory as build/, so a command reads as it is typed in the repository's root
 * (`benchmarks/gen_noop.sh build/cli/spate 1 100000`). Matching:
 *  - a line `...` stands for any number of lines (none included);
 *  - `...` inside a line stands for any text;
 *  - otherwise lines match exactly (trailing blanks aside), all of them, in order.
 * A comment at the end of a command says more: `# exit N` (the exit status is N, else
 * it must be 0), `# numbers vary` (a number in the shown output matches any number, so
 * a stats line is checked for its fields and their order). Both may be given, joined
 * by ", ". One line of output depends on the machine, not on the docs, and is ignored:
 * the log reader's notice that io_uring is unavailable or disabled.
 *
 * A block whose info string is `c doc-compile` must compile against include/ (the
 * public header) with -Wall -Werror.
 *
 * Other checks: every doc that shows `spate` commands has at least one doc-test block
 * (EXEMPT lists the few that do not, and why); every verb of `spate --help` and each of
 * its sub-verbs answers --help; relative links and the source paths the docs name
 * exist; README's documentation list names every page of docs/ once.
 * Failures name the doc file and line.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/common/util.h"

/* How long one documented command may run (the slowest processes 2,000,000 records). */
#define DOC_CMD_TIMEOUT_MS 120000
/* The most doc files the tests read. */
#define DOC_MAX_FILES 64

/* Docs that show `spate` commands without a doc-test block, and why. */
static const struct {
	const char *file, *why;
} EXEMPT[] = {
    {"docs/log.md", "being rewritten in another change; its examples get marked there"},
};

/* ---- small helpers ------------------------------------------------------------------ */

typedef struct lines {
	char **v;
	size_t n, cap;
} lines_t;

static void lines_push(lines_t *l, const char *s, size_t len)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		cr_assert(l->v);
	}
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r'))
		len--;
	l->v[l->n++] = strndup(s, len);
}

static void lines_free(lines_t *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	*l = (lines_t){0};
}

/* Split text into lines (a final newline ends the last line, it does not start one). */
static void lines_split(lines_t *l, const char *text)
{
	const char *s = text;
	while (*s) {
		const char *nl = strchr(s, '\n');
		size_t len = nl ? (size_t)(nl - s) : strlen(s);
		lines_push(l, s, len);
		s += len + (nl ? 1 : 0);
	}
}

static const char *src_dir(void)
{
	const char *s = getenv("SPATE_SOURCE_DIR");
	return s && *s ? s : ".";
}

static const char *build_dir(void)
{
	const char *s = getenv("SPATE_BUILD_DIR");
	return s && *s ? s : "build";
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* The docs: README.md, then the .md files of docs/, sorted. Paths relative to the source dir. */
static size_t doc_files(char *out[DOC_MAX_FILES])
{
	size_t n = 0;
	out[n++] = strdup("README.md");
	char d[4096];
	snprintf(d, sizeof(d), "%s/docs", src_dir());
	struct dirent **ents;
	int k = scandir(d, &ents, NULL, alphasort);
	cr_assert(k >= 0, "%s: %s", d, strerror(errno));
	for (int i = 0; i < k; i++) {
		size_t len = strlen(ents[i]->d_name);
		if (len > 3 && !strcmp(ents[i]->d_name + len - 3, ".md") && n < DOC_MAX_FILES) {
			char p[512];
			snprintf(p, sizeof(p), "docs/%s", ents[i]->d_name);
			out[n++] = strdup(p);
		}
		free(ents[i]);
	}
	free(ents);
	return n;
}

static void doc_files_free(char *f[], size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(f[i]);
}

/* The lines of a doc. */
static void doc_read(lines_t *l, const char *rel)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/%s", src_dir(), rel);
	char *text = t_read_file(p, NULL);
	cr_assert(text, "cannot read %s", p);
	lines_split(l, text);
	free(text);
}

/* ---- fenced blocks ------------------------------------------------------------------ */

typedef struct block {
	char info[64]; /* the info string */
	size_t first;  /* index of the first line inside the fence */
	lines_t body;  /* the lines inside, with the fence's indentation removed */
} block_t;

/* Every fenced block of doc (``` fences, indented or not). Returns how many. */
static size_t doc_blocks(const lines_t *doc, block_t **out)
{
	size_t n = 0, cap = 0;
	block_t *b = NULL;
	for (size_t i = 0; i < doc->n; i++) {
		const char *s = doc->v[i];
		size_t ind = strspn(s, " ");
		if (strncmp(s + ind, "```", 3))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			b = realloc(b, cap * sizeof(*b));
			cr_assert(b);
		}
		block_t *k = &b[n++];
		memset(k, 0, sizeof(*k));
		snprintf(k->info, sizeof(k->info), "%s", s + ind + 3);
		k->first = i + 1;
		for (i++; i < doc->n; i++) {
			const char *t = doc->v[i];
			size_t ti = strspn(t, " ");
			if (!strncmp(t + ti, "```", 3))
				break;
			lines_push(&k->body, t + (ti < ind ? ti : ind), strlen(t + (ti < ind ? ti : ind)));
		}
	}
	*out = b;
	return n;
}

static void blocks_free(block_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		lines_free(&b[i].body);
	free(b);
}

static bool info_is(const char *info, const char *want)
{
	return !strcmp(info, want);
}

/* ---- matching ----------------------------------------------------------------------- */

static bool num_start(const char *s)
{
	return isdigit((unsigned char)s[0]) || (s[0] == '-' && isdigit((unsigned char)s[1]));
}

static const char *num_skip(const char *s)
{
	if (*s == '-')
		s++;
	while (isdigit((unsigned char)*s))
		s++;
	if (*s == '.' && isdigit((unsigned char)s[1]))
		for (s++; isdigit((unsigned char)*s); s++)
			;
	return s;
}

/* One line: `...` is any text; with nums, a number matches any number. */
static bool line_match(const char *p, const char *a, bool nums)
{
	for (;;) {
		if (!strncmp(p, "...", 3)) {
			p += 3;
			for (;; a++) {
				if (line_match(p, a, nums))
					return true;
				if (!*a)
					return false;
			}
		}
		if (nums && num_start(p)) {
			if (!num_start(a))
				return false;
			p = num_skip(p);
			a = num_skip(a);
			continue;
		}
		if (!*p)
			return !*a;
		if (*p != *a)
			return false;
		p++;
		a++;
	}
}

/* All of want against all of got; a line `...` is any number of lines. */
static bool output_match(const lines_t *want, const lines_t *got, bool nums)
{
	size_t m = want->n, n = got->n;
	/* ok[i][j]: want[i..] matches got[j..] */
	bool *ok = calloc((m + 1) * (n + 1), sizeof(bool));
	cr_assert(ok);
#define OK(i, j) ok[(i) * (n + 1) + (j)]
	OK(m, n) = true;
	for (size_t i = m; i-- > 0;)
		for (size_t j = n + 1; j-- > 0;) {
			if (!strcmp(want->v[i], "..."))
				OK(i, j) = OK(i + 1, j) || (j < n && OK(i, j + 1));
			else
				OK(i, j) =
				    j < n && line_match(want->v[i], got->v[j], nums) && OK(i + 1, j + 1);
		}
	bool r = OK(0, 0);
#undef OK
	free(ok);
	return r;
}

/* The one line of output that depends on the machine (see the top of the file). */
static bool machine_line(const char *s)
{
	return !strncmp(s, "spate: warn: log: io_uring ", 27);
}

/* ---- running a command -------------------------------------------------------------- */

/* Run cmd with /bin/sh in dir, stdout and stderr into one capture. Returns the exit
 * status (128+signal), or -1 when it ran past DOC_CMD_TIMEOUT_MS (then killed). */
static int sh_run(const char *dir, const char *cmd, char **out)
{
	char ofile[] = "/tmp/spate-doc-out-XXXXXX";
	int ofd = mkstemp(ofile);
	cr_assert(ofd >= 0);
	unlink(ofile);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		setpgid(0, 0); /* the whole pipeline can be killed on a timeout */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (chdir(dir) < 0)
			_exit(126);
		dup2(ofd, 1);
		dup2(ofd, 2);
		int nul = open("/dev/null", O_RDONLY);
		dup2(nul, 0);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	setpgid(pid, pid);
	int st = 0, rc = -1;
	if (t_wait_exit(pid, DOC_CMD_TIMEOUT_MS, &st) == 0)
		rc = st;
	kill(-pid, SIGKILL); /* what the command left running */
	lseek(ofd, 0, SEEK_SET);
	size_t cap = 4096, len = 0;
	char *b = malloc(cap);
	for (;;) {
		if (len + 1 >= cap)
			b = realloc(b, cap *= 2);
		ssize_t k = read(ofd, b + len, cap - len - 1);
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	b[len] = 0;
	close(ofd);
	*out = b;
	return rc;
}

/* PATH with the built CLI's folder first, for the shell of every doc command. */
static void path_setup(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	char cli[PATH_MAX];
	cr_assert(realpath(t_spate_cli(), cli), "the spate command %s: %s (set SPATE_CLI)", t_spate_cli(),
	          strerror(errno));
	const char *old = getenv("PATH");
	size_t sz = strlen(cli) + (old ? strlen(old) : 0) + 8;
	char *p = malloc(sz);
	snprintf(p, sz, "%s:%s", dirname(cli), old ? old : "/usr/bin:/bin");
	setenv("PATH", p, 1);
	free(p);
	setenv("LC_ALL", "C", 1);
	unsetenv("SPATE_FAULT_STORE");
	unsetenv("SPATE_FAULT_DLQ");
}

/* ---- the transcripts ------------------------------------------------------------------ */

/* A fresh directory for one doc's commands, with links to the folders that commands
 * name from the repository's root. */
static void doc_dir(char *dir, size_t size)
{
	static const char *const links[] = {"benchmarks", "examples", "scripts", "build", NULL};
	t_mkdtemp(dir, size);
	for (int i = 0; links[i]; i++) {
		char from[PATH_MAX], to[PATH_MAX], abs[PATH_MAX];
		if (strcmp(links[i], "build"))
			snprintf(to, sizeof(to), "%s/%s", src_dir(), links[i]);
		else
			snprintf(to, sizeof(to), "%s", build_dir());
		snprintf(from, sizeof(from), "%s/%s", dir, links[i]);
		cr_assert(realpath(to, abs), "%s: %s", to, strerror(errno));
		cr_assert(symlink(abs, from) == 0, "symlink %s: %s", from, strerror(errno));
	}
}

/* A command's annotations, from a trailing "# exit N, numbers vary" comment. */
static void annotations(const char *line, int *exit_status, bool *nums)
{
	*exit_status = 0;
	*nums = false;
	const char *h = NULL;
	for (const char *s = line; (s = strstr(s, " # ")); s++)
		h = s;
	if (!h)
		return;
	int ex = 0;
	bool nv = false;
	const char *s = h + 3;
	while (*s) {
		int k = 0;
		if (sscanf(s, "exit %d%n", &ex, &k) == 1 && k > 0)
			s += k;
		else if (!strncmp(s, "numbers vary", 12))
			nv = true, s += 12;
		else
			return; /* an ordinary comment of the command */
		if (!strncmp(s, ", ", 2))
			s += 2;
		else if (*s)
			return;
	}
	*exit_status = ex;
	*nums = nv;
}

static void report(char **log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(char **log, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *m = NULL;
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	size_t old = *log ? strlen(*log) : 0, add = m ? strlen(m) : 0;
	*log = realloc(*log, old + add + 2);
	memcpy(*log + old, m ? m : "", add);
	(*log)[old + add] = '\n';
	(*log)[old + add + 1] = 0;
	free(m);
}

static void append_lines(char **log, const lines_t *l, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		report(log, "    | %s", l->v[i]);
}

/* Run one doc-test block in dir. Returns failures; stops the block at the first. */
static int run_block(const char *file, const block_t *b, const char *dir, char **log, int *ncmds)
{
	const lines_t *L = &b->body;
	size_t i = 0;
	while (i < L->n) {
		if (strncmp(L->v[i], "$ ", 2)) {
			report(log, "%s:%zu: output shown before any command: \"%s\"", file, b->first + i + 1,
			       L->v[i]);
			return 1;
		}
		size_t cmd_line = b->first + i + 1;
		char *cmd = NULL;
		size_t clen = 0;
		const char *last = NULL;
		for (bool more = true; more && i < L->n; i++) {
			const char *s = clen ? L->v[i] : L->v[i] + 2;
			size_t len = strlen(s);
			more = len && s[len - 1] == '\\';
			cmd = realloc(cmd, clen + len + 2);
			memcpy(cmd + clen, s, len);
			clen += len;
			cmd[clen++] = '\n';
			cmd[clen] = 0;
			last = s;
		}
		int want_status;
		bool nums;
		annotations(last, &want_status, &nums);
		lines_t want = {0};
		size_t out_first = i;
		for (; i < L->n && strncmp(L->v[i], "$ ", 2); i++)
			lines_push(&want, L->v[i], strlen(L->v[i]));
		char *out = NULL;
		int status = sh_run(dir, cmd, &out);
		(*ncmds)++;
		lines_t got = {0}, all = {0};
		lines_split(&all, out);
		for (size_t k = 0; k < all.n; k++)
			if (!machine_line(all.v[k]))
				lines_push(&got, all.v[k], strlen(all.v[k]));
		int fail = 0;
		cmd[clen - 1] = 0;
		if (status < 0) {
			report(log, "%s:%zu: `%s` ran longer than %d ms (killed)", file, cmd_line, cmd,
			       DOC_CMD_TIMEOUT_MS);
			fail = 1;
		} else if (status != want_status) {
			report(log, "%s:%zu: `%s` exited with %d, the doc says %d", file, cmd_line, cmd,
			       status, want_status);
			fail = 1;
		} else if (!output_match(&want, &got, nums)) {
			report(log, "%s:%zu: `%s` printed what lines %zu..%zu of the doc do not show", file,
			       cmd_line, cmd, b->first + out_first + 1, b->first + i);
			for (size_t k = 0; k < want.n; k++) {
				bool any = !strcmp(want.v[k], "...");
				for (size_t g = 0; g < got.n && !any; g++)
					any = line_match(want.v[k], got.v[g], nums);
				if (!any) {
					report(log, "  %s:%zu matches no line it printed", file,
					       b->first + out_first + k + 1);
					break;
				}
			}
			fail = 1;
		}
		if (fail) {
			report(log, "  the doc shows:");
			append_lines(log, &want, 0, want.n);
			report(log, "  it printed:");
			append_lines(log, &got, 0, got.n);
		}
		lines_free(&want);
		lines_free(&got);
		lines_free(&all);
		free(out);
		free(cmd);
		if (fail)
			return 1;
	}
	return 0;
}

Test(docs, examples_print_what_the_docs_show, .timeout = 280)
{
	path_setup();
	char *files[DOC_MAX_FILES];
	size_t nf = doc_files(files);
	char *log = NULL;
	int fails = 0, ncmds = 0, nblocks = 0;
	for (size_t f = 0; f < nf; f++) {
		lines_t doc = {0};
		doc_read(&doc, files[f]);
		block_t *b;
		size_t nb = doc_blocks(&doc, &b);
		char dir[64] = "";
		for (size_t k = 0; k < nb; k++) {
			if (!info_is(b[k].info, "sh doc-test"))
				continue;
			if (!dir[0])
				doc_dir(dir, sizeof(dir));
			nblocks++;
			if (run_block(files[f], &b[k], dir, &log, &ncmds)) {
				fails++;
				break; /* later blocks of the file build on this one */
			}
		}
		if (dir[0])
			t_rmrf(dir);
		blocks_free(b, nb);
		lines_free(&doc);
	}
	doc_files_free(files, nf);
	cr_log_info("%d doc-test blocks, %d commands", nblocks, ncmds);
	cr_assert(nblocks > 0 && ncmds > 0, "no doc-test blocks found under %s", src_dir());
	cr_assert(fails == 0, "%d doc(s) with a command that does not do what its doc shows:\n%s", fails,
	          log ? log : "");
	free(log);
}

/* ---- C examples ------------------------------------------------------------------------- */

Test(docs, c_examples_compile, .timeout = 120)
{
	char *files[DOC_MAX_FILES];
	size_t nf = doc_files(files);
	char dir[64];
	t_mkdtemp(dir, sizeof(dir));
	int n = 0;
	for (size_t f = 0; f < nf; f++) {
		lines_t doc = {0};
		doc_read(&doc, files[f]);
		block_t *b;
		size_t nb = doc_blocks(&doc, &b);
		for (size_t k = 0; k < nb; k++) {
			if (!info_is(b[k].info, "c doc-compile"))
				continue;
			char path[128];
			snprintf(path, sizeof(path), "%s/example%d.c", dir, n++);
			FILE *fp = fopen(path, "w");
			cr_assert(fp);
			for (size_t i = 0; i < b[k].body.n; i++)
				fprintf(fp, "%s\n", b[k].body.v[i]);
			fclose(fp);
			char inc[4096];
			snprintf(inc, sizeof(inc), "-I%s/include", src_dir());
			char *argv[] = {"cc", "-std=gnu11", "-Wall", "-Werror", "-fsyntax-only",
			                inc,  path,         NULL};
			char *out, *err;
			int rc = t_run(argv, &out, &err);
			cr_expect(rc == 0, "%s:%zu: the C example does not compile:\n%s%s", files[f],
			          b[k].first, out, err);
			free(out);
			free(err);
		}
		blocks_free(b, nb);
		lines_free(&doc);
	}
	doc_files_free(files, nf);
	t_rmrf(dir);
	cr_assert(n > 0, "no `c doc-compile` block found");
}

/* ---- every doc with commands runs some ------------------------------------------------- */

static const char *exempt_why(const char *file)
{
	for (size_t i = 0; i < sizeof(EXEMPT) / sizeof(EXEMPT[0]); i++)
		if (!strcmp(EXEMPT[i].file, file))
			return EXEMPT[i].why;
	return NULL;
}

static bool shows_command(const char *s)
{
	if (!strncmp(s, "$ ", 2))
		s += 2;
	return !strncmp(s, "spate ", 6) || !strncmp(s, "build/cli/spate ", 16);
}

Test(docs, every_doc_with_commands_has_a_doc_test)
{
	char *files[DOC_MAX_FILES];
	size_t nf = doc_files(files);
	for (size_t f = 0; f < nf; f++) {
		lines_t doc = {0};
		doc_read(&doc, files[f]);
		block_t *b;
		size_t nb = doc_blocks(&doc, &b);
		size_t cmd_line = 0, tests = 0;
		for (size_t k = 0; k < nb; k++) {
			if (info_is(b[k].info, "sh doc-test")) {
				tests++;
				continue;
			}
			for (size_t i = 0; i < b[k].body.n && !cmd_line; i++)
				if (shows_command(b[k].body.v[i]))
					cmd_line = b[k].first + i + 1;
		}
		const char *why = exempt_why(files[f]);
		if (why)
			cr_log_info("%s: not required to have doc-test blocks: %s", files[f], why);
		else
			cr_expect(!cmd_line || tests > 0,
			          "%s:%zu shows a spate command, but the file has no `sh doc-test` block",
			          files[f], cmd_line);
		blocks_free(b, nb);
		lines_free(&doc);
	}
	doc_files_free(files, nf);
}

/* ---- --help ------------------------------------------------------------------------------ */

static void expect_help(const char *verb, const char *sub)
{
	char *argv[] = {(char *)t_spate_cli(), (char *)verb, (char *)(sub ? sub : "--help"),
	                sub ? "--help" : NULL, NULL};
	char *out, *err;
	int rc = t_run(argv, &out, &err);
	cr_expect(rc == 0, "spate %s%s%s --help exited with %d: %s", verb, sub ? " " : "", sub ? sub : "", rc,
	          err);
	char want[128];
	snprintf(want, sizeof(want), "usage: spate %s", verb);
	if (strcmp(verb, "version"))
		cr_expect(strstr(out, want), "spate %s%s%s --help prints no \"%s\": %s", verb, sub ? " " : "",
		          sub ? sub : "", want, out);
	else
		cr_expect(strstr(out, "spate "), "spate version --help: %s", out);
	free(out);
	free(err);
}

Test(docs, every_verb_answers_help)
{
	char *argv[] = {(char *)t_spate_cli(), "--help", NULL};
	char *out, *err;
	cr_assert_eq(t_run(argv, &out, &err), 0, "spate --help: %s", err);
	lines_t l = {0};
	lines_split(&l, out);
	int verbs = 0;
	for (size_t i = 0; i < l.n; i++) {
		char verb[64], second[128];
		/* the verb lines: two spaces, a lower-case word */
		if (strncmp(l.v[i], "  ", 2) || !islower((unsigned char)l.v[i][2]))
			continue;
		int k = sscanf(l.v[i], " %63s %127s", verb, second);
		if (k < 1)
			continue;
		verbs++;
		expect_help(verb, NULL);
		/* sub-verbs: "create|ls|dump" or a single lower-case word such as "redrive" */
		if (k == 2 && strspn(second, "abcdefghijklmnopqrstuvwxyz|") == strlen(second)) {
			for (char *save, *s = strtok_r(second, "|", &save); s; s = strtok_r(NULL, "|", &save))
				expect_help(verb, s);
		}
	}
	cr_assert(verbs >= 7, "spate --help lists %d verbs: %s", verbs, out);
	lines_free(&l);
	free(out);
	free(err);
}

/* ---- links and paths ------------------------------------------------------------------- */

/* A path the docs name exists in the source tree, or is built (tests/tools/mock-kafka). */
static bool path_exists(const char *rel)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/%s", src_dir(), rel);
	if (exists(p))
		return true;
	snprintf(p, sizeof(p), "%s/%s", build_dir(), rel);
	return exists(p);
}

static const char *const TREE[] = {"engine/",     "connectors/", "operators/", "cli/",  "lib/",      "tests/",
                                   "benchmarks/", "scripts/",    "include/",   "docs/", "examples/", NULL};

/* The length of the source path at the start of a `code span`, or 0 when it is not
 * one. A path with upper-case letters outside a .md name is a placeholder (docs/FOO). */
static size_t tree_path(const char *s)
{
	for (int i = 0; TREE[i]; i++)
		if (!strncmp(s, TREE[i], strlen(TREE[i]))) {
			size_t n =
			    strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-");
			bool md = n > 3 && !strncmp(s + n - 3, ".md", 3);
			for (size_t k = 0; k < n && !md; k++)
				if (isupper((unsigned char)s[k]))
					return 0;
			return n;
		}
	return 0;
}

Test(docs, links_and_named_paths_exist)
{
	char *files[DOC_MAX_FILES];
	size_t nf = doc_files(files);
	int checked = 0;
	for (size_t f = 0; f < nf; f++) {
		lines_t doc = {0};
		doc_read(&doc, files[f]);
		char base[512];
		snprintf(base, sizeof(base), "%s", files[f]);
		char *slash = strrchr(base, '/');
		if (slash)
			slash[1] = 0;
		else
			base[0] = 0;
		for (size_t i = 0; i < doc.n; i++) {
			const char *s = doc.v[i];
			/* [text](target) links to files of the repository */
			for (const char *p = s; (p = strstr(p, "](")); p += 2) {
				const char *t = p + 2, *e = strpbrk(t, ")#");
				if (!e || !strncmp(t, "http", 4) || !strncmp(t, "mailto:", 7) || e == t)
					continue;
				char rel[1024];
				snprintf(rel, sizeof(rel), "%s%.*s", base, (int)(e - t), t);
				checked++;
				cr_expect(path_exists(rel), "%s:%zu: the link %.*s leads to no file",
				          files[f], i + 1, (int)(e - t), t);
			}
			/* `engine/flow.c`, `tests/engine/test_flow.c: name`, `connectors/log/` */
			for (const char *p = s; (p = strchr(p, '`')); p++) {
				size_t n = tree_path(p + 1);
				if (!n)
					continue;
				char rel[1024];
				snprintf(rel, sizeof(rel), "%.*s", (int)n, p + 1);
				while (n && rel[n - 1] == '.') /* the end of a sentence */
					rel[--n] = 0;
				checked++;
				cr_expect(path_exists(rel),
				          "%s:%zu: `%s` names no file or folder of the tree", files[f], i + 1,
				          rel);
			}
		}
		lines_free(&doc);
	}
	doc_files_free(files, nf);
	cr_assert(checked > 20, "only %d links and paths found", checked);
}

Test(docs, readme_lists_every_doc_once)
{
	lines_t doc = {0};
	doc_read(&doc, "README.md");
	char *files[DOC_MAX_FILES];
	size_t nf = doc_files(files);
	int count[DOC_MAX_FILES] = {0};
	bool in = false;
	for (size_t i = 0; i < doc.n; i++) {
		if (!strncmp(doc.v[i], "## ", 3))
			in = !strcmp(doc.v[i], "## Documentation");
		if (!in || strncmp(doc.v[i], "- [", 3))
			continue;
		const char *t = strstr(doc.v[i], "](");
		cr_assert(t, "README.md:%zu: a list item without a link", i + 1);
		t += 2;
		const char *e = strchr(t, ')');
		cr_assert(e, "README.md:%zu", i + 1);
		bool known = false;
		for (size_t f = 1; f < nf; f++)
			if (strlen(files[f]) == (size_t)(e - t) && !strncmp(files[f], t, (size_t)(e - t))) {
				count[f]++;
				known = true;
				cr_expect(count[f] == 1, "README.md:%zu lists %s again", i + 1, files[f]);
			}
		cr_expect(known, "README.md:%zu lists %.*s, which is not a page of docs/", i + 1,
		          (int)(e - t), t);
	}
	for (size_t f = 1; f < nf; f++)
		cr_expect(count[f] > 0, "README.md's documentation list does not name %s", files[f]);
	doc_files_free(files, nf);
	lines_free(&doc);
}
