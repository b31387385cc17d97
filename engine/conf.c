/* conf.c - key=value configuration: the option tables, validation, clear errors.
 *
 * The engine's own keys live in engine_opts[] below; every plugin carries its own table
 * (sp_source_ops_t.opts and the like, Fluent Bit's config_map), so adding a connector
 * touches no engine file. The configuration is the union of the engine's table and every
 * registered plugin's, built once per process (pthread_once; immutable afterwards, so
 * two engines in one process share it): each key with its type, range, default and a
 * one-line doc. docs/configuration.md is generated from the union (`spate config
 * --markdown`) and a test checks that the two agree. A value is checked when it is set,
 * so a bad value is reported with its key at once; checks that involve several keys run
 * in spate_engine_new() and name the keys too.
 *
 * Keys starting with a plugin's conf_prefix ("kafka.") pass through to that plugin
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

enum { T_INT = SP_OPT_INT, T_BOOL = SP_OPT_BOOL, T_STR = SP_OPT_STR, T_ENUM = SP_OPT_ENUM, T_SIZE = SP_OPT_SIZE };

typedef sp_opt_t prop_t;

#define I64MAX INT64_MAX

/* The engine's keys. Order is documentation order; the plugins' tables follow. */
static const prop_t engine_opts[] = {
    /* wiring */
    {"source", T_STR, 0, 0, NULL, "gen", "Where records come from: {source}"},
    {"handler", T_STR, 0, 0, NULL, "noop", "What processes each batch: {handler}"},
    {"store", T_STR, 0, 0, NULL, "",
     "Checkpoint store: {store} (none: every run starts at starting.position). Unset: the "
     "source's default: log:DIR keeps them in file:DIR/checkpoints/PIPELINE, kafka in the "
     "group; gen and push keep none"},
    {"pipeline.name", T_STR, 0, 0, NULL, "",
     "The pipeline's name: the default log store's file is named after it, so two pipelines on "
     "one log keep their own checkpoints (unset: the handler key with : and / as -, e.g. "
     "fraud, sleep-200)"},
    {"dlq", T_STR, 0, 0, NULL, "",
     "Dead-letter queue: {dlq}; empty = exhausted records are dropped, logged and counted"},
    {"stop.at.end", T_BOOL, 0, 1, NULL, "false",
     "Exit once every partition's checkpoint reaches the end noted at start (kcat -e)"},
    {"summary.json", T_STR, 0, 0, NULL, "", "Write the end-of-run summary as one JSON object to this path"},
    {"log.level", T_ENUM, 0, 0, "error|warn|info|debug", "info", "Log verbosity (stderr)"},
    /* batching and failure handling (Lambda ESM names) */
    {"batch.size", T_INT, 1, 10000, NULL, "100", "Max records per handler invocation (Lambda BatchSize)"},
    {"batch.max.bytes", T_SIZE, 1, I64MAX, NULL, "6291456",
     "Max key+value bytes per handler invocation (Lambda's 6 MB payload limit)"},
    {"batch.window.ms", T_INT, 0, 300000, NULL, "0",
     "Wait up to this long from a batch's first record to fill it (Lambda "
     "MaximumBatchingWindowInSeconds; 0 = hand over what is there at once)"},
    {"filter", T_STR, 0, 0, NULL, "",
     "Lambda FilterCriteria: an EventBridge pattern (JSON) a record must match to reach the "
     "handler; records that match no pattern are DONE without a handler call and counted in "
     "filtered (docs/filters.md). Empty = every record passes"},
    {"filter.1", T_STR, 0, 0, NULL, "",
     "A second pattern, ORed with filter (filter.1 .. filter.9: up to 10 in all)"},
    {"filter.2", T_STR, 0, 0, NULL, "", "Another pattern, ORed"},
    {"filter.3", T_STR, 0, 0, NULL, "", "Another pattern, ORed"},
    {"filter.4", T_STR, 0, 0, NULL, "", "Another pattern, ORed"},
    {"filter.5", T_STR, 0, 0, NULL, "", "Another pattern, ORed"},
    {"filter.6", T_STR, 0, 0, NULL, "", "Another pattern, ORed"},
    {"filter.7", T_STR, 0, 0, NULL, "", "Another pattern, ORed"},
    {"filter.8", T_STR, 0, 0, NULL, "", "Another pattern, ORed"},
    {"filter.9", T_STR, 0, 0, NULL, "", "Another pattern, ORed"},
    {"starting.position", T_STR, 0, 0, NULL, "earliest",
     "Where a partition without a checkpoint starts: earliest, latest, at-timestamp:MS"},
    {"parallelization.factor", T_INT, 1, 1024, NULL, "1",
     "Lanes per partition; records are routed by XXH3(key) and keep order per key"},
    {"max.retry.attempts", T_INT, -1, 10000, NULL, "-1",
     "Retries of a failing record before the DLQ; -1 = until max.record.age.ms"},
    {"max.record.age.ms", T_INT, -1, 604800000, NULL, "-1",
     "A failed record older than this (stream timestamp) goes to the DLQ; -1 = forever"},
    {"retry.backoff.ms", T_INT, 0, 3600000, NULL, "100",
     "First retry delay (doubles each attempt, with jitter)"},
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
    {"metrics.listen", T_STR, 0, 0, NULL, "",
     "Serve Prometheus metrics at http://ADDR:PORT/metrics (e.g. 127.0.0.1:9464; port 0 picks one; "
     "empty = off); see docs/metrics.md"},
    {"metrics.listen.remote", T_BOOL, 0, 1, NULL, "false",
     "Allow metrics.listen to name an address other than loopback (127.0.0.0/8, ::1)"},
    {"metrics.partitions.max", T_INT, 0, 100000, NULL, "256",
     "Partitions the endpoint reports one by one (partition label); the rest are summed as "
     "partition=\"_other\""},
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
    {"lease.timeout.ms", T_INT, 300, 3600000, NULL, "10000",
     "Lease mode (a store with leases: redis, dynamodb): a lease not renewed for this long may be taken by another "
     "process; each process renews every third of it and stops working a partition when its renewal is "
     "this late (minus a margin). Refused with a store that keeps no leases (file)"},
    {"lease.owner", T_STR, 0, 0, NULL, "",
     "Lease mode: this process's owner name in the store (unset: HOST-PID-RANDOM; must differ between "
     "processes)"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

/* The union of the engine's table and every registered plugin's: pointers into them, in
 * documentation order, and the pass-through prefixes. Built once per process. */
static const prop_t **all_opts;
static size_t nall;
static const char *prefixes[16];
static size_t nprefixes;
static pthread_once_t union_once = PTHREAD_ONCE_INIT;

static size_t table_len(const prop_t *t)
{
	size_t n = 0;
	while (t && t[n].name)
		n++;
	return n;
}

static void add_prefix(const char *p)
{
	if (!p || !*p)
		return;
	for (size_t i = 0; i < nprefixes; i++)
		if (!strcmp(prefixes[i], p))
			return;
	if (nprefixes < sizeof(prefixes) / sizeof(prefixes[0]))
		prefixes[nprefixes++] = p;
}

static void add_table(const prop_t *t, size_t *k)
{
	for (size_t i = 0; t && t[i].name; i++) {
		for (size_t j = 0; j < *k; j++)
			if (!strcmp(all_opts[j]->name, t[i].name)) {
				/* a key two tables declare: a bug of the build, caught by test_conf */
				fprintf(stderr, "spate: internal error: configuration key \"%s\" is declared twice\n",
				        t[i].name);
				abort();
			}
		all_opts[(*k)++] = &t[i];
	}
}

static void build_union(void)
{
	size_t n = table_len(engine_opts);
	const sp_source_ops_t *const *so = sp_sources();
	const sp_store_ops_t *const *st = sp_stores();
	const sp_sink_ops_t *const *sk = sp_sinks();
	const sp_operator_ops_t *const *op = sp_operators();
	for (size_t i = 0; so[i]; i++)
		n += table_len(so[i]->opts);
	for (size_t i = 0; st[i]; i++)
		n += table_len(st[i]->opts);
	for (size_t i = 0; sk[i]; i++)
		n += table_len(sk[i]->opts);
	for (size_t i = 0; op[i]; i++)
		n += table_len(op[i]->opts);
	all_opts = calloc(n ? n : 1, sizeof(*all_opts));
	if (!all_opts) {
		fprintf(stderr, "spate: out of memory for the configuration table\n");
		abort();
	}
	size_t k = 0;
	add_table(engine_opts, &k);
	add_prefix("sink.");  /* sink.NAME=kind:arg and sink.NAME.KEY (emit.c) */
	add_prefix("route."); /* route.SINK=PATTERN (operators/route.c) */
	for (size_t i = 0; so[i]; i++) {
		add_table(so[i]->opts, &k);
		add_prefix(so[i]->conf_prefix);
	}
	for (size_t i = 0; st[i]; i++)
		add_table(st[i]->opts, &k);
	for (size_t i = 0; sk[i]; i++) {
		add_table(sk[i]->opts, &k);
		add_prefix(sk[i]->conf_prefix);
	}
	for (size_t i = 0; op[i]; i++)
		add_table(op[i]->opts, &k);
	nall = k;
}

static void ensure_union(void)
{
	pthread_once(&union_once, build_union);
}

typedef struct extra {
	char *key, *val;
	struct extra *next;
} extra_t;

struct spate_conf_s {
	char **vals; /* nall entries; NULL = default */
	extra_t *extra;
};

static int prop_index(const char *key)
{
	ensure_union();
	for (size_t i = 0; i < nall; i++)
		if (!strcmp(all_opts[i]->name, key))
			return (int)i;
	return -1;
}

static bool is_passthrough(const char *key)
{
	ensure_union();
	for (size_t i = 0; i < nprefixes; i++) {
		size_t n = strlen(prefixes[i]);
		if (!strncmp(key, prefixes[i], n) && key[n])
			return true;
	}
	return false;
}

spate_conf_t *spate_conf_new(void)
{
	ensure_union();
	spate_conf_t *c = calloc(1, sizeof(spate_conf_t));
	if (c && !(c->vals = calloc(nall ? nall : 1, sizeof(char *)))) {
		free(c);
		return NULL;
	}
	return c;
}

void spate_conf_destroy(spate_conf_t *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < nall; i++)
		free(c->vals[i]);
	free(c->vals);
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
	for (size_t i = 0; i < nall; i++)
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

/* Room for a value as an error shows it: longer values are cut (with "...") there. */
#define SHOWN_MAX 256

/* v as an error shows it, in buf: the user information of a URI (scheme://user:PASSWORD@
 * host, as in store=redis://user:PASSWORD@host:port) becomes "***", so no error repeats a
 * password; everything up to the last '@' counts, since a password may hold '@' or ':'.
 * Values are cut to SHOWN_MAX bytes. Returns buf. */
static const char *shown(const char *v, char *buf, size_t size)
{
	const char *auth = strstr(v, "://"), *at = auth ? strrchr(auth + 3, '@') : NULL;
	if (at)
		snprintf(buf, size, "%.*s***%s", (int)(auth + 3 - v), v, at);
	else
		snprintf(buf, size, "%s", v);
	if (strlen(buf) == size - 1 && size > 4)
		memcpy(buf + size - 4, "...", 3);
	return buf;
}

/* Checks of string keys whose syntax is known here. Connector-specific checks (that the
 * source's directory exists, ...) happen when it opens. */
static int check_string(const prop_t *p, const char *v, char *err, size_t sz)
{
	char vb[SHOWN_MAX];
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
			kinds = sp_registry_kinds("source");
		} else if (!strcmp(p->name, "handler")) {
			known = sp_find_operator(name) != NULL;
			kinds = sp_registry_kinds("handler");
		} else if (!strcmp(p->name, "store")) {
			known = sp_find_store(name) != NULL;
			kinds = sp_registry_kinds("store");
		} else {
			known = sp_find_sink(name) != NULL;
			kinds = sp_registry_kinds("dlq");
		}
		if (!known)
			return sp_err(err, sz, SPATE_CONF_INVALID, "%s: unknown kind \"%s\" in \"%s\" (allowed: %s)",
			              p->name, name, shown(v, vb, sizeof(vb)), kinds);
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
		              "%s: \"%s\" is not allowed (earliest, latest, at-timestamp:MS)", p->name,
		              shown(v, vb, sizeof(vb)));
	}
	return 0;
}

