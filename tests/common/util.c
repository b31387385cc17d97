/* util.c - helpers shared by the tests. */
#include "tests/common/util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
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
