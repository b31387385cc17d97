/* conf.c - key=value configuration: the one property table, validation, clear errors.
 *
 * Every key lives in props[] below with its type, range, default and a one-line doc.
 * docs/configuration.md is generated from this table (`spate config --markdown`) and a
 * test checks that the two agree. A value is checked when it is set, so a bad value is
 * reported with its key at once; checks that involve several keys run in
 * spate_engine_new() and name the keys too.
 *
 * Keys starting with "kafka." or "kinesis." are passed through to those connectors
 * unchecked here (librdkafka checks its own); they are kept in a small list.
 */
#include "engine/engine.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum prop_type { T_INT, T_BOOL, T_STR, T_ENUM, T_SIZE };

typedef struct prop {
	const char *name;
	enum prop_type type;
	int64_t min, max;
	const char *allowed; /* enums: "a|b|c" */
	const char *def;
	const char *doc;
} prop_t;

#define I64MAX INT64_MAX

/* The property table. Order is documentation order. */
static const prop_t props[] = {
    /* wiring */
    {"source", T_STR, 0, 0, NULL, "gen",
     "Where records come from: gen, push, log:DIR, kafka (topics, group.id, kafka.*)"},
    {"handler", T_STR, 0, 0, NULL, "noop",
     "What processes each batch: noop, fraud, sleep:MS, spin:US, fail-if:SUBSTRING, journal:PATH"},
    {"store", T_STR, 0, 0, NULL, "",
     "Checkpoint store: file:PATH, kafka (the consumer group), or none (every run starts at "
     "starting.position). Unset: the source's default: log:DIR keeps them in "
     "file:DIR/checkpoints/PIPELINE, kafka in the group; gen and push keep none"},
    {"pipeline.name", T_STR, 0, 0, NULL, "",
     "The pipeline's name: the default log store's file is named after it, so two pipelines on "
     "one log keep their own checkpoints (unset: the handler key with : and / as -, e.g. "
     "fraud, sleep-200)"},
    {"dlq", T_STR, 0, 0, NULL, "",
     "Dead-letter queue: log:DIR or kafka:TOPIC; empty = exhausted records are dropped, logged and counted"},
    {"stop.at.end", T_BOOL, 0, 1, NULL, "false",
     "Exit once every partition's checkpoint reaches the end noted at start (kcat -e)"},
    {"summary.json", T_STR, 0, 0, NULL, "", "Write the end-of-run summary as one JSON object to this path"},
    {"log.level", T_ENUM, 0, 0, "error|warn|info|debug", "info", "Log verbosity (stderr)"},
    /* batching and failure handling (Lambda ESM names) */
    {"batch.size", T_INT, 1, 10000, NULL, "100", "Max records per handler invocation (Lambda BatchSize)"},
    {"batch.max.bytes", T_SIZE, 1, I64MAX, NULL, "6291456",
     "Max key+value bytes per handler invocation (Lambda's 6 MB payload limit)"},
    {"starting.position", T_STR, 0, 0, NULL, "earliest",
     "Where a partition without a checkpoint starts: earliest, latest, at-timestamp:MS"},
    {"parallelization.factor", T_INT, 1, 1024, NULL, "1",
     "Lanes per partition; records are routed by XXH3(key) and keep order per key"},
    {"max.retry.attempts", T_INT, -1, 10000, NULL, "-1",
     "Retries of a failing record before the DLQ; -1 = until max.record.age.ms"},
    {"max.record.age.ms", T_INT, -1, 604800000, NULL, "-1",
     "A failed record older than this (stream timestamp) goes to the DLQ; -1 = forever"},
    {"retry.backoff.ms", T_INT, 0, 3600000, NULL, "100", "First retry delay (doubles each attempt, with jitter)"},
    {"retry.backoff.max.ms", T_INT, 0, 3600000, NULL, "10000", "Upper bound of the retry delay"},
    {"bisect.on.error", T_BOOL, 0, 1, NULL, "false",
     "Split a failing batch in halves to isolate poison records (splits do not use up retries)"},
    {"report.item.failures", T_BOOL, 0, 1, NULL, "false",
     "Honour item failures from the handler: retry from the first failed item of the lane"},
    /* concurrency and memory */
    {"max.concurrency", T_INT, 1, 1024, NULL, "2",
     "Most worker threads the autoscaler runs (Lambda MaximumPollers)"},
    {"min.concurrency", T_INT, 0, 1024, NULL, "1",
     "Fewest worker threads; 0 lets an idle pipeline scale to zero (the next record is a cold start)"},
    {"scale.down.idle.ms", T_INT, 0, 3600000, NULL, "1000",
     "Workers without work for this long are stopped (down to min.concurrency)"},
    {"stats.interval.ms", T_INT, 0, 3600000, NULL, "0",
     "Write one JSON line of stats this often (0 = off; spate run --stats sets 1000)"},
    {"stats.file", T_STR, 0, 0, NULL, "", "Where the stats lines go (empty = stderr)"},
    {"max.inflight.bytes", T_SIZE, 1, I64MAX, NULL, "268435456",
     "Fetched-but-not-DONE bytes above which the source pauses"},
    {"max.inflight.records", T_INT, 1, I64MAX, NULL, "4000000",
     "Fetched-but-not-DONE records above which the source pauses"},
    {"shutdown.timeout.ms", T_INT, 0, 3600000, NULL, "30000",
     "On stop, how long in-flight batches may take before the engine stops without them"},
    /* checkpoints */
    {"checkpoint.interval.ms", T_INT, 1, 3600000, NULL, "1000", "Flush checkpoints at least this often"},
    {"checkpoint.records", T_INT, 1, I64MAX, NULL, "1000000",
     "Flush checkpoints once this many records were DONE since the last flush"},
    /* gen source */
    {"gen.kind", T_ENUM, 0, 0, "fraud|sensor|bytes", "fraud",
     "gen: what records look like: JSON card transactions, JSON sensor readings, or random bytes"},
    {"gen.records", T_INT, 0, I64MAX, NULL, "1000000", "gen: records in all (0 = endless)"},
    {"gen.partitions", T_INT, 1, 4096, NULL, "4", "gen: partitions"},
    {"gen.keys", T_INT, 1, 100000000, NULL, "10000", "gen: distinct keys (card or sensor ids)"},
    {"gen.value.bytes", T_INT, 1, 16777216, NULL, "100", "gen: value size for gen.kind=bytes"},
    {"gen.rate", T_INT, 0, I64MAX, NULL, "0", "gen: records/s in all (0 = as fast as possible)"},
    {"gen.seed", T_INT, 0, I64MAX, NULL, "1", "gen: seed of the pre-generated pool (same seed, same records)"},
    {"gen.pool", T_INT, 1, 10000000, NULL, "65536", "gen: records in the pre-generated pool that is replayed"},
    /* push source */
    {"push.partitions", T_INT, 1, 4096, NULL, "1", "push: partitions the application pushes into"},
    /* fraud handler */
    {"fraud.amount.max", T_INT, 0, I64MAX, NULL, "5000", "fraud: flag transactions above this amount"},
    {"fraud.block.merchants", T_STR, 0, 0, NULL, "m-0666,m-1313",
     "fraud: comma-separated merchant ids that are flagged"},
    {"fraud.block.card.prefixes", T_STR, 0, 0, NULL, "4000-66",
     "fraud: comma-separated card number prefixes that are flagged"},
    /* embedded log */
    {"segment.bytes", T_SIZE, 65536, 1073741824, NULL, "134217728", "log: roll a segment past this size"},
    {"flush.ms", T_INT, 0, 3600000, NULL, "100", "log writer: fsync at least this often (0 = every append)"},
    {"flush.records", T_INT, 0, I64MAX, NULL, "10000", "log writer: fsync after this many records (0 = off)"},
    {"log.on.corruption", T_ENUM, 0, 0, "fail|skip", "fail",
     "log reader: on a bad batch with data after it, stop with an error or skip it (logged and counted)"},
    {"source.redrive", T_BOOL, 0, 1, NULL, "false",
     "log source: read a DLQ back (spate dlq redrive): drop spate.* headers, timestamps = now"},
    /* kafka source (every other kafka.* key goes to librdkafka without the prefix) */
    {"topics", T_STR, 0, 0, NULL, "", "kafka source: the topics to consume, a comma list"},
    {"group.id", T_STR, 0, 0, NULL, "", "kafka source: the consumer group (store=kafka commits to it)"},
};