static int check_value(const prop_t *p, const char *v, char *err, size_t sz)
{
	int64_t n;
	bool b;
	char vb[SHOWN_MAX];
	switch (p->type) {
	case T_INT:
	case T_SIZE:
		if ((p->type == T_INT ? parse_int(v, &n) : sp_parse_size(v, &n)) < 0)
			return sp_err(err, sz, SPATE_CONF_INVALID, "%s: \"%s\" is not %s (allowed: %" PRId64 "..%" PRId64 ")",
			              p->name, shown(v, vb, sizeof(vb)),
			              p->type == T_INT ? "an integer" : "a size (N, Nk, NM, NG)",
			              p->min, p->max);
		if (n < p->min || n > p->max)
			return sp_err(err, sz, SPATE_CONF_INVALID, "%s: %" PRId64 " is out of range (allowed: %" PRId64 "..%" PRId64 ")",
			              p->name, n, p->min, p->max);
		return 0;
	case T_BOOL:
		if (parse_bool(v, &b) < 0)
			return sp_err(err, sz, SPATE_CONF_INVALID, "%s: \"%s\" is not a boolean (allowed: true, false)",
			              p->name, shown(v, vb, sizeof(vb)));
		return 0;
	case T_ENUM:
		if (!enum_allows(p->allowed, v))
			return sp_err(err, sz, SPATE_CONF_INVALID, "%s: \"%s\" is not allowed (allowed: %s)", p->name,
			              shown(v, vb, sizeof(vb)), p->allowed);
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
		for (size_t j = 0; j < nall; j++) {
			const char *n = all_opts[j]->name;
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
	if (check_value(all_opts[i], value, err, sz))
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
		v = c->vals[i] ? c->vals[i] : all_opts[i]->def;
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
	return c->vals[i] ? c->vals[i] : all_opts[i]->def;
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

static const char *type_name(int t)
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

static spate_conf_prop_t *pub;
static pthread_once_t pub_once = PTHREAD_ONCE_INIT;

/* A doc with its "{kind}" replaced by the registered plugins of that kind (the wiring
 * keys list what this build has). Static storage, built once. */
static const char *expand_doc(const char *doc)
{
	const char *a = strchr(doc, '{'), *b = a ? strchr(a, '}') : NULL;
	if (!b)
		return doc;
	char kind[32];
	size_t kl = (size_t)(b - a - 1) < sizeof(kind) - 1 ? (size_t)(b - a - 1) : sizeof(kind) - 1;
	memcpy(kind, a + 1, kl);
	kind[kl] = 0;
	const char *k = sp_registry_kinds(kind);
	size_t n = strlen(doc) + strlen(k) + 1;
	char *out = malloc(n);
	if (!out)
		return doc;
	snprintf(out, n, "%.*s%s%s", (int)(a - doc), doc, k, b + 1);
	return out;
}

static void build_pub(void)
{
	ensure_union();
	pub = calloc(nall ? nall : 1, sizeof(*pub));
	for (size_t i = 0; pub && i < nall; i++) {
		const prop_t *o = all_opts[i];
		pub[i] = (spate_conf_prop_t){o->name,       type_name(o->type), o->min, o->max, o->allowed, o->def,
		                             expand_doc(o->doc)};
	}
}

const spate_conf_prop_t *spate_conf_properties(size_t *cnt)
{
	/* Built once from the union of the tables under pthread_once; immutable afterwards,
	 * so two engines in one process share it safely. */
	pthread_once(&pub_once, build_pub);
	*cnt = pub ? nall : 0;
	return pub;
}
