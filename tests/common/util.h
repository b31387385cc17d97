/* util.h - helpers shared by the tests: temp dirs, running the CLI, reading files. */
#ifndef SPATE_TESTS_UTIL_H
#define SPATE_TESTS_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* A fresh directory under /tmp (path written into buf). Aborts the test on failure. */
char *t_mkdtemp(char *buf, size_t size);
/* rm -rf path. */
void t_rmrf(const char *path);
/* Run argv (argv[0] resolved via PATH unless it has a '/'), capture stdout and stderr into
 * malloc'd strings (may be NULL), return the exit status (or 128+signal). */
int t_run(char *const argv[], char **out, char **err);
/* The built `spate` command (SPATE_CLI, else build/cli/spate). */
const char *t_spate_cli(void);
/* Start argv (argv[0] a path) in the background: stdin from /dev/null, stdout and
 * stderr into the files out and err (created; NULL: /dev/null), at niceness nice (0:
 * unchanged). Returns the pid, or -1 when fork fails (errno set). The child gets SIGKILL
 * when the test process dies, so a failing test leaves no spate behind. */
int t_spawn(char *const argv[], const char *out, const char *err, int nice);
/* Wait up to timeout_ms for child pid to exit: 0 and *status (exit code, or 128+signal),
 * or -1 after killing it with SIGKILL when it did not exit in time (a hang). */
int t_wait_exit(int pid, int timeout_ms, int *status);
/* Monotonic milliseconds. */
int64_t t_now_ms(void);
/* Sleep ms milliseconds. */
void t_sleep_ms(int ms);
/* The bytes the process's allocator has handed out and not taken back (live heap,
 * mmapped blocks included): glibc's mallinfo2, or ASan's own count under ASan, where
 * freed memory waits in a quarantine and RSS says little about what is live. What a
 * test of a memory bound compares, alongside the engine's own accounting. */
int64_t t_heap_live_bytes(void);
/* Whether this is a build under AddressSanitizer. */
int t_asan(void);
/* Whole file into a malloc'd NUL-terminated buffer, or NULL. */
char *t_read_file(const char *path, size_t *len);

/* Read one line from fd within deadline (monotonic ms), buffered in rbuf (cap bytes, *rlen
 * of them held over from earlier calls). Returns 0 with the line (no newline) in buf, or -1
 * on timeout, EOF, or a line longer than rbuf. */
int t_read_line(int fd, char *rbuf, size_t cap, size_t *rlen, char *buf, size_t size, int64_t deadline);

/* A node script of the tests (tests/tools/NAME.js) as a child process: its stdin a pipe
 * (the script exits when it closes), its stdout a pipe read line by line. */
enum { T_NODE_LINE = 512 };
typedef struct t_node {
	int pid;
	int in_fd, out_fd;
	char rbuf[T_NODE_LINE];
	size_t rlen;
} t_node_t;
/* Start `node tests/tools/NAME.js MODULES` (MODULES: SPATE_KINESALITE_MODULES, else the
 * repository's .deps/node/node_modules, which must hold the npm package NAME) and wait
 * up to ready_ms for its first line (into line). Failures are t_require (engine.h). */
void t_node_start(t_node_t *n, const char *name, char *line, size_t size, int ready_ms);
/* A line of n's stdout within timeout_ms: 0, or -1 (t_read_line). */
int t_node_read_line(t_node_t *n, char *buf, size_t size, int timeout_ms);
/* Close n's stdin, SIGTERM, SIGKILL after stop_ms; reap it and close its stdout. */
void t_node_stop(t_node_t *n, int stop_ms);

#endif
