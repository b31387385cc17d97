/* sensor.c - the sensor operator: checks readings and reports anomalies.
 *
 * A record is one reading: its key names the sensor, its value is a JSON object with a
 * number in the field sensor.field ("value") and optionally a string "unit" and a number "ts" (ms since the
 * epoch). Each reading is checked for: range      value below sensor.min or above sensor.max nan        value
 * is null or the string "NaN" (JSON has no NaN; sensors send these) unit       sensor.unit is set and unit
 * differs (or is missing) stale      sensor.stale.ms > 0 and ts is older than the record's timestamp by more
 *   stuck      sensor.stuck.readings = N > 0 and the same value came N times in a row
 *              for this key (the Nth and each further one is flagged)
 * and a value that is not such an object counts as malformed. Anomalies are counted and,
 * with sensor.sink=NAME, each anomalous reading is emitted to that sink with a header
 * sensor.anomalies naming them ("range,stuck").
 *
 * The stuck check keeps per key the last value and how often it came in a row. A key's
 * records are handled in order by one worker at a time (a lane), so its entry is only
 * ever touched by the worker holding its lane, and the hand-over of a lane between
 * workers orders those touches. The table itself is shared: slots are claimed with a
 * compare-and-swap, never removed, so a lookup takes no lock. It is bounded by
 * sensor.keys.max; keys beyond it are not checked for stuck values (sensor.untracked).
 * The state lives in memory only: after a restart or a rebalance each key's run starts
 * again from zero, so a stuck sensor is reported N readings after the restart at the
 * latest, and readings replayed after a crash are counted again.
 */
#include "sp_spi.h"

#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The longest key the stuck table keeps (longer keys are hashed and compared in full
 * up to this; beyond it they are untracked). */
#define SENSOR_KEY_MAX 64

enum { A_RANGE, A_NAN, A_UNIT, A_STALE, A_STUCK, A_N };
static const char *const anomaly_names[A_N] = {"range", "nan", "unit", "stale", "stuck"};
enum { C_RECORDS = A_N, C_MALFORMED, C_ANOMALOUS, C_UNTRACKED, C_N };
static const char *const counter_names[C_N] = {"sensor.range",     "sensor.nan",       "sensor.unit",
                                               "sensor.stale",     "sensor.stuck",     "sensor.records",
                                               "sensor.malformed", "sensor.anomalous", "sensor.untracked"};

typedef struct slot {
	_Atomic uint64_t hash; /* 0: free; else the key's hash | 1 (claimed, key being written: see ready) */
	_Atomic int ready;     /* the key bytes are written */
	uint8_t klen;
	char key[SENSOR_KEY_MAX];
	/* the lane's: touched only by the worker that holds the key's lane */
	double last;
	uint32_t run;
} slot_t;

typedef struct sensor {
	double min, max;
	char unit[64];
	char field[64]; /* sensor.field: the reading's number */
	size_t field_len;
	size_t unit_len;
	bool check_unit;
	int64_t stale_ms;
	uint32_t stuck_n;
	char *sink;
	slot_t *slots;
	size_t nslots; /* a power of two, at least twice keys_max: probes end at a free slot */
	size_t keys_max;
	_Atomic size_t nkeys;
	_Atomic uint64_t totals[C_N];
} sensor_t;

/* ---- a flat JSON object's fields ----------------------------------------------------- */

typedef struct reading {
	bool has_value, value_nan, has_unit, has_ts;
	double value, ts;
	const char *unit;
	size_t unit_len;
} reading_t;

static const char *ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* A JSON string at p: its raw contents [*s, *s + *n) (escapes left as they are). */
static const char *str(const char *p, const char *e, const char **s, size_t *n)
{
	if (p >= e || *p != '"')
		return NULL;
	const char *q = ++p;
	while (q < e && *q != '"') {
		if (*q == '\\')
			q++;
		q++;
	}
	if (q >= e)
		return NULL;
	*s = p;
	*n = (size_t)(q - p);
	return q + 1;
}

/* Skip any JSON value (objects and arrays by depth, strings with their escapes). */
static const char *skip(const char *p, const char *e)
{
	int depth = 0;
	do {
		p = ws(p, e);
		if (p >= e)
			return NULL;
		if (*p == '"') {
			const char *s;
			size_t n;
			if (!(p = str(p, e, &s, &n)))
				return NULL;
		} else if (*p == '{' || *p == '[') {
			depth++;
			p++;
		} else if (*p == '}' || *p == ']') {
			if (!depth)
				return NULL;
			depth--;
			p++;
		} else {
			while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n')
				p++;
		}
		p = ws(p, e);
		if (depth && p < e && (*p == ',' || *p == ':'))
			p++;
	} while (depth);
	return p;
}

