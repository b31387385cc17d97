/* kinesalite.c - Criterion helpers for Kinesis tests: kinesalite as a child process and
 * direct calls of the Kinesis API. See kinesalite.h. Failures are t_require (engine.h):
 * the helpers also run on t_engine_run's during thread. */
#include "engine/engine.h"
#include "tests/common/awsapi.h"
#include "tests/common/engine.h"
#include "tests/common/kinesalite.h"
#include "tests/common/util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
	T_KIN_READY_MS = 30000,  /* node and kinesalite start within this (ASan, a busy machine) */
	T_KIN_ANSWER_MS = 15000, /* a command's answer */
	T_KIN_STOP_MS = 10000,   /* SIGTERM, then SIGKILL */
	T_KIN_ACTIVE_MS = 30000, /* a stream becomes ACTIVE within this */
	T_KIN_MAX = 4,
};

struct t_kin {
	t_node_t node;
	char endpoint[T_NODE_LINE + 16];
};

static t_kin_t *running[T_KIN_MAX];

void t_kin_env(void)
{
	setenv("AWS_ACCESS_KEY_ID", T_KIN_KEY_ID, 1);
	setenv("AWS_SECRET_ACCESS_KEY", T_KIN_SECRET, 1);
	unsetenv("AWS_SESSION_TOKEN");
	setenv("AWS_REGION", T_KIN_REGION, 1);
}

t_kin_t *t_kinesalite_start(void)
{
	int slot = -1;
	for (int i = 0; i < T_KIN_MAX && slot < 0; i++)
		if (!running[i])
			slot = i;
	t_require(slot >= 0, "more than %d kinesalites at once", T_KIN_MAX);
	t_kin_t *k = calloc(1, sizeof(*k));
	t_require(k);
	char line[T_NODE_LINE];
	t_node_start(&k->node, "kinesalite", line, sizeof(line), T_KIN_READY_MS);
	running[slot] = k;
	const char *pre = "kinesalite listening on ";
	t_require(!strncmp(line, pre, strlen(pre)), "kinesalite said \"%s\"", line);
	t_require(!strncmp(line + strlen(pre), "127.0.0.1:", 10), "kinesalite listens on %s, not 127.0.0.1",
	          line);
	snprintf(k->endpoint, sizeof(k->endpoint), "http://%s", line + strlen(pre));
	t_kin_env();
	return k;
}

const char *t_kin_endpoint(const t_kin_t *k)
{
	return k->endpoint;
}

void t_kin_skew(t_kin_t *k, int64_t ms)
{
	char cmd[64], line[T_NODE_LINE];
	int n = snprintf(cmd, sizeof(cmd), "skew %lld\n", (long long)ms);
	t_require(write(k->node.in_fd, cmd, (size_t)n) == n, "kinesalite: cannot send a command");
	t_require(t_node_read_line(&k->node, line, sizeof(line), T_KIN_ANSWER_MS) == 0,
	          "kinesalite: no answer");
	t_require(!strcmp(line, "ok"), "kinesalite answered \"%s\"", line);
}

void t_kinesalite_stop(t_kin_t *k)
{
	if (!k)
		return;
	for (int i = 0; i < T_KIN_MAX; i++)
		if (running[i] == k)
			running[i] = NULL;
	t_node_stop(&k->node, T_KIN_STOP_MS);
	free(k);
}

void t_kinesalite_fini(void)
{
	for (int i = 0; i < T_KIN_MAX; i++)
		if (running[i])
			t_kinesalite_stop(running[i]);
}

/* ---- the API ---------------------------------------------------------------------- */

static const t_aws_api_t kinesis_api = {
    .target = "Kinesis_20131202",
    .content_type = "application/x-amz-json-1.1",
    .sigv4 = "aws:amz:" T_KIN_REGION ":kinesis",
    .userpwd = T_KIN_KEY_ID ":" T_KIN_SECRET,
};

long t_kin_call(t_kin_t *k, const char *op, const char *body, char **out)
{
	return t_aws_call(&kinesis_api, k->endpoint, op, body, out);
}

char *t_kin_ok(t_kin_t *k, const char *op, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *out = t_aws_vok(&kinesis_api, k->endpoint, op, fmt, ap);
	va_end(ap);
	return out;
}

void t_kin_wait_active(t_kin_t *k, const char *stream)
{
	int64_t deadline = sp_now_ms() + T_KIN_ACTIVE_MS;
	for (;;) {
		char *r = t_kin_ok(k, "DescribeStreamSummary", "{\"StreamName\":\"%s\"}", stream);
		bool active = strstr(r, "\"StreamStatus\":\"ACTIVE\"") != NULL;
		free(r);
		if (active)
			return;
		t_require(sp_now_ms() < deadline, "stream %s is not ACTIVE within %d ms", stream,
		          T_KIN_ACTIVE_MS);
		t_sleep_ms(20);
	}
}

