/* redis.c - a redis-server for the tests (redis.h). */
#include "tests/common/redis.h"

#include "tests/common/util.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(fd >= 0);
	struct sockaddr_in a = {
	    .sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	socklen_t l = sizeof(a);
	cr_assert(getsockname(fd, (struct sockaddr *)&a, &l) == 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* Does our redis-server answer on r->port, its data loaded? INFO's process_id must be our
 * child's pid: a test running alongside (Criterion --jobs) may have been handed the same
 * free port, and its server must never be taken for ours. INFO answers while a restarted
 * server still loads its AOF, when every data command gets LOADING: ready means loading:0,
 * except for a server slowed to load (key_load_delay_us), whose test wants to meet it. */
static bool ping(const t_redis_t *r)
{
	struct timeval tv = {1, 0};
	redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
	bool ok = false;
	if (c && !c->err) {
		redisReply *rep = redisCommand(c, "INFO");
		if (rep && rep->type == REDIS_REPLY_STRING) {
			const char *pid = strstr(rep->str, "process_id:");
			ok = pid && atol(pid + strlen("process_id:")) == (long)r->pid &&
			     (r->key_load_delay_us || strstr(rep->str, "\nloading:0"));
		}
		if (rep)
			freeReplyObject(rep);
	}
	if (c)
		redisFree(c);
	return ok;
}

/* redis-server's path, from PATH. */
static const char *server_path(void)
{
	static char buf[512];
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");
		snprintf(buf, sizeof(buf), "%.*s/redis-server", (int)n, path);
		if (access(buf, X_OK) == 0)
			return buf;
		path += n + (path[n] == ':');
	}
	cr_assert_fail("redis-server is not installed (scripts/deps.sh installs it)");
	return NULL;
}

/* Start redis-server on r->port; false when it exited at start (the port was taken). */
static bool spawn(t_redis_t *r)
{
	char port[16], logf[300], delay[16];
	snprintf(port, sizeof(port), "%d", r->port);
	snprintf(logf, sizeof(logf), "%s/redis.log", r->dir);
	snprintf(delay, sizeof(delay), "%d", r->key_load_delay_us);
	char tport[16], tcert[400], tkey[400], tca[400];
	snprintf(tport, sizeof(tport), "%d", r->tls_port);
	snprintf(tcert, sizeof(tcert), "%s/server.crt", r->tls_dir);
	snprintf(tkey, sizeof(tkey), "%s/server.key", r->tls_dir);
	snprintf(tca, sizeof(tca), "%s/ca.crt", r->tls_dir);
	char *tls_args[] = {"--tls-port", tport, "--tls-cert-file", tcert, "--tls-key-file", tkey,
	                    "--tls-ca-cert-file", tca, "--tls-auth-clients", r->tls_auth_clients ? "yes" : "no"};
	char *argv[40] = {(char *)server_path(),
	                "--port",
	                port,
	                "--bind",
	                "127.0.0.1",
	                "--daemonize",
	                "no",
	                "--dir",
	                r->dir,
	                "--save",
	                "",
	                "--appendonly",
	                "yes",
	                "--appendfsync",
	                "always",
	                "--protected-mode",
	                "no",
	                r->key_load_delay_us ? "--key-load-delay" : NULL,
	                delay,
	                NULL};
	if (r->tls_port) {
		int n = 0;
		while (argv[n])
			n++;
		for (size_t i = 0; i < sizeof(tls_args) / sizeof(tls_args[0]); i++)
			argv[n++] = tls_args[i];
		argv[n] = NULL;
	}
	r->pid = t_spawn(argv, logf, logf, 0);
	cr_assert(r->pid > 0, "cannot start redis-server");
	int64_t until = t_now_ms() + 20000;
	while (!ping(r)) {
		int st;
		if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
			r->pid = 0;
			return false;
		}
		cr_assert(t_now_ms() < until, "redis-server on port %d did not answer within 20 s (see %s)",
		          r->port, logf);
		t_sleep_ms(50);
	}
	return true;
}

