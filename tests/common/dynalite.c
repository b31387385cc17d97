/* dynalite.c - Criterion helpers for the DynamoDB store's tests (dynalite.h). */
#include "tests/common/dynalite.h"

#include "engine/engine.h"
#include "tests/common/engine.h"
#include "tests/common/util.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

enum {
	T_DYN_READY_MS = 30000, /* node and dynalite start within this (a busy machine) */
	T_DYN_STOP_MS = 10000,  /* SIGTERM, then SIGKILL */
	T_DYN_ACTIVE_MS = 30000,
	T_DYN_MAX = 4,
};

#define T_DYN_KEY_ID "AKIAIOSFODNN7EXAMPLE"
#define T_DYN_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define T_DYN_REGION "us-east-1"

struct t_dyn {
	pid_t pid;
	int in_fd, out_fd;
	char endpoint[300];
};

static t_dyn_t *running[T_DYN_MAX];

t_dyn_t *t_dynalite_start(void)
{
	const char *mods = getenv("SPATE_KINESALITE_MODULES");
	const char *src = getenv("SPATE_SOURCE_DIR");
	char script[1024], check[1200], dflt[1024];
	if (!src || !*src)
		src = ".";
	snprintf(script, sizeof(script), "%s/tests/tools/dynalite.js", src);
	if (!mods || !*mods) { /* run outside meson test: the repository's .deps */
		snprintf(dflt, sizeof(dflt), "%s/.deps/node/node_modules", src);
		mods = dflt;
	}
	snprintf(check, sizeof(check), "%s/dynalite/package.json", mods);
	t_require(
	    access(check, R_OK) == 0,
	    "dynalite is not installed in %s: run scripts/deps.sh (it installs nodejs, npm and dynalite)",
	    mods);
	int slot = -1;
	for (int i = 0; i < T_DYN_MAX && slot < 0; i++)
		if (!running[i])
			slot = i;
	t_require(slot >= 0, "more than %d dynalites at once", T_DYN_MAX);
	t_dyn_t *d = calloc(1, sizeof(*d));
	t_require(d);
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
	d->pid = pid;
	d->in_fd = in[1];
	d->out_fd = out[0];
	running[slot] = d;
	/* the ready line */
	char line[256];
	size_t n = 0;
	int64_t deadline = sp_now_ms() + T_DYN_READY_MS;
	while (!memchr(line, '\n', n)) {
		int64_t left = deadline - sp_now_ms();
		t_require(left > 0 && n < sizeof(line) - 1,
		          "dynalite (node %s) printed no ready line within %d ms", script, T_DYN_READY_MS);
		struct pollfd p = {.fd = d->out_fd, .events = POLLIN};
		int r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		t_require(r > 0, "dynalite printed no ready line within %d ms", T_DYN_READY_MS);
		ssize_t k = read(d->out_fd, line + n, sizeof(line) - 1 - n);
		t_require(k > 0, "dynalite exited before it was ready (node %s)", script);
		n += (size_t)k;
	}
	line[n] = 0;
	*strchr(line, '\n') = 0;
	const char *pre = "dynalite listening on 127.0.0.1:";
	t_require(!strncmp(line, pre, strlen(pre)), "dynalite said \"%s\"", line);
	snprintf(d->endpoint, sizeof(d->endpoint), "http://127.0.0.1:%s", line + strlen(pre));
	setenv("AWS_ACCESS_KEY_ID", T_DYN_KEY_ID, 1);
	setenv("AWS_SECRET_ACCESS_KEY", T_DYN_SECRET, 1);
	unsetenv("AWS_SESSION_TOKEN");
	setenv("AWS_REGION", T_DYN_REGION, 1);
	setenv("AWS_ENDPOINT_URL_DYNAMODB", d->endpoint, 1);
	return d;
}

const char *t_dyn_endpoint(const t_dyn_t *d)
{
	return d->endpoint;
}

void t_dynalite_stop(t_dyn_t *d)
{
	if (!d)
		return;
	for (int i = 0; i < T_DYN_MAX; i++)
		if (running[i] == d)
			running[i] = NULL;
	close(d->in_fd); /* dynalite.js exits when its stdin closes */
	kill(d->pid, SIGTERM);
	int st;
	int64_t deadline = sp_now_ms() + T_DYN_STOP_MS;
	while (waitpid(d->pid, &st, WNOHANG) == 0) {
		if (sp_now_ms() >= deadline) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, &st, 0);
			break;
		}
		t_sleep_ms(10);
	}
	close(d->out_fd);
	free(d);
}

void t_dynalite_fini(void)
{
	for (int i = 0; i < T_DYN_MAX; i++)
		if (running[i])
			t_dynalite_stop(running[i]);
}