#define NPROPS (sizeof(props) / sizeof(props[0]))

/* Prefixes whose keys pass through to a connector unchecked. */
static const char *const passthrough[] = {"kafka.", "kinesis.", NULL};

typedef struct extra {
	char *key, *val;
	struct extra *next;
} extra_t;

struct spate_conf_s {
	char *vals[NPROPS]; /* NULL = default */
	extra_t *extra;
};

static int prop_index(const char *key)
{
	for (size_t i = 0; i < NPROPS; i++)
		if (!strcmp(props[i].name, key))
			return (int)i;
	return -1;
}

static bool is_passthrough(const char *key)
{
	for (int i = 0; passthrough[i]; i++) {
		size_t n = strlen(passthrough[i]);
		if (!strncmp(key, passthrough[i], n) && key[n])
			return true;
	}
	return false;
}

spate_conf_t *spate_conf_new(void)
{
	return calloc(1, sizeof(spate_conf_t));
}

void spate_conf_destroy(spate_conf_t *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < NPROPS; i++)
		free(c->vals[i]);
	for (extra_t *x = c->extra, *n; x; x = n) {
		n = x->next;
		free(x->key);
		free(x->val);
		free(x);
	}
	free(c);
}

spate_conf_t *spate_conf_dup(const spate_conf_t *c)
{
	spate_conf_t *d = spate_conf_new();
	if (!d)
		return NULL;
	for (size_t i = 0; i < NPROPS; i++)
		if (c->vals[i] && !(d->vals[i] = strdup(c->vals[i])))
			goto fail;
	extra_t **tail = &d->extra;
	for (extra_t *x = c->extra; x; x = x->next) {
		extra_t *y = calloc(1, sizeof(*y));
		if (!y)
			goto fail;
		*tail = y;
		tail = &y->next;
		if (!(y->key = strdup(x->key)) || !(y->val = strdup(x->val)))
			goto fail;
	}
	return d;
fail:
	spate_conf_destroy(d);
	return NULL;
}