static bool number(const char *p, const char *e, double *out, const char **end)
{
	char buf[64];
	size_t n = 0;
	while (p + n < e && n < sizeof(buf) - 1 && strchr("+-0123456789.eE", p[n]))
		n++;
	if (!n)
		return false;
	memcpy(buf, p, n);
	buf[n] = 0;
	char *q;
	*out = strtod(buf, &q);
	if (*q || !isfinite(*out))
		return false;
	*end = p + n;
	return true;
}

static bool parse(const char *p, size_t len, const char *field, size_t flen, reading_t *r)
{
	const char *e = p + len;
	memset(r, 0, sizeof(*r));
	p = ws(p, e);
	if (p >= e || *p++ != '{')
		return false;
	p = ws(p, e);
	if (p < e && *p == '}')
		return false;
	for (;;) {
		const char *k, *s;
		size_t kn, sn;
		if (!(p = str(ws(p, e), e, &k, &kn)))
			return false;
		p = ws(p, e);
		if (p >= e || *p++ != ':')
			return false;
		p = ws(p, e);
		if (kn == flen && !memcmp(k, field, flen)) {
			if (r->has_value)
				return false; /* twice: which one counts would be ambiguous */
			r->has_value = true;
			if (e - p >= 4 && !memcmp(p, "null", 4)) {
				r->value_nan = true;
				p += 4;
			} else if (*p == '"') {
				if (!(p = str(p, e, &s, &sn)) || sn != 3 ||
				    (memcmp(s, "NaN", 3) && memcmp(s, "nan", 3)))
					return false;
				r->value_nan = true;
			} else if (!number(p, e, &r->value, &p)) {
				return false;
			}
		} else if (kn == 4 && !memcmp(k, "unit", 4)) {
			if (r->has_unit || !(p = str(p, e, &r->unit, &r->unit_len)))
				return false;
			r->has_unit = true;
		} else if (kn == 2 && !memcmp(k, "ts", 2)) {
			if (r->has_ts || !number(p, e, &r->ts, &p))
				return false;
			r->has_ts = true;
		} else if (!(p = skip(p, e))) {
			return false;
		}
		p = ws(p, e);
		if (p < e && *p == ',') {
			p++;
			continue;
		}
		if (p < e && *p == '}')
			return r->has_value && ws(p + 1, e) == e;
		return false;
	}
}

/* ---- the per-key table ---------------------------------------------------------------- */

static uint64_t hash_key(const char *k, size_t n)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)k[i]) * 1099511628211ULL;
	return h | 1;
}

/* The slot of key k, claimed when new; NULL when the table is full or the key too long. */
static slot_t *slot_of(sensor_t *t, const char *k, size_t n)
{
	if (n > SENSOR_KEY_MAX)
		return NULL;
	uint64_t h = hash_key(k, n);
	size_t mask = t->nslots - 1;
	for (size_t i = 0, at = (size_t)h & mask; i < t->nslots; i++, at = (at + 1) & mask) {
		slot_t *s = &t->slots[at];
		uint64_t cur = atomic_load_explicit(&s->hash, memory_order_acquire);
		if (!cur) {
			if (atomic_fetch_add_explicit(&t->nkeys, 1, memory_order_relaxed) >= t->keys_max) {
				atomic_fetch_sub_explicit(&t->nkeys, 1, memory_order_relaxed);
				return NULL; /* full: the key is not tracked */
			}
			uint64_t zero = 0;
			if (atomic_compare_exchange_strong_explicit(&s->hash, &zero, h, memory_order_acq_rel,
			                                            memory_order_acquire)) {
				memcpy(s->key, k, n);
				s->klen = (uint8_t)n;
				atomic_store_explicit(&s->ready, 1, memory_order_release);
				return s;
			}
			atomic_fetch_sub_explicit(&t->nkeys, 1, memory_order_relaxed);
			cur = zero;
		}
		if (cur != h)
			continue;
		while (!atomic_load_explicit(&s->ready, memory_order_acquire))
			; /* another key of the same hash is being written this instant */
		if (s->klen == n && !memcmp(s->key, k, n))
			return s;
	}
	return NULL;
}

/* ---- the handler ---------------------------------------------------------------------- */

static void add_totals(sensor_t *t, const uint64_t *c)
{
	for (int k = 0; k < C_N; k++)
		if (c[k])
			atomic_fetch_add_explicit(&t->totals[k], c[k], memory_order_relaxed);
}