void t_kin_create(t_kin_t *k, const char *stream, int shards)
{
	free(t_kin_ok(k, "CreateStream", "{\"StreamName\":\"%s\",\"ShardCount\":%d}", stream, shards));
	t_kin_wait_active(k, stream);
}

char *t_kin_put(t_kin_t *k, const char *stream, const char *key, const void *data, size_t len)
{
	char *b64 = malloc(len * 4 / 3 + 8);
	t_require(b64);
	size_t n = 0;
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const uint8_t *s = data;
	size_t i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		b64[n++] = al[v >> 18];
		b64[n++] = al[(v >> 12) & 63];
		b64[n++] = al[(v >> 6) & 63];
		b64[n++] = al[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < len ? (uint32_t)s[i + 1] << 8 : 0);
		b64[n++] = al[v >> 18];
		b64[n++] = al[(v >> 12) & 63];
		b64[n++] = i + 1 < len ? al[(v >> 6) & 63] : '=';
		b64[n++] = '=';
	}
	b64[n] = 0;
	char *r = t_kin_ok(k, "PutRecord", "{\"StreamName\":\"%s\",\"PartitionKey\":\"%s\",\"Data\":\"%s\"}",
	                   stream, key, b64);
	free(b64);
	json_t *j = json_loads(r, 0, NULL);
	t_require(j, "PutRecord reply %s", r);
	char *seq = strdup(json_string_value(json_object_get(j, "SequenceNumber")));
	json_decref(j);
	free(r);
	return seq;
}

int t_kin_shards(t_kin_t *k, const char *stream, t_shard_t *out, int max)
{
	char *r = t_kin_ok(k, "ListShards", "{\"StreamName\":\"%s\"}", stream);
	json_t *j = json_loads(r, 0, NULL);
	t_require(j, "ListShards reply %s", r);
	json_t *arr = json_object_get(j, "Shards"), *sh;
	size_t i;
	int n = 0;
	json_array_foreach(arr, i, sh)
	{
		t_require(n < max);
		t_shard_t *s = &out[n++];
		memset(s, 0, sizeof(*s));
		snprintf(s->id, sizeof(s->id), "%s", json_string_value(json_object_get(sh, "ShardId")));
		const char *p = json_string_value(json_object_get(sh, "ParentShardId"));
		const char *a = json_string_value(json_object_get(sh, "AdjacentParentShardId"));
		snprintf(s->parent, sizeof(s->parent), "%s", p ? p : "");
		snprintf(s->adj, sizeof(s->adj), "%s", a ? a : "");
		json_t *hr = json_object_get(sh, "HashKeyRange");
		snprintf(s->start_hash, sizeof(s->start_hash), "%s",
		         json_string_value(json_object_get(hr, "StartingHashKey")));
		snprintf(s->end_hash, sizeof(s->end_hash), "%s",
		         json_string_value(json_object_get(hr, "EndingHashKey")));
		s->closed = json_object_get(json_object_get(sh, "SequenceNumberRange"),
		                            "EndingSequenceNumber") != NULL;
	}
	json_decref(j);
	free(r);
	return n;
}

long t_kin_read_shard(t_kin_t *k, const char *stream, const char *shard, char *last, size_t size)
{
	if (last)
		last[0] = 0;
	char *r =
	    t_kin_ok(k, "GetShardIterator",
	             "{\"StreamName\":\"%s\",\"ShardId\":\"%s\",\"ShardIteratorType\":\"TRIM_HORIZON\"}",
	             stream, shard);
	json_t *j = json_loads(r, 0, NULL);
	char *it = strdup(json_string_value(json_object_get(j, "ShardIterator")));
	json_decref(j);
	free(r);
	long n = 0;
	while (it) {
		r = t_kin_ok(k, "GetRecords", "{\"ShardIterator\":\"%s\",\"Limit\":10000}", it);
		free(it);
		it = NULL;
		j = json_loads(r, 0, NULL);
		t_require(j);
		json_t *recs = json_object_get(j, "Records");
		size_t cnt = json_array_size(recs);
		n += (long)cnt;
		if (cnt && last)
			snprintf(last, size, "%s",
			         json_string_value(
			             json_object_get(json_array_get(recs, cnt - 1), "SequenceNumber")));
		const char *next = json_string_value(json_object_get(j, "NextShardIterator"));
		if (next && cnt)
			it = strdup(next);
		json_decref(j);
		free(r);
	}
	return n;
}