int sp_parse_size(const char *s, int64_t *out)
{
	if (!s || !*s || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s)
		return -1;
	int64_t mul = 1;
	switch (*end) {
	case 0:
		break;
	case 'k': case 'K': mul = 1LL << 10; end++; break;
	case 'm': case 'M': mul = 1LL << 20; end++; break;
	case 'g': case 'G': mul = 1LL << 30; end++; break;
	default:
		return -1;
	}
	if (*end)
		return -1;
	if (v < 0 ? v < INT64_MIN / mul : v > INT64_MAX / mul)
		return -1;
	*out = v * mul;
	return 0;
}

static int parse_int(const char *s, int64_t *out)
{
	if (!s || !*s || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end)
		return -1;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "yes") || !strcmp(s, "on"))
		*out = true;
	else if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "no") || !strcmp(s, "off"))
		*out = false;
	else
		return -1;
	return 0;
}

static bool enum_allows(const char *allowed, const char *v)
{
	size_t n = strlen(v);
	for (const char *p = allowed; p && *p;) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);
		if (len == n && !strncmp(p, v, n))
			return true;
		p = bar ? bar + 1 : NULL;
	}
	return false;
}

/* Checks of string keys whose syntax is known here. Connector-specific checks (that the
 * source's directory exists, ...) happen when it opens. */
