/* kafka.c - Criterion helpers for Kafka tests: run mock-kafka as a child process.
 *
 * See kafka.h. Pipes are created close-on-exec so that no other child the test runs
 * (the spate CLI) inherits the write end of the cluster's stdin: the cluster's
 * lifeline must close when this process dies, and only then.
 */
#include "engine/engine.h"
#include "tests/common/kafka.h"
#include "tests/common/util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
	/* how long a cluster may take to write its bootstrap file (ASan on a busy machine) */
	T_KAFKA_READY_MS = 30000,
	/* how long one command may take to answer */
	T_KAFKA_ANSWER_MS = 15000,
	/* how long SIGTERM may take before SIGKILL */
	T_KAFKA_STOP_MS = 10000,
	/* how often to look for the bootstrap file / the child's exit */
	T_KAFKA_POLL_MS = 10,
	/* clusters one test process may run at once */
	T_KAFKA_MAX = 8,
	T_KAFKA_LINE = 4096,
};

struct t_kafka {
	pid_t pid;
	int in_fd;  /* the child's stdin: commands */
	int out_fd; /* the child's stdout: the bootstrap line, then answers */
	char dir[256];
	char bootstrap[T_KAFKA_LINE];
	char rbuf[T_KAFKA_LINE];
	size_t rlen;
};

static t_kafka_t *running[T_KAFKA_MAX];

const char *t_kafka_tool(void)
{
	static char path[1024];
	const char *p = getenv("SPATE_MOCK_KAFKA");
	if (p && *p)
		return p;
	const char *b = getenv("SPATE_BUILD_DIR");
	snprintf(path, sizeof(path), "%s/tests/tools/mock-kafka", b && *b ? b : "build");
	return path;
}

/* Read one line from the child's stdout within deadline (monotonic ms). Returns 0 with the
 * line (no newline) in buf, or -1 on timeout or EOF. */
static int read_line(t_kafka_t *k, char *buf, size_t size, int64_t deadline)
{
	return t_read_line(k->out_fd, k->rbuf, sizeof(k->rbuf), &k->rlen, buf, size, deadline);
}