/* ---- the API ---------------------------------------------------------------------- */

typedef struct buf {
	char *p;
	size_t n;
} buf_t;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userp)
{
	buf_t *b = userp;
	size_t n = size * nmemb;
	char *q = realloc(b->p, b->n + n + 1);
	if (!q)
		return 0;
	memcpy(q + b->n, ptr, n);
	b->p = q;
	b->n += n;
	b->p[b->n] = 0;
	return n;
}

long t_dyn_call(const t_dyn_t *d, const char *op, const char *body, char **out)
{
	CURL *e = curl_easy_init();
	t_require(e);
	char target[128], url[320];
	snprintf(target, sizeof(target), "X-Amz-Target: DynamoDB_20120810.%s", op);
	snprintf(url, sizeof(url), "%s/", d->endpoint);
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/x-amz-json-1.0");
	h = curl_slist_append(h, target);
	buf_t b = {0};
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_AWS_SIGV4, "aws:amz:" T_DYN_REGION ":dynamodb");
	curl_easy_setopt(e, CURLOPT_USERPWD, T_DYN_KEY_ID ":" T_DYN_SECRET);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
	long status = 0;
	if (curl_easy_perform(e) == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	if (out)
		*out = b.p;
	else
		free(b.p);
	return status;
}

char *t_dyn_ok(const t_dyn_t *d, const char *op, const char *fmt, ...)
{
	char *body;
	va_list ap;
	va_start(ap, fmt);
	t_require(vasprintf(&body, fmt, ap) >= 0);
	va_end(ap);
	char *out = NULL;
	long st = t_dyn_call(d, op, body, &out);
	t_require(st == 200, "%s %s: HTTP %ld: %s", op, body, st, out ? out : "(no body)");
	free(body);
	return out;
}

void t_dyn_create_table(const t_dyn_t *d, const char *table)
{
	free(t_dyn_ok(d, "CreateTable",
	              "{\"TableName\":\"%s\",\"AttributeDefinitions\":[{\"AttributeName\":\"leaseKey\","
	              "\"AttributeType\":\"S\"}],\"KeySchema\":[{\"AttributeName\":\"leaseKey\",\"KeyType\":"
	              "\"HASH\"}],\"BillingMode\":\"PAY_PER_REQUEST\"}",
	              table));
	int64_t deadline = sp_now_ms() + T_DYN_ACTIVE_MS;
	for (;;) {
		char *r = t_dyn_ok(d, "DescribeTable", "{\"TableName\":\"%s\"}", table);
		bool active = strstr(r, "\"TableStatus\":\"ACTIVE\"") != NULL;
		free(r);
		if (active)
			return;
		t_require(sp_now_ms() < deadline, "table %s is not ACTIVE within %d ms", table,
		          T_DYN_ACTIVE_MS);
		t_sleep_ms(20);
	}
}

void t_dyn_empty_table(const t_dyn_t *d, const char *table)
{
	char *r = t_dyn_ok(d, "Scan", "{\"TableName\":\"%s\",\"ConsistentRead\":true}", table);
	json_t *j = json_loads(r, 0, NULL);
	free(r);
	t_require(j, "Scan: not JSON");
	size_t i;
	json_t *it;
	json_array_foreach(json_object_get(j, "Items"), i, it)
	{
		json_t *key = json_pack("{s:O}", "leaseKey", json_object_get(it, "leaseKey"));
		char *ks = json_dumps(key, JSON_COMPACT);
		free(t_dyn_ok(d, "DeleteItem", "{\"TableName\":\"%s\",\"Key\":%s}", table, ks));
		free(ks);
		json_decref(key);
	}
	json_decref(j);
}

char *t_dyn_attr(const t_dyn_t *d, const char *table, const char *key, const char *attr)
{
	json_t *k = json_string(key);
	char *ks = json_dumps(k, JSON_ENCODE_ANY);
	json_decref(k);
	char *r = t_dyn_ok(d, "GetItem",
	                   "{\"TableName\":\"%s\",\"ConsistentRead\":true,\"Key\":{\"leaseKey\":{\"S\":%s}}}",
	                   table, ks);
	free(ks);
	json_t *j = json_loads(r, 0, NULL);
	free(r);
	t_require(j, "GetItem: not JSON");
	json_t *a = json_object_get(json_object_get(j, "Item"), attr);
	const char *v = json_string_value(json_object_get(a, "S"));
	if (!v)
		v = json_string_value(json_object_get(a, "N"));
	char *res = v ? strdup(v) : NULL;
	json_decref(j);
	return res;
}