static int check_string(const prop_t *p, const char *v, char *err, size_t sz)
{
	if (!strcmp(p->name, "source") || !strcmp(p->name, "handler") || !strcmp(p->name, "store") ||
	    !strcmp(p->name, "dlq")) {
		if (!*v && (!strcmp(p->name, "source") || !strcmp(p->name, "handler")))
			return sp_err(err, sz, SPATE_CONF_INVALID, "%s: must not be empty", p->name);
		if (!*v || (!strcmp(p->name, "store") && !strcmp(v, "none")))
			return 0;
		char name[64];
		const char *arg = sp_split_uri(v, name, sizeof(name));
		bool known = false;
		const char *kinds = "";
		if (!strcmp(p->name, "source")) {
			known = sp_find_source(name) != NULL;
			kinds = "gen, push, log:DIR, kafka";
		} else if (!strcmp(p->name, "handler")) {
			known = sp_find_operator(name) != NULL;
			kinds = "noop, fraud, sleep:MS, spin:US, fail-if:SUBSTRING, journal:PATH";
		} else if (!strcmp(p->name, "store")) {
			known = sp_find_store(name) != NULL;
			kinds = "file:PATH, kafka, none";
		} else {
			known = sp_find_sink(name) != NULL;
			kinds = "log:DIR, kafka:TOPIC";
		}
		if (!known)
			return sp_err(err, sz, SPATE_CONF_INVALID, "%s: unknown kind \"%s\" in \"%s\" (allowed: %s)",
			              p->name, name, v, kinds);
		(void)arg;
		return 0;
	}
	if (!strcmp(p->name, "starting.position")) {
		if (!strcmp(v, "earliest") || !strcmp(v, "latest"))
			return 0;
		int64_t ms;
		if (!strncmp(v, "at-timestamp:", 13) && !parse_int(v + 13, &ms) && ms >= 0)
			return 0;
		return sp_err(err, sz, SPATE_CONF_INVALID,
		              "%s: \"%s\" is not allowed (earliest, latest, at-timestamp:MS)", p->name, v);
	}
	return 0;
}

static int check_value(const prop_t *p, const char *v, char *err, size_t sz)
{
	int64_t n;
	bool b;
	switch (p->type) {
	case T_INT:
	case T_SIZE:
		if ((p->type == T_INT ? parse_int(v, &n) : sp_parse_size(v, &n)) < 0)
			return sp_err(err, sz, SPATE_CONF_INVALID, "%s: \"%s\" is not %s (allowed: %" PRId64 "..%" PRId64 ")",
			              p->name, v, p->type == T_INT ? "an integer" : "a size (N, Nk, NM, NG)",
			              p->min, p->max);
		if (n < p->min || n > p->max)
			return sp_err(err, sz, SPATE_CONF_INVALID, "%s: %" PRId64 " is out of range (allowed: %" PRId64 "..%" PRId64 ")",
			              p->name, n, p->min, p->max);
		return 0;
	case T_BOOL:
		if (parse_bool(v, &b) < 0)
			return sp_err(err, sz, SPATE_CONF_INVALID, "%s: \"%s\" is not a boolean (allowed: true, false)",
			              p->name, v);
		return 0;
	case T_ENUM:
		if (!enum_allows(p->allowed, v))
			return sp_err(err, sz, SPATE_CONF_INVALID, "%s: \"%s\" is not allowed (allowed: %s)", p->name, v,
			              p->allowed);
		return 0;
	case T_STR:
		return check_string(p, v, err, sz);
	}
	return 0;
}

spate_conf_res_t spate_conf_set(spate_conf_t *c, const char *key, const char *value, char *err,
                                size_t sz)
{
	if (!c || !key || !value) {
		sp_err(err, sz, 0, "%s: key and value must not be NULL", key ? key : "(null)");
		return SPATE_CONF_INVALID;
	}
	int i = prop_index(key);
	if (i < 0) {
		if (is_passthrough(key)) {
			for (extra_t *x = c->extra; x; x = x->next)
				if (!strcmp(x->key, key)) {
					char *nv = strdup(value);
					if (!nv)
						return sp_err(err, sz, SPATE_CONF_INVALID, "%s: out of memory", key);
					free(x->val);
					x->val = nv;
					return SPATE_CONF_OK;
				}
			extra_t *x = calloc(1, sizeof(*x));
			if (!x || !(x->key = strdup(key)) || !(x->val = strdup(value))) {
				if (x)
					free(x->key);
				free(x);
				return sp_err(err, sz, SPATE_CONF_INVALID, "%s: out of memory", key);
			}
			x->next = c->extra;
			c->extra = x;
			return SPATE_CONF_OK;
		}
		/* Suggest a key that differs by little, like a misspelling. */
		const char *best = NULL;
		size_t kl = strlen(key);
		for (size_t j = 0; j < NPROPS; j++) {
			const char *n = props[j].name;
			size_t nl = strlen(n), common = 0;
			while (common < kl && common < nl && key[common] == n[common])
				common++;
			if (common >= 3 && (common + 3 >= kl || common + 3 >= nl)) {
				best = n;
				break;
			}
		}
		if (best)
			sp_err(err, sz, 0, "%s: unknown configuration key (did you mean \"%s\"? `spate run --help` lists all)",
			       key, best);
		else
			sp_err(err, sz, 0, "%s: unknown configuration key (`spate run --help` lists all)", key);
		return SPATE_CONF_UNKNOWN;
	}
	if (check_value(&props[i], value, err, sz))
		return SPATE_CONF_INVALID;
	char *nv = strdup(value);
	if (!nv) {
		sp_err(err, sz, 0, "%s: out of memory", key);
		return SPATE_CONF_INVALID;
	}
	free(c->vals[i]);
	c->vals[i] = nv;
	return SPATE_CONF_OK;
}