static int sensor_handle(void *opaque, void *wctx, spate_batch_t *b)
{
	sensor_t *t = opaque;
	size_t n = spate_batch_count(b);
	const spate_record_t *const *recs = spate_batch_records(b);
	uint64_t c[C_N] = {0};
	c[C_RECORDS] = n;
	for (size_t i = 0; i < n; i++) {
		const spate_record_t *r = recs[i];
		reading_t rd;
		if (!r->value || !parse(r->value, r->value_len, t->field, t->field_len, &rd)) {
			c[C_MALFORMED]++;
			continue;
		}
		unsigned hits = 0;
		if (rd.value_nan)
			hits |= 1u << A_NAN;
		else if (rd.value < t->min || rd.value > t->max)
			hits |= 1u << A_RANGE;
		if (t->check_unit &&
		    (!rd.has_unit || rd.unit_len != t->unit_len || memcmp(rd.unit, t->unit, t->unit_len)))
			hits |= 1u << A_UNIT;
		if (t->stale_ms > 0 && rd.has_ts && rd.ts < (double)(r->timestamp_ms - t->stale_ms))
			hits |= 1u << A_STALE;
		if (t->stuck_n && !rd.value_nan) {
			slot_t *s = slot_of(t, r->key ? r->key : "", r->key ? r->key_len : 0);
			if (!s) {
				c[C_UNTRACKED]++;
			} else {
				if (s->run && s->last == rd.value)
					s->run++;
				else
					s->run = 1;
				s->last = rd.value;
				if (s->run >= t->stuck_n)
					hits |= 1u << A_STUCK;
			}
		}
		if (!hits)
			continue;
		c[C_ANOMALOUS]++;
		char names[64];
		size_t len = 0;
		for (int k = 0; k < A_N; k++)
			if (hits & (1u << k)) {
				c[k]++;
				len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s",
				                        len ? "," : "", anomaly_names[k]);
			}
		if (t->sink) {
			spate_header_t h = {"sensor.anomalies", 16, names, len};
			if (spate_batch_emit(b, i, t->sink, r->key, r->key_len, r->value, r->value_len, &h,
			                     1) != SPATE_OK)
				return SPATE_HANDLER_FAIL; /* out of memory: the batch retries */
		}
	}
	add_totals(t, c);
	return SPATE_HANDLER_OK;
}

/* ---- create ----------------------------------------------------------------------------- */

typedef struct sink_find {
	const char *name;
	bool found;
} sink_find_t;

static void sink_seen(void *arg, const char *key, const char *val)
{
	sink_find_t *s = arg;
	if (!strcmp(key + strlen("sink."), s->name) && *val)
		s->found = true;
}

static bool parse_double(const char *s, double *out)
{
	char *e;
	if (!*s)
		return false;
	*out = strtod(s, &e);
	return !*e && !isnan(*out);
}

static void sensor_free(sensor_t *t)
{
	if (!t)
		return;
	free(t->sink);
	free(t->slots);
	free(t);
}

