/* fuzz_conf.c - the configuration: spate_conf_set (engine/conf.c) on key=value bytes,
 * the config-file loader and the -X arguments of `spate run` (cli/cmd_run.c, linked
 * without the CLI's main).
 *
 * The input is a config file. Each of its lines is also given to spate_conf_set the way
 * -X gives it (split at the first '='); then the file goes through `spate run FILE -X
 * LINE1 --fuzz-stop`, which loads it (spate_cli_load_config), applies the -X and stops at
 * the unknown option before anything runs. The oracle: a key set OK reads back
 * (spate_conf_get) as the value given, and its copy (spate_conf_dup) says the same; an
 * error names the key; neither an error text nor what the CLI prints (stderr, captured)
 * repeats the password of a URI's user:password@ (store=redis://user:PASSWORD@host:port).
 * That is checked by difference, so that the password's bytes may also be words of the
 * messages: the text is made again with the password's bytes replaced (mask()) and must
 * hold its bytes as often as before.
 */
#include "cmds.h"
#include "fuzz.h"

#include <spate/spate.h>
#include <stdbool.h>
#include <sys/mman.h>

/* Longest line given to spate_conf_set. */
#define LINE_MAX_BYTES 4096
/* Shorter passwords are not looked for in the output: their bytes turn up by chance. */
#define MIN_SECRET 4

/* The password of a "scheme://user:password@" value, in pw (empty when there is none). */
static void uri_password(const char *v, char *pw, size_t size)
{
	pw[0] = 0;
	const char *s = strstr(v, "://");
	if (!s)
		return;
	s += 3;
	const char *at = strchr(s, '@'), *colon = strchr(s, ':');
	if (!at || !colon || colon > at)
		return;
	size_t n = (size_t)(at - colon - 1);
	if (n >= size)
		n = size - 1;
	memcpy(pw, colon + 1, n);
	pw[n] = 0;
}

/* Occurrences of needle (n bytes) in [p, p + size). */
static size_t count(const uint8_t *p, size_t size, const char *needle, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; n && i + n <= size; i++)
		k += !memcmp(p + i, needle, n);
	return k;
}

/* Replace the bytes of s[0..n) that do not shape a value (':', '@', '/', '=', blanks)
 * by others of that kind: the value parses the same way, only the bytes differ. */
static void mask(char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strchr(":@/= \t\r\v\f", s[i]))
			s[i] = s[i] == 'Q' ? 'R' : 'Q';
}

/* Keys set OK by the lines, compared between the conf and its copy. */
#define MAX_KEYS 64
static char *set_keys[MAX_KEYS];
static size_t nset;

static void set_line(spate_conf_t *c, const char *line)
{
	const char *eq = strchr(line, '=');
	if (!eq)
		return;
	char key[LINE_MAX_BYTES];
	memcpy(key, line, (size_t)(eq - line));
	key[eq - line] = 0;
	const char *val = eq + 1;
	char err[512] = "";
	spate_conf_res_t r = spate_conf_set(c, key, val, err, sizeof(err));
	if (r == SPATE_CONF_OK) {
		char back[LINE_MAX_BYTES + 1];
		size_t n = sizeof(back);
		FUZZ_CHECK(spate_conf_get(c, key, back, &n) == SPATE_CONF_OK);
		FUZZ_CHECK(n == strlen(val) + 1 && !strcmp(back, val));
		if (nset < MAX_KEYS)
			FUZZ_CHECK((set_keys[nset++] = strdup(key)));
		return;
	}
	FUZZ_CHECK(r == SPATE_CONF_INVALID || r == SPATE_CONF_UNKNOWN);
	/* an error begins with the key (cut to the buffer) */
	FUZZ_CHECK(!strncmp(err, key, strlen(key) < 64 ? strlen(key) : 64));
	size_t after_key = strlen(key) < strlen(err) ? strlen(key) : strlen(err);
	char pw[LINE_MAX_BYTES];
	uri_password(val, pw, sizeof(pw));
	size_t n = strlen(pw);
	if (n < MIN_SECRET || count((const uint8_t *)line, strlen(line), pw, n) != 1 ||
	    !strstr(err + after_key, pw))
		return;
	/* the same value with other bytes in the password: as many of its bytes in the error */
	char val2[LINE_MAX_BYTES], err2[512] = "";
	snprintf(val2, sizeof(val2), "%s", val);
	mask(strstr(val2, pw), n);
	spate_conf_t *c2 = spate_conf_new();
	FUZZ_CHECK(c2);
	FUZZ_CHECK(spate_conf_set(c2, key, val2, err2, sizeof(err2)) == r);
	spate_conf_destroy(c2);
	FUZZ_CHECK(count((const uint8_t *)err, strlen(err), pw, n) ==
	           count((const uint8_t *)err2, strlen(err2), pw, n));
}

/* The CLI's messages on stderr, captured in a memfd between begin and end (both made
 * once per process). */