/* Reap the child if it exited. Returns its status as t_kafka_stop does, or -1 if running. */
static int reap(t_kafka_t *k, int flags)
{
	int st;
	pid_t r;
	while ((r = waitpid(k->pid, &st, flags)) < 0 && errno == EINTR)
		;
	if (r != k->pid)
		return -1;
	k->pid = -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void forget(t_kafka_t *k)
{
	for (int i = 0; i < T_KAFKA_MAX; i++)
		if (running[i] == k)
			running[i] = NULL;
}

t_kafka_t *t_kafka_start(int brokers, const char *const *topics)
{
	const char *tool = t_kafka_tool();
	if (access(tool, X_OK) != 0)
		cr_assert_fail("mock-kafka not found at %s (SPATE_MOCK_KAFKA): %s; build with librdkafka "
		               "(-Dkafka=enabled)",
		               tool, strerror(errno));
	int slot = -1;
	for (int i = 0; i < T_KAFKA_MAX && slot < 0; i++)
		if (!running[i])
			slot = i;
	cr_assert(slot >= 0, "more than %d mock clusters at once", T_KAFKA_MAX);

	t_kafka_t *k = calloc(1, sizeof(*k));
	cr_assert(k);
	t_mkdtemp(k->dir, sizeof(k->dir));
	char bfile[512], nb[16];
	snprintf(bfile, sizeof(bfile), "%s/bootstrap", k->dir);
	snprintf(nb, sizeof(nb), "%d", brokers);
	enum { MAX_ARGS = 64 };
	const char *argv[MAX_ARGS];
	int argc = 0;
	argv[argc++] = tool;
	argv[argc++] = "--brokers";
	argv[argc++] = nb;
	argv[argc++] = "--bootstrap-file";
	argv[argc++] = bfile;
	argv[argc++] = "--stdin";
	for (size_t i = 0; topics && topics[i]; i++) {
		cr_assert(argc + 3 < MAX_ARGS, "too many topics");
		argv[argc++] = "--topic";
		argv[argc++] = topics[i];
	}
	argv[argc] = NULL;

	int in[2], out[2];
	cr_assert(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
	fflush(NULL);
	pid_t pid = fork();
	cr_assert(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		execv(tool, (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", tool, strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	k->pid = pid;
	k->in_fd = in[1];
	k->out_fd = out[0];
	running[slot] = k;

	/* Ready once the bootstrap file exists (it appears whole, by rename). */
	int64_t deadline = sp_now_ms() + T_KAFKA_READY_MS;
	char *file = NULL;
	while (!(file = t_read_file(bfile, NULL))) {
		int st = reap(k, WNOHANG);
		cr_assert(st < 0, "mock-kafka exited with status %d before it was ready (%s)", st, tool);
		cr_assert(sp_now_ms() < deadline, "mock-kafka wrote no %s within %d ms", bfile,
		          T_KAFKA_READY_MS);
		t_sleep_ms(T_KAFKA_POLL_MS);
	}
	file[strcspn(file, "\n")] = 0;
	char line[T_KAFKA_LINE];
	cr_assert(read_line(k, line, sizeof(line), sp_now_ms() + T_KAFKA_ANSWER_MS) == 0,
	          "mock-kafka printed no bootstrap line");
	cr_assert_str_eq(line, file, "bootstrap line \"%s\" differs from the file's \"%s\"", line, file);
	cr_assert(!strncmp(line, "127.0.0.1:", 10), "mock-kafka listens on \"%s\", not 127.0.0.1", line);
	snprintf(k->bootstrap, sizeof(k->bootstrap), "%s", line);
	free(file);
	return k;
}

const char *t_kafka_bootstrap(const t_kafka_t *k)
{
	return k->bootstrap;
}

static int vcmd(t_kafka_t *k, char *ans, size_t size, const char *fmt, va_list ap)
{
	char cmd[T_KAFKA_LINE];
	int n = vsnprintf(cmd, sizeof(cmd) - 1, fmt, ap);
	cr_assert(n > 0 && (size_t)n < sizeof(cmd) - 1, "command too long");
	cmd[n++] = '\n';
	for (int off = 0; off < n;) {
		ssize_t w = write(k->in_fd, cmd + off, (size_t)(n - off));
		if (w < 0 && errno == EINTR)
			continue;
		cr_assert(w > 0, "mock-kafka: cannot send \"%.*s\": %s", n - 1, cmd, strerror(errno));
		off += (int)w;
	}
	char line[T_KAFKA_LINE];
	cr_assert(read_line(k, line, sizeof(line), sp_now_ms() + T_KAFKA_ANSWER_MS) == 0,
	          "mock-kafka: no answer to \"%.*s\" within %d ms", n - 1, cmd, T_KAFKA_ANSWER_MS);
	if (ans)
		snprintf(ans, size, "%s", line);
	if (!strcmp(line, "ok"))
		return 0;
	cr_assert(!strncmp(line, "error: ", 7), "mock-kafka: answer \"%s\" is neither ok nor error", line);
	return -1;
}

int t_kafka_cmd(t_kafka_t *k, char *ans, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = vcmd(k, ans, size, fmt, ap);
	va_end(ap);
	return rc;
}

void t_kafka_ok(t_kafka_t *k, const char *fmt, ...)
{
	char ans[T_KAFKA_LINE];
	va_list ap;
	va_start(ap, fmt);
	int rc = vcmd(k, ans, sizeof(ans), fmt, ap);
	va_end(ap);
	cr_assert(rc == 0, "mock-kafka: %s", ans);
}

int t_kafka_stop(t_kafka_t *k)
{
	if (!k)
		return -1;
	forget(k);
	int st = -1;
	if (k->pid > 0) {
		kill(k->pid, SIGTERM);
		int64_t deadline = sp_now_ms() + T_KAFKA_STOP_MS;
		while ((st = reap(k, WNOHANG)) < 0 && sp_now_ms() < deadline)
			t_sleep_ms(T_KAFKA_POLL_MS);
		if (st < 0) {
			kill(k->pid, SIGKILL);
			st = reap(k, 0);
		}
	}
	close(k->in_fd);
	close(k->out_fd);
	t_rmrf(k->dir);
	free(k);
	return st;
}

void t_kafka_fini(void)
{
	for (int i = 0; i < T_KAFKA_MAX; i++)
		if (running[i])
			t_kafka_stop(running[i]);
}
