/* util.c - helpers shared by the tests. */
#include "tests/common/util.h"

#include "tests/common/engine.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

char *t_mkdtemp(char *buf, size_t size)
{
	snprintf(buf, size, "/tmp/spate-test-XXXXXX");
	if (!mkdtemp(buf))
		cr_assert_fail("mkdtemp: %s", strerror(errno));
	return buf;
}

void t_rmrf(const char *path)
{
	char *const argv[] = {"rm", "-rf", (char *)path, NULL};
	t_run(argv, NULL, NULL);
}

static char *slurp_fd(int fd)
{
	size_t cap = 4096, len = 0;
	char *b = malloc(cap);
	for (;;) {
		if (len + 1 >= cap)
			b = realloc(b, cap *= 2);
		ssize_t n = read(fd, b + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	b[len] = 0;
	return b;
}

int t_run(char *const argv[], char **out, char **err)
{
	char ofile[] = "/tmp/spate-t-out-XXXXXX", efile[] = "/tmp/spate-t-err-XXXXXX";
	int ofd = mkstemp(ofile), efd = mkstemp(efile);
	cr_assert(ofd >= 0 && efd >= 0);
	unlink(ofile);
	unlink(efile);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failing test */
		dup2(ofd, 1);
		dup2(efd, 2);
		int nul = open("/dev/null", O_RDONLY);
		dup2(nul, 0);
		execvp(argv[0], argv);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	lseek(ofd, 0, SEEK_SET);
	lseek(efd, 0, SEEK_SET);
	if (out)
		*out = slurp_fd(ofd);
	if (err)
		*err = slurp_fd(efd);
	close(ofd);
	close(efd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

const char *t_spate_cli(void)
{
	const char *c = getenv("SPATE_CLI");
	return c && *c ? c : "build/cli/spate";
}

char *t_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	size_t got = fread(b, 1, (size_t)n, f);
	fclose(f);
	b[got] = 0;
	if (len)
		*len = got;
	return b;
}

int64_t t_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void t_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

int t_spawn(char *const argv[], const char *out, const char *err, int nice)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failing test */
	int o = open(out ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int e = open(err ? err : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int n = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (o < 0 || e < 0 || n < 0)
		_exit(126);
	dup2(n, 0);
	dup2(o, 1);
	dup2(e, 2);
	if (nice && setpriority(PRIO_PROCESS, 0, nice) < 0)
		(void)0; /* only scheduling */
	execv(argv[0], argv);
	_exit(127);
}

int t_wait_exit(int pid, int timeout_ms, int *status)
{
	int64_t deadline = t_now_ms() + timeout_ms;
	for (;;) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			return 0;
		}
		if (r < 0 && errno != EINTR)
			return -1;
		if (t_now_ms() >= deadline) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			return -1;
		}
		t_sleep_ms(5);
	}
}

#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif

#ifdef T_ASAN
size_t __sanitizer_get_current_allocated_bytes(void); /* <sanitizer/allocator_interface.h> */
#endif

int t_asan(void)
{
#ifdef T_ASAN
	return 1;
#else
	return 0;
#endif
}

int64_t t_heap_live_bytes(void)
{
#ifdef T_ASAN
	return (int64_t)__sanitizer_get_current_allocated_bytes();
#else
	struct mallinfo2 m = mallinfo2(); /* every arena, and the blocks malloc mmapped */
	return (int64_t)(m.uordblks + m.hblkhd);
#endif
}

int t_read_line(int fd, char *rbuf, size_t cap, size_t *rlen, char *buf, size_t size, int64_t deadline)
{
	for (;;) {
		char *nl = memchr(rbuf, '\n', *rlen);
		if (nl) {
			size_t n = (size_t)(nl - rbuf);
			snprintf(buf, size, "%.*s", (int)n, rbuf);
			*rlen -= n + 1;
			memmove(rbuf, nl + 1, *rlen);
			return 0;
		}
		if (*rlen == cap)
			return -1; /* a line longer than any answer: not ours */
		int64_t left = deadline - t_now_ms();
		if (left <= 0)
			return -1;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		ssize_t n = read(fd, rbuf + *rlen, cap - *rlen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		*rlen += (size_t)n;
	}
}

void t_node_start(t_node_t *n, const char *name, char *line, size_t size, int ready_ms)
{
	const char *mods = getenv("SPATE_KINESALITE_MODULES");
	const char *src = getenv("SPATE_SOURCE_DIR");
	char script[1024], check[1200], dflt[1024];
	if (!src || !*src)
		src = ".";
	snprintf(script, sizeof(script), "%s/tests/tools/%s.js", src, name);
	if (!mods || !*mods) { /* run outside meson test: the repository's .deps */
		snprintf(dflt, sizeof(dflt), "%s/.deps/node/node_modules", src);
		mods = dflt;
	}
	snprintf(check, sizeof(check), "%s/%s/package.json", mods, name);
	t_require(access(check, R_OK) == 0,
	          "%s is not installed in %s: run scripts/deps.sh (it installs nodejs, npm and %s)", name,
	          mods, name);
	memset(n, 0, sizeof(*n));
	int in[2], out[2];
	t_require(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
	fflush(NULL);
	pid_t pid = fork();
	t_require(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(in[0], 0);
		dup2(out[1], 1);
		execlp("node", "node", script, mods, (char *)NULL);
		fprintf(stderr, "exec node: %s (install nodejs: scripts/deps.sh)\n", strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	n->pid = pid;
	n->in_fd = in[1];
	n->out_fd = out[0];
	t_require(t_node_read_line(n, line, size, ready_ms) == 0,
	          "%s (node %s) printed no ready line within %d ms", name, script, ready_ms);
}

int t_node_read_line(t_node_t *n, char *buf, size_t size, int timeout_ms)
{
	return t_read_line(n->out_fd, n->rbuf, sizeof(n->rbuf), &n->rlen, buf, size, t_now_ms() + timeout_ms);
}

void t_node_stop(t_node_t *n, int stop_ms)
{
	close(n->in_fd); /* the scripts exit when their stdin closes */
	kill(n->pid, SIGTERM);
	int st;
	int64_t deadline = t_now_ms() + stop_ms;
	while (waitpid(n->pid, &st, WNOHANG) == 0) {
		if (t_now_ms() >= deadline) {
			kill(n->pid, SIGKILL);
			waitpid(n->pid, &st, 0);
			break;
		}
		t_sleep_ms(10);
	}
	close(n->out_fd);
}