static void start_in(t_redis_t *r)
{
	/* a free port may be taken by another test's server before ours binds it: try again */
	for (int attempt = 0;; attempt++) {
		r->port = free_port();
		snprintf(r->uri, sizeof(r->uri), "redis://127.0.0.1:%d", r->port);
		if (r->tls_port) {
			do
				r->tls_port = free_port();
			while (r->tls_port == r->port);
			snprintf(r->tls_uri, sizeof(r->tls_uri), "rediss://127.0.0.1:%d", r->tls_port);
		}
		if (spawn(r))
			return;
		cr_assert(attempt < 5, "redis-server exited at start 6 times (see %s/redis.log)", r->dir);
	}
}

void t_redis_start(t_redis_t *r)
{
	memset(r, 0, sizeof(*r));
	t_mkdtemp(r->dir, sizeof(r->dir));
	start_in(r);
}

/* openssl with these arguments, in dir; asserts it succeeds. */
static void openssl(const char *dir, const char *args)
{
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "cd '%s' && openssl %s", dir, args);
	char *argv[] = {"sh", "-c", cmd, NULL};
	char *err = NULL;
	int rc = t_run(argv, NULL, &err);
	cr_assert_eq(rc, 0, "openssl %s: %s", args, err ? err : "");
	free(err);
}

#define T_EC_KEY "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

void t_redis_start_tls(t_redis_t *r, bool auth_clients)
{
	memset(r, 0, sizeof(*r));
	t_mkdtemp(r->dir, sizeof(r->dir));
	snprintf(r->tls_dir, sizeof(r->tls_dir), "%s/tls", r->dir);
	cr_assert(mkdir(r->tls_dir, 0700) == 0);
	char ext[400];
	snprintf(ext, sizeof(ext), "%s/server.ext", r->tls_dir);
	FILE *f = fopen(ext, "w");
	cr_assert(f);
	fputs("subjectAltName=IP:127.0.0.1\n", f);
	fclose(f);
	openssl(r->tls_dir, "req -x509 " T_EC_KEY " -keyout ca.key -out ca.crt -days 2 -subj /CN=spate-test-ca");
	openssl(r->tls_dir,
	        "req -x509 " T_EC_KEY " -keyout other-ca.key -out other-ca.crt -days 2 -subj /CN=spate-other-ca");
	openssl(r->tls_dir, "req " T_EC_KEY " -keyout server.key -out server.csr -subj /CN=127.0.0.1");
	openssl(r->tls_dir, "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt "
	                    "-days 2 -extfile server.ext");
	openssl(r->tls_dir, "req " T_EC_KEY " -keyout client.key -out client.csr -subj /CN=spate-client");
	openssl(r->tls_dir,
	        "x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 2");
	r->tls_port = 1;
	r->tls_auth_clients = auth_clients;
	start_in(r);
}

void t_redis_restart(t_redis_t *r, bool restart)
{
	if (r->pid > 0) {
		kill(r->pid, SIGTERM);
		int st;
		if (t_wait_exit(r->pid, 20000, &st) < 0)
			cr_log_warn("redis-server needed SIGKILL");
		r->pid = 0;
	}
	if (restart)
		cr_assert(spawn(r), "redis-server did not restart on port %d (see %s/redis.log)", r->port,
		          r->dir);
}

void t_redis_stop(t_redis_t *r)
{
	if (r->pid > 0) {
		kill(r->pid, SIGTERM);
		int st;
		t_wait_exit(r->pid, 10000, &st);
		r->pid = 0;
	}
	if (r->dir[0])
		t_rmrf(r->dir);
	r->dir[0] = 0;
}

char *t_redis_cmd(const t_redis_t *r, const char *fmt, ...)
{
	struct timeval tv = {5, 0};
	redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
	if (!c || c->err) {
		if (c)
			redisFree(c);
		return NULL;
	}
	va_list ap;
	va_start(ap, fmt);
	redisReply *rep = redisvCommand(c, fmt, ap);
	va_end(ap);
	char *out = NULL;
	if (rep) {
		if (rep->type == REDIS_REPLY_INTEGER) {
			char b[32];
			snprintf(b, sizeof(b), "%lld", rep->integer);
			out = strdup(b);
		} else if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS) {
			out = strdup(rep->str);
		} else if (rep->type == REDIS_REPLY_NIL) {
			out = strdup("");
		}
		freeReplyObject(rep);
	}
	redisFree(c);
	return out;
}
