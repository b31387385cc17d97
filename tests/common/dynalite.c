/* dynalite.c - Criterion helpers for the DynamoDB store's tests (dynalite.h). */
#include "tests/common/dynalite.h"

#include "engine/engine.h"
#include "tests/common/awsapi.h"
#include "tests/common/engine.h"
#include "tests/common/util.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	t_node_t node;
	char endpoint[T_NODE_LINE + 16];
};

static t_dyn_t *running[T_DYN_MAX];

t_dyn_t *t_dynalite_start(void)
{
	int slot = -1;
	for (int i = 0; i < T_DYN_MAX && slot < 0; i++)
		if (!running[i])
			slot = i;
	t_require(slot >= 0, "more than %d dynalites at once", T_DYN_MAX);
	t_dyn_t *d = calloc(1, sizeof(*d));
	t_require(d);
	char line[T_NODE_LINE];
	t_node_start(&d->node, "dynalite", line, sizeof(line), T_DYN_READY_MS);
	running[slot] = d;
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
	t_node_stop(&d->node, T_DYN_STOP_MS);
	free(d);
}

void t_dynalite_fini(void)
{
	for (int i = 0; i < T_DYN_MAX; i++)
		if (running[i])
			t_dynalite_stop(running[i]);
}

/* ---- the API ---------------------------------------------------------------------- */

static const t_aws_api_t dynamodb_api = {
    .target = "DynamoDB_20120810",
    .content_type = "application/x-amz-json-1.0",
    .sigv4 = "aws:amz:" T_DYN_REGION ":dynamodb",
    .userpwd = T_DYN_KEY_ID ":" T_DYN_SECRET,
};

long t_dyn_call(const t_dyn_t *d, const char *op, const char *body, char **out)
{
	return t_aws_call(&dynamodb_api, d->endpoint, op, body, out);
}

char *t_dyn_ok(const t_dyn_t *d, const char *op, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *out = t_aws_vok(&dynamodb_api, d->endpoint, op, fmt, ap);
	va_end(ap);
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
