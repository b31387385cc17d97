/* registry.c - the one table that knows every connector and operator.
 *
 * The engine finds sources, stores, sinks and handlers by name through these
 * functions; engine/ itself includes nothing from connectors/ or operators/.
 */
#include "sp_registry.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const sp_source_ops_t sp_source_gen, sp_source_push, sp_source_log;
extern const sp_store_ops_t sp_store_file, sp_store_redis, sp_store_rediss;
extern const sp_sink_ops_t sp_sink_log;
#ifdef SPATE_HAVE_KAFKA /* meson defines it when librdkafka is found */
extern const sp_sink_ops_t sp_sink_kafka;
#define SP_KAFKA_SINKS &sp_sink_kafka,
#else
#define SP_KAFKA_SINKS
#endif
#ifdef SPATE_HAVE_KAFKA /* the Kafka source and the consumer-group offset store */
extern const sp_source_ops_t sp_source_kafka;
extern const sp_store_ops_t sp_store_kafka;
#define SP_KAFKA_SOURCES &sp_source_kafka,
#define SP_KAFKA_STORES &sp_store_kafka,
#else
#define SP_KAFKA_SOURCES
#define SP_KAFKA_STORES
#endif
#ifdef SPATE_HAVE_KINESIS /* the Kinesis source, sink and DLQ */
extern const sp_source_ops_t sp_source_kinesis;
extern const sp_sink_ops_t sp_sink_kinesis;
#define SP_KINESIS_SOURCES &sp_source_kinesis,
#define SP_KINESIS_SINKS &sp_sink_kinesis,
#else
#define SP_KINESIS_SOURCES
#define SP_KINESIS_SINKS
#endif
extern const sp_operator_ops_t sp_op_noop, sp_op_fraud, sp_op_sleep, sp_op_spin, sp_op_fail_if,
    sp_op_journal, sp_op_route, sp_op_sensor;

static const sp_source_ops_t *const sources[] = {&sp_source_gen, &sp_source_push, &sp_source_log, SP_KAFKA_SOURCES SP_KINESIS_SOURCES NULL};
#ifdef SPATE_HAVE_DYNAMODB /* the DynamoDB lease store, built with the AWS client */
extern const sp_store_ops_t sp_store_dynamodb;
#define SP_DYNAMODB_STORES &sp_store_dynamodb,
#else
#define SP_DYNAMODB_STORES
#endif
static const sp_store_ops_t *const stores[] = {&sp_store_file, &sp_store_redis, &sp_store_rediss, SP_DYNAMODB_STORES SP_KAFKA_STORES NULL};
static const sp_sink_ops_t *const sinks[] = {&sp_sink_log, SP_KAFKA_SINKS SP_KINESIS_SINKS NULL};
static const sp_operator_ops_t *const operators[] = {&sp_op_noop, &sp_op_fraud, &sp_op_sleep,
                                                     &sp_op_spin, &sp_op_fail_if, &sp_op_journal,
                                                     &sp_op_route, &sp_op_sensor, NULL};

#define FIND(list, name)                                                                          \
	do {                                                                                      \
		for (size_t i = 0; list[i]; i++)                                                  \
			if (!strcmp(list[i]->name, name))                                         \
				return list[i];                                                   \
		return NULL;                                                                      \
	} while (0)

const sp_source_ops_t *sp_find_source(const char *name) { FIND(sources, name); }
const sp_store_ops_t *sp_find_store(const char *name) { FIND(stores, name); }
const sp_sink_ops_t *sp_find_sink(const char *name) { FIND(sinks, name); }
const sp_operator_ops_t *sp_find_operator(const char *name) { FIND(operators, name); }

const sp_source_ops_t *const *sp_sources(void) { return sources; }
const sp_store_ops_t *const *sp_stores(void) { return stores; }
const sp_sink_ops_t *const *sp_sinks(void) { return sinks; }
const sp_operator_ops_t *const *sp_operators(void) { return operators; }

/* "a, b:ARG, c" from the syntax (else the name) of each entry of a NULL-terminated list,
 * into buf (static storage, built once; the lists are constant). */
#define KINDS(list, buf)                                                                          \
	do {                                                                                      \
		size_t n_ = 0;                                                                    \
		for (size_t i = 0; list[i] && n_ < sizeof(buf); i++)                              \
			n_ += (size_t)snprintf(buf + n_, sizeof(buf) - n_, "%s%s", i ? ", " : "",    \
			                       list[i]->syntax ? list[i]->syntax : list[i]->name);        \
	} while (0)

static char kinds_source[256], kinds_store[256], kinds_sink[256], kinds_op[512];
static pthread_once_t kinds_once = PTHREAD_ONCE_INIT;

static void build_kinds(void)
{
	KINDS(sources, kinds_source);
	KINDS(stores, kinds_store);
	size_t n = strlen(kinds_store);
	snprintf(kinds_store + n, sizeof(kinds_store) - n, ", none");
	KINDS(sinks, kinds_sink);
	KINDS(operators, kinds_op);
}

const char *sp_registry_kinds(const char *kind)
{
	pthread_once(&kinds_once, build_kinds);
	if (!strcmp(kind, "source"))
		return kinds_source;
	if (!strcmp(kind, "store"))
		return kinds_store;
	if (!strcmp(kind, "dlq") || !strcmp(kind, "sink"))
		return kinds_sink;
	return kinds_op;
}

/* Find the store uri names and open it: through open_readonly when readonly is set and
 * the store has one, else through open. */
static int open_uri(const char *uri, const char *ns, const spate_conf_t *conf, sp_store_t *st, bool readonly,
                    char *errstr, size_t size)
{
	char name[64];
	const char *arg = sp_split_uri(uri, name, sizeof(name));
	const sp_store_ops_t *ops = sp_find_store(name);
	if (!ops)
		return sp_err(errstr, size, SPATE_ERR_UNKNOWN, "store: unknown kind \"%s\" in \"%s\" (allowed: %s)", name,
		              uri, sp_registry_kinds("store"));
	memset(st, 0, sizeof(*st));
	st->ops = ops;
	st->arg = arg;
	st->ns = ns;
	st->conf = conf;
	if (readonly && ops->version >= 2 && ops->open_readonly)
		return ops->open_readonly(st, errstr, size);
	return ops->open(st, errstr, size);
}

int sp_store_open_uri(const char *uri, sp_store_t *st, char *errstr, size_t size)
{
	return open_uri(uri, NULL, NULL, st, false, errstr, size);
}

int sp_store_open_uri_readonly(const char *uri, sp_store_t *st, char *errstr, size_t size)
{
	return open_uri(uri, NULL, NULL, st, true, errstr, size);
}

int sp_store_open_uri_ns(const char *uri, const char *ns, const spate_conf_t *conf, bool readonly, sp_store_t *st,
                         char *errstr, size_t size)
{
	return open_uri(uri, ns, conf, st, readonly, errstr, size);
}