spate_conf_res_t spate_conf_get(const spate_conf_t *c, const char *key, char *dest, size_t *dest_size)
{
	const char *v = NULL;
	int i = prop_index(key);
	if (i >= 0) {
		v = c->vals[i] ? c->vals[i] : props[i].def;
	} else {
		for (extra_t *x = c->extra; x; x = x->next)
			if (!strcmp(x->key, key))
				v = x->val;
		if (!v)
			return SPATE_CONF_UNKNOWN;
	}
	size_t need = strlen(v) + 1;
	if (dest && *dest_size > 0) {
		size_t n = need < *dest_size ? need : *dest_size;
		memcpy(dest, v, n - 1);
		dest[n - 1] = 0;
	}
	*dest_size = need;
	return SPATE_CONF_OK;
}

static const char *raw(const spate_conf_t *c, const char *key)
{
	int i = prop_index(key);
	if (i < 0) {
		fprintf(stderr, "spate: internal error: no configuration key \"%s\"\n", key);
		abort();
	}
	return c->vals[i] ? c->vals[i] : props[i].def;
}

int64_t sp_conf_int(const spate_conf_t *c, const char *key)
{
	int64_t v = 0;
	const char *s = raw(c, key);
	if (sp_parse_size(s, &v) < 0)
		v = 0;
	return v;
}

bool sp_conf_bool(const spate_conf_t *c, const char *key)
{
	bool b = false;
	parse_bool(raw(c, key), &b);
	return b;
}

const char *sp_conf_str(const spate_conf_t *c, const char *key)
{
	return raw(c, key);
}

bool sp_conf_is_set(const spate_conf_t *c, const char *key)
{
	int i = prop_index(key);
	if (i >= 0)
		return c->vals[i] != NULL;
	for (extra_t *x = c->extra; x; x = x->next)
		if (!strcmp(x->key, key))
			return true;
	return false;
}

void sp_conf_foreach_prefix(const spate_conf_t *c, const char *prefix,
                            void (*fn)(void *arg, const char *key, const char *val), void *arg)
{
	size_t n = strlen(prefix);
	for (extra_t *x = c->extra; x; x = x->next)
		if (!strncmp(x->key, prefix, n))
			fn(arg, x->key, x->val);
}

static const char *type_name(enum prop_type t)
{
	switch (t) {
	case T_INT: return "int";
	case T_SIZE: return "size";
	case T_BOOL: return "bool";
	case T_ENUM: return "enum";
	case T_STR: return "string";
	}
	return "?";
}

static spate_conf_prop_t pub[NPROPS];
static pthread_once_t pub_once = PTHREAD_ONCE_INIT;

static void build_pub(void)
{
	for (size_t i = 0; i < NPROPS; i++)
		pub[i] = (spate_conf_prop_t){props[i].name, type_name(props[i].type), props[i].min,
		                             props[i].max, props[i].allowed, props[i].def, props[i].doc};
}

const spate_conf_prop_t *spate_conf_properties(size_t *cnt)
{
	/* Built once from the static table under pthread_once; immutable afterwards, so two
	 * engines in one process share it safely. */
	pthread_once(&pub_once, build_pub);
	*cnt = NPROPS;
	return pub;
}