static int saved_fd = -1, cap_fd = -1;

static void capture_begin(void)
{
	fflush(stderr);
	if (cap_fd < 0) {
		cap_fd = memfd_create("fuzz-stderr", MFD_CLOEXEC);
		saved_fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
		FUZZ_CHECK(cap_fd >= 0 && saved_fd >= 0);
	}
	FUZZ_CHECK(ftruncate(cap_fd, 0) == 0 && lseek(cap_fd, 0, SEEK_SET) == 0 && dup2(cap_fd, 2) == 2);
}

/* What was captured (NUL-terminated, malloc'd). */
static char *capture_end(size_t *len)
{
	fflush(stderr);
	FUZZ_CHECK(dup2(saved_fd, 2) == 2);
	off_t n = lseek(cap_fd, 0, SEEK_CUR);
	char *out = malloc((size_t)n + 1);
	FUZZ_CHECK(out && pread(cap_fd, out, (size_t)n, 0) == n);
	out[n] = 0;
	*len = (size_t)n;
	return out;
}

/* What the CLI prints of the config file data: `spate run FILE -X LINE1 --fuzz-stop`
 * (its loader, then the -X). Returns the captured stderr (malloc'd, NUL-terminated). */
static char *cli_output(const uint8_t *data, size_t size, size_t *out_len)
{
	char path[600], first[LINE_MAX_BYTES] = "";
	snprintf(path, sizeof(path), "%s/fuzz.conf", fuzz_dir());
	fuzz_write(path, data, size);
	const uint8_t *nl = memchr(data, '\n', size);
	size_t len = nl ? (size_t)(nl - data) : size;
	if (len < sizeof(first) && !memchr(data, 0, len)) {
		memcpy(first, data, len);
		first[len] = 0;
	}
	capture_begin();
	char *argv[] = {"run", path, "-X", first, "--fuzz-stop", NULL};
	int rc = spate_cmd_run(5, argv);
	char *out = capture_end(out_len);
	FUZZ_CHECK(rc != 0);
	return out;
}

/* No URI password of the input's lines (one that appears once in the input, so nothing
 * else brings its bytes) is in out, as told by difference. */
static void no_password(const uint8_t *data, size_t size, const char *out, size_t out_len)
{
	for (size_t off = 0; off < size;) {
		const uint8_t *nl = memchr(data + off, '\n', size - off);
		size_t len = nl ? (size_t)(nl - (data + off)) : size - off;
		char line[LINE_MAX_BYTES], pw[LINE_MAX_BYTES];
		if (len < sizeof(line) && !memchr(data + off, 0, len)) {
			memcpy(line, data + off, len);
			line[len] = 0;
			/* the value's password (a key is no secret); a line without '=' may be all value */
			const char *eq = strchr(line, '=');
			uri_password(eq ? eq + 1 : line, pw, sizeof(pw));
			size_t n = strlen(pw), k;
			if (n >= MIN_SECRET && count(data, size, pw, n) == 1 &&
			    (k = count((const uint8_t *)out, out_len, pw, n)) > 0) {
				uint8_t *data2 = malloc(size);
				FUZZ_CHECK(data2);
				memcpy(data2, data, size);
				mask((char *)memmem(data2, size, pw, n), n);
				size_t out2_len;
				char *out2 = cli_output(data2, size, &out2_len);
				FUZZ_CHECK(k == count((const uint8_t *)out2, out2_len, pw, n));
				free(out2);
				free(data2);
			}
		}
		off += len + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	spate_conf_t *c = spate_conf_new();
	FUZZ_CHECK(c);
	char line[LINE_MAX_BYTES];
	for (size_t off = 0; off < size;) {
		const uint8_t *nl = memchr(data + off, '\n', size - off);
		size_t len = nl ? (size_t)(nl - (data + off)) : size - off;
		if (len < sizeof(line) && !memchr(data + off, 0, len)) {
			memcpy(line, data + off, len);
			line[len] = 0;
			set_line(c, line);
		}
		off += len + 1;
	}
	spate_conf_t *d = spate_conf_dup(c);
	FUZZ_CHECK(d);
	for (size_t i = 0; i < nset; i++) {
		char a[LINE_MAX_BYTES + 1], b[LINE_MAX_BYTES + 1];
		size_t an = sizeof(a), bn = sizeof(b);
		FUZZ_CHECK(spate_conf_get(c, set_keys[i], a, &an) == SPATE_CONF_OK);
		FUZZ_CHECK(spate_conf_get(d, set_keys[i], b, &bn) == SPATE_CONF_OK);
		FUZZ_CHECK(an == bn && !strcmp(a, b));
		free(set_keys[i]);
	}
	nset = 0;
	spate_conf_destroy(d);
	spate_conf_destroy(c);

	size_t out_len;
	char *out = cli_output(data, size, &out_len);
	no_password(data, size, out, out_len);
	free(out);
	return 0;
}