static int sensor_create(const char *arg, const spate_conf_t *conf, spate_engine_t *e, spate_handler_t *h,
                         char *err, size_t sz)
{
	if (arg && *arg)
		return sp_err(
		    err, sz, SPATE_ERR_INVALID,
		    "handler: sensor takes no argument, got \"sensor:%s\" (set sensor.* keys instead)", arg);
	if (!conf)
		return sp_err(err, sz, SPATE_ERR_INVALID,
		              "handler: sensor needs a configuration (sensor.* keys)");
	sensor_t *t = calloc(1, sizeof(*t));
	if (!t)
		return sp_err(err, sz, SPATE_ERR_NOMEM, "handler: out of memory");
	int rc = SPATE_OK;
	const char *mn = sp_conf_str(conf, "sensor.min"), *mx = sp_conf_str(conf, "sensor.max");
	if (!parse_double(mn, &t->min))
		rc = sp_err(err, sz, SPATE_ERR_INVALID, "sensor.min: \"%s\" is not a number", mn);
	else if (!parse_double(mx, &t->max))
		rc = sp_err(err, sz, SPATE_ERR_INVALID, "sensor.max: \"%s\" is not a number", mx);
	else if (t->min > t->max)
		rc = sp_err(err, sz, SPATE_ERR_INVALID, "sensor.min: %s is above sensor.max (%s)", mn, mx);
	const char *field = sp_conf_str(conf, "sensor.field");
	if (!field)
		field = "";
	if (!rc && (!*field || strlen(field) >= sizeof(t->field) || strpbrk(field, "\"\\")))
		rc = sp_err(err, sz, SPATE_ERR_INVALID,
		            "sensor.field: \"%s\" is not a field name (1..63 bytes, no quote or backslash)",
		            field);
	if (!rc) {
		t->field_len = strlen(field);
		memcpy(t->field, field, t->field_len);
	}
	const char *unit = sp_conf_str(conf, "sensor.unit");
	if (!rc && strlen(unit) >= sizeof(t->unit))
		rc = sp_err(err, sz, SPATE_ERR_INVALID, "sensor.unit: longer than %zu bytes",
		            sizeof(t->unit) - 1);
	if (!rc) {
		t->check_unit = *unit != 0;
		t->unit_len = strlen(unit);
		memcpy(t->unit, unit, t->unit_len);
		t->stale_ms = sp_conf_int(conf, "sensor.stale.ms");
		t->stuck_n = (uint32_t)sp_conf_int(conf, "sensor.stuck.readings");
		size_t keys = (size_t)sp_conf_int(conf, "sensor.keys.max");
		t->keys_max = keys;
		t->nslots = 1;
		while (t->nslots < keys * 2)
			t->nslots *= 2;
		if (t->stuck_n && !(t->slots = calloc(t->nslots, sizeof(slot_t))))
			rc = sp_err(err, sz, SPATE_ERR_NOMEM, "sensor.keys.max: out of memory for %zu keys",
			            keys);
	}
	const char *sink = sp_conf_str(conf, "sensor.sink");
	if (!rc && *sink) {
		sink_find_t f = {sink, false};
		sp_conf_foreach_prefix(conf, "sink.", sink_seen, &f);
		if (!f.found)
			rc = sp_err(err, sz, SPATE_ERR_INVALID,
			            "sensor.sink: no sink named \"%s\" (set sink.%s=log:DIR or kafka:TOPIC)",
			            sink, sink);
		else if (!(t->sink = strdup(sink)))
			rc = sp_err(err, sz, SPATE_ERR_NOMEM, "sensor.sink: out of memory");
	}
	if (rc) {
		sensor_free(t);
		return rc;
	}
	memset(h, 0, sizeof(*h));
	h->version = SPATE_HANDLER_VERSION;
	h->name = "sensor";
	h->handle = sensor_handle;
	h->opaque = t;
	return SPATE_OK;
}

static void sensor_destroy(spate_handler_t *h)
{
	sensor_free(h->opaque);
	h->opaque = NULL;
}

static void sensor_report(spate_handler_t *h, FILE *fp)
{
	sensor_t *t = h->opaque;
	static const int order[] = {C_RECORDS, C_ANOMALOUS, A_RANGE,     A_NAN,      A_UNIT,
	                            A_STALE,   A_STUCK,     C_MALFORMED, C_UNTRACKED};
	for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++)
		fprintf(fp, "%s %" PRIu64 "\n", counter_names[order[k]], atomic_load(&t->totals[order[k]]));
}

static const sp_opt_t sensor_opts[] = {
    {"sensor.field", SP_OPT_STR, 0, 0, NULL, "value",
     "sensor: the field of a reading's JSON object that holds its number (gen.kind=sensor: temp_c)"},
    {"sensor.min", SP_OPT_STR, 0, 0, NULL, "-1e308", "sensor: a reading's value below this is out of range"},
    {"sensor.max", SP_OPT_STR, 0, 0, NULL, "1e308", "sensor: a reading's value above this is out of range"},
    {"sensor.unit", SP_OPT_STR, 0, 0, NULL, "",
     "sensor: the unit every reading must carry (empty = unchecked)"},
    {"sensor.stale.ms", SP_OPT_INT, 0, INT64_MAX, NULL, "0",
     "sensor: a reading whose ts is older than its record's timestamp by more than this is stale (0 = off)"},
    {"sensor.stuck.readings", SP_OPT_INT, 0, 1000000, NULL, "0",
     "sensor: flag a key whose value came this many times in a row (0 = off)"},
    {"sensor.keys.max", SP_OPT_INT, 1, 100000000, NULL, "65536",
     "sensor: keys the stuck check keeps state for (more are counted in sensor.untracked)"},
    {"sensor.sink", SP_OPT_STR, 0, 0, NULL, "",
     "sensor: a named sink (sink.NAME) each anomalous reading is emitted to, with a sensor.anomalies "
     "header; empty = only count"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

const sp_operator_ops_t sp_op_sensor = {
    .version = SP_OPERATOR_OPS_VERSION,
    .name = "sensor",
    .desc =
        "checks sensor readings: range, NaN, unit, stale timestamps, values stuck per key (sensor.* keys)",
    .opts = sensor_opts,
    .syntax = "sensor",
    .create = sensor_create,
    .ignores_headers = true,
    .destroy = sensor_destroy,
    .report = sensor_report,
};
