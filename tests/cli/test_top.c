/* test_top.c - tests `spate top` (cli/cmd_top.c) against a running `spate run` that
 * serves metrics: one view (--once) names the pipeline, a positive records/s and every
 * partition with its lag; without an endpoint it fails naming the address. */
#include <spate/spate.h>

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/common/util.h"

/* How long the pipeline may take to serve its endpoint. */
#define READY_MS 20000

/* A port that was free a moment ago (the kernel's pick for port 0). */
static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(sa);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

Test(top, shows_a_running_pipeline)
{
	char listen[128], addr[64];
	int port = free_port();
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	snprintf(listen, sizeof(listen), "metrics.listen=%s", addr);
	char *run[] = {(char *)t_spate_cli(),
	               "run",
	               "-X",
	               "source=gen",
	               "-X",
	               "gen.records=0",
	               "-X",
	               "gen.rate=20000",
	               "-X",
	               "gen.partitions=3",
	               "-X",
	               "handler=noop",
	               "-X",
	               listen,
	               NULL};
	int pid = t_spawn(run, NULL, NULL, 0);
	cr_assert_gt(pid, 0);
	char *top[] = {(char *)t_spate_cli(), "top", addr, "--once", "--interval", "0.5", NULL};
	char *out = NULL, *err = NULL;
	int st = -1;
	for (int64_t until = t_now_ms() + READY_MS; t_now_ms() < until;) {
		free(out), free(err);
		if ((st = t_run(top, &out, &err)) == 0)
			break;
		t_sleep_ms(100);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cr_assert_eq(st, 0, "spate top: %s%s", out, err);
	cr_assert(strstr(out, "noop: gen -> noop"), "%s", out);
	const char *r = strstr(out, "records/s ");
	cr_assert(r && strtod(r + 10, NULL) > 0, "%s", out);
	for (int p = 0; p < 3; p++) {
		char name[32];
		snprintf(name, sizeof(name), "\ngen/gen/%d ", p);
		cr_assert(strstr(out, name), "no partition %d:\n%s", p, out);
	}
	free(out), free(err);
	/* nothing serves there any more */
	cr_assert_eq(t_run(top, &out, &err), 1);
	cr_assert(strstr(err, addr), "%s", err);
	free(out), free(err);
}
