/* filter_match.c - matching records against a compiled filter (filter.h; the compiled
 * form is in filter_impl.h).
 *
 * A record is seen as Lambda's event for its source kind, without building that event:
 * the top-level fields (key, topic, offset, ...) are read from the record when a pattern
 * names them, and the value is scanned at most once per call, lazily (only when a
 * pattern reaches it, after the cheaper fields of that pattern matched), keeping only
 * the paths the filter's selector names. Matching then walks the pattern tree over the
 * kept nodes:
 *  - an object pattern against an array tries each element (the same element must
 *    satisfy all of it: event-ruler's array consistency), and against a missing value,
 *    a scalar or an empty array it holds only when every field in it could be missing;
 *  - a rule list against a value takes its scalars (an array's, flattened) and holds
 *    when a rule matches one, or by exists: true (some scalar) / false (none).
 * What the value is, JSON, text or bytes, decides per Lambda's table for the source
 * (docs/filters.md): for Kafka's names a pattern that reads the value in the other form
 * has that part skipped; for Kinesis a value that is not JSON fails the pattern.
 *
 * Nothing here allocates except the scanner growing the scratch's buffer.
 */
#include "engine/filter_impl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A value that is bytes but not UTF-8 text (a key or header): only exists sees it. */
#define VAL_BYTES 0x80

struct sp_filter_scratch {
	sp_json_buf_t buf;
	const spate_partition_t *part; /* the last record's partition and source, */
	const char *source;
	uint8_t kind; /* and their kind */
};

/* What the record's value turned out to be. */
enum vstate { V_UNREAD = 0, V_JSON, V_TEXT, V_BYTES, V_NONE, V_NOMEM };

typedef struct mctx {
	const sp_filter_t *f;
	const spate_record_t *r;
	sp_json_buf_t *b;
	uint8_t kind;
	uint8_t vstate;
} mctx_t;

/* One scalar, from the value's nodes or from the record's fields. */
typedef struct val {
	uint8_t type; /* SP_JSON_* or VAL_BYTES */
	const char *s;
	size_t n;
	double num;
} val_t;

sp_filter_scratch_t *sp_filter_scratch_new(void)
{
	return calloc(1, sizeof(sp_filter_scratch_t));
}

void sp_filter_scratch_free(sp_filter_scratch_t *s)
{
	if (!s)
		return;
	sp_json_buf_free(&s->buf);
	free(s);
}

/* ---- one rule, one scalar ---------------------------------------------------------------- */

/* Equal bytes, inline for the short strings patterns hold. */
static inline bool same_bytes(const char *a, const char *b, size_t n)
{
	if (n > 16)
		return !memcmp(a, b, n);
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

static bool bytes_eq(const bstr_t *b, const val_t *v)
{
	return b->n == v->n && same_bytes(b->s, v->s, v->n);
}

/* The end of the case-folded prefix p of s, or NULL. */
static const uint8_t *ci_prefix(const cistr_t *p, const char *s, size_t n)
{
	const uint8_t *q = (const uint8_t *)s, *e = q + n;
	for (uint32_t i = 0; i < p->n; i++)
		if (q >= e || sp_filter_fold(sp_filter_utf8_next(&q)) != p->cp[i])
			return NULL;
	return q;
}

static bool ci_suffix(const cistr_t *p, const char *s, size_t n)
{
	const uint8_t *b = (const uint8_t *)s, *e = b + n;
	for (uint32_t i = p->n; i-- > 0;) {
		const uint8_t *q, *t;
		if (e <= b)
			return false;
		for (q = e - 1; q > b && (*q & 0xC0) == 0x80; q--)
			;
		t = q;
		if (sp_filter_fold(sp_filter_utf8_next(&t)) != p->cp[i])
			return false;
		e = q;
	}
	return true;
}

static bool ci_eq(const cistr_t *p, const char *s, size_t n)
{
	const uint8_t *q = ci_prefix(p, s, n);
	return q && q == (const uint8_t *)s + n;
}

/* '*' matches any run of bytes: the first piece anchors at the start, the last at the
 * end, and the ones between are found leftmost-first, which is exact for '*' alone. */
static bool wc_match(const wcard_t *w, const char *s, size_t n)
{
	const bstr_t *first = &w->piece[0], *last = &w->piece[w->nstar];
	size_t at, lim;
	if (!w->nstar)
		return first->n == n && !memcmp(first->s, s, n);
	if (n < first->n + last->n || memcmp(s, first->s, first->n) ||
	    memcmp(s + n - last->n, last->s, last->n))
		return false;
	at = first->n;
	lim = n - last->n;
	for (uint32_t k = 1; k < w->nstar; k++) {
		const bstr_t *m = &w->piece[k];
		const char *hit = memmem(s + at, lim - at, m->s, m->n);
		if (!hit)
			return false;
		at = (size_t)(hit - s) + m->n;
	}
	return true;
}

static bool affix(const bstr_t *b, const val_t *v, bool prefix)
{
	return v->n >= b->n && same_bytes(prefix ? v->s : v->s + v->n - b->n, b->s, b->n);
}

static bool rule_match(const rule_t *r, const val_t *v)
{
	bool str = v->type == SP_JSON_STRING;
	switch (r->op) {
	case R_STR:
		return str && bytes_eq(&r->s[0], v);
	case R_NUM:
		return v->type == SP_JSON_NUMBER && bytes_eq(&r->s[0], v);
	case R_NULL:
		return v->type == SP_JSON_NULL;
	case R_TRUE:
		return v->type == SP_JSON_TRUE;
	case R_FALSE:
		return v->type == SP_JSON_FALSE;
	case R_PREFIX:
	case R_SUFFIX:
		return str && affix(&r->s[0], v, r->op == R_PREFIX);
	case R_PREFIX_CI:
		return str && ci_prefix(&r->ci[0], v->s, v->n);
	case R_SUFFIX_CI:
		return str && ci_suffix(&r->ci[0], v->s, v->n);
	case R_EQ_CI:
		return str && ci_eq(&r->ci[0], v->s, v->n);
	case R_WILDCARD:
		return str && wc_match(&r->wc[0], v->s, v->n);
	case R_NOT_STR:
		/* any string not listed, and any number (it is none of the strings) */
		if (v->type == SP_JSON_NUMBER)
			return true;
		for (uint32_t i = 0; str && i < r->n; i++)
			if (bytes_eq(&r->s[i], v))
				return false;
		return str;
	case R_NOT_NUM:
		if (str)
			return true;
		for (uint32_t i = 0; v->type == SP_JSON_NUMBER && i < r->n; i++)
			if (r->num[i] == v->num)
				return false;
		return v->type == SP_JSON_NUMBER;
	case R_NOT_PREFIX:
	case R_NOT_SUFFIX:
	case R_NOT_CI:
	case R_NOT_WILDCARD:
		if (!str)
			return false;
		for (uint32_t i = 0; i < r->n; i++) {
			bool hit = r->op == R_NOT_CI         ? ci_eq(&r->ci[i], v->s, v->n)
			           : r->op == R_NOT_WILDCARD ? wc_match(&r->wc[i], v->s, v->n)
			                                     : affix(&r->s[i], v, r->op == R_NOT_PREFIX);
			if (hit)
				return false;
		}
		return true;
	case R_RANGE:
		return v->type == SP_JSON_NUMBER && (r->lo_open ? v->num > r->lo : v->num >= r->lo) &&
		       (r->hi_open ? v->num < r->hi : v->num <= r->hi);
	}
	return false;
}

static bool rules_any(const rules_t *rs, const val_t *v)
{
	for (uint32_t i = 0; i < rs->n; i++)
		if (rule_match(&rs->v[i], v))
			return true;
	return false;
}

/* ---- the value's nodes ---------------------------------------------------------------------- */

static val_t node_val(const mctx_t *c, const sp_json_node_t *n)
{
	val_t v = {.type = n->type, .num = n->num, .n = n->len};
	if (n->type == SP_JSON_STRING || n->type == SP_JSON_NUMBER)
		v.s = sp_json_bytes(c->b, c->r->value, n);
	return v;
}

/* Rules over the scalars of node idx (an array's, flattened). *any: some scalar seen. */
static bool leaf_walk(const mctx_t *c, const rules_t *rs, uint32_t idx, bool *any)
{
	const sp_json_node_t *n = &c->b->nodes[idx];
	if (n->type == SP_JSON_ARRAY) {
		for (uint32_t k = n->child; k; k = c->b->nodes[k].next)
			if (leaf_walk(c, rs, k, any))
				return true;
		return false;
	}
	if (n->type == SP_JSON_OBJECT)
		return false;
	*any = true;
	val_t v = node_val(c, n);
	return rules_any(rs, &v);
}

static bool match_leaf(const mctx_t *c, const rules_t *rs, uint32_t idx)
{
	bool any = false;
	if (idx && leaf_walk(c, rs, idx, &any))
		return true;
	return any ? rs->exists : rs->absent;
}

static bool match_obj(const mctx_t *c, const pobj_t *p, uint32_t idx)
{
	const sp_json_node_t *nodes = c->b->nodes, *n = &nodes[idx];
	if (!idx)
		return p->missing_ok;
	if (n->type == SP_JSON_ARRAY) {
		/* an empty array, or one of scalars only, holds no object: like a missing one */
		if (!n->child || ((n->flags & SP_JSON_F_SKIPPED) && p->missing_ok))
			return p->missing_ok;
		for (uint32_t k = n->child; k; k = nodes[k].next)
			if (match_obj(c, p, k))
				return true;
		return false;
	}
	if (n->type != SP_JSON_OBJECT)
		return p->missing_ok;
	for (uint32_t i = 0; i < p->nfields; i++) {
		const pfield_t *f = &p->fields[i];
		uint32_t ch = 0;
		for (uint32_t k = n->child; k; k = nodes[k].next)
			if (nodes[k].key == f->key) {
				ch = k;
				break;
			}
		if (f->obj && !match_obj(c, f->obj, ch))
			return false;
		if (f->has_rules && !match_leaf(c, &f->rules, ch))
			return false;
	}
	for (uint32_t i = 0; i < p->nors; i++) {
		uint32_t k;
		for (k = 0; k < p->ors[i].n; k++)
			if (match_obj(c, &p->ors[i].alt[k], idx))
				break;
		if (k == p->ors[i].n)
			return false;
	}
	return true;
}

/* ---- the record's fields ------------------------------------------------------------------ */

static bool field_missing(const pfield_t *f)
{
	return (!f->obj || f->obj->missing_ok) && (!f->has_rules || f->rules.absent);
}

/* A field whose value is the scalar v. */
static bool field_scalar(const pfield_t *f, const val_t *v)
{
	return (!f->obj || f->obj->missing_ok) &&
	       (!f->has_rules || f->rules.exists || rules_any(&f->rules, v));
}

static val_t text_val(const void *p, size_t n)
{
	val_t v = {.type = sp_json_utf8_valid(p, n) ? SP_JSON_STRING : VAL_BYTES, .s = p, .n = n};
	return v;
}

static val_t int_val(char *buf, size_t size, int64_t x)
{
	val_t v = {.type = SP_JSON_NUMBER, .s = buf, .num = (double)x};
	v.n = (size_t)snprintf(buf, size, "%" PRId64, x);
	return v;
}

/* A Kinesis sequence number as its decimal digits: a wide position's number (the bits of
 * x[0] below SPATE_POSITION_WIDE down to w[1]; w[2] is the sub-sequence number), else the
 * number the three low words make. buf holds SPATE_POSITION_MAX bytes. */
static val_t seq_val(char *buf, const spate_position_t *pos)
{
	uint64_t w[7];
	int nw = 0;
	if (pos->x[0] & SPATE_POSITION_WIDE) {
		w[nw++] = pos->x[0] & ~SPATE_POSITION_WIDE;
		for (int i = 1; i < 5; i++)
			w[nw++] = pos->x[i];
		w[nw++] = pos->w[0];
		w[nw++] = pos->w[1];
	} else {
		for (int i = 0; i < 3; i++)
			w[nw++] = pos->w[i];
	}
	char tmp[SPATE_POSITION_MAX];
	size_t n = 0;
	bool more;
	do {
		unsigned __int128 rem = 0;
		more = false;
		for (int i = 0; i < nw; i++) {
			unsigned __int128 cur = (rem << 64) | w[i];
			w[i] = (uint64_t)(cur / 10);
			rem = cur % 10;
			more |= w[i] != 0;
		}
		tmp[n++] = (char)('0' + (int)rem);
	} while (more && n < sizeof(tmp) - 1);
	for (size_t i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	return (val_t){.type = SP_JSON_STRING, .s = buf, .n = n};
}

static bool match_headers(const mctx_t *c, const pobj_t *p)
{
	const spate_record_t *r = c->r;
	for (uint32_t i = 0; i < p->nfields; i++) {
		const pfield_t *g = &p->fields[i];
		bool any = false, hit = false;
		if (g->obj && !g->obj->missing_ok)
			return false; /* header values are scalars */
		if (!g->has_rules)
			continue;
		/* a name given more than once is like an array of its values */
		for (size_t h = 0; h < r->header_cnt && !hit; h++) {
			const spate_header_t *hd = &r->headers[h];
			val_t v = {.type = SP_JSON_NULL};
			if (hd->key_len != g->len || memcmp(hd->key, g->name, g->len))
				continue;
			any = true;
			if (hd->value)
				v = text_val(hd->value, hd->value_len);
			hit = rules_any(&g->rules, &v);
		}
		if (!hit && !(any ? g->rules.exists : g->rules.absent))
			return false;
	}
	for (uint32_t i = 0; i < p->nors; i++) {
		uint32_t k;
		for (k = 0; k < p->ors[i].n; k++)
			if (match_headers(c, &p->ors[i].alt[k]))
				break;
		if (k == p->ors[i].n)
			return false;
	}
	return true;
}

/* Scan the record's value once: JSON, else UTF-8 text, else bytes; or no value. */
static uint8_t read_value(mctx_t *c)
{
	const spate_record_t *r = c->r;
	const msel_t *m = c->f->sel[c->kind];
	int rc;
	if (c->vstate != V_UNREAD)
		return c->vstate;
	if (!r->value)
		return c->vstate = V_NONE;
	rc = sp_json_scan(r->value, r->value_len, m ? &m->sel : NULL, c->b, NULL);
	if (rc >= 0)
		c->vstate = V_JSON;
	else if (rc == SP_JSON_ENOMEM)
		c->vstate = V_NOMEM;
	else
		c->vstate = sp_json_utf8_valid(r->value, r->value_len) ? V_TEXT : V_BYTES;
	return c->vstate;
}

/* "value" of a Kafka-named source. Lambda's table for Kafka: the value is JSON or UTF-8
 * text; a pattern part in the other form (or any, for a value that is not UTF-8) is
 * skipped, and the record is filtered on the rest. */
static bool value_kafka(mctx_t *c, const pfield_t *f)
{
	uint8_t st = read_value(c);
	if (st == V_NOMEM)
		return false;
	if (f->obj && !(st == V_JSON ? match_obj(c, f->obj, 1) : st == V_NONE ? f->obj->missing_ok : true))
		return false;
	if (f->has_rules) {
		val_t v = {.type = SP_JSON_STRING, .s = c->r->value, .n = c->r->value_len};
		if (st == V_TEXT)
			return f->rules.exists || rules_any(&f->rules, &v);
		if (st == V_NONE)
			return f->rules.absent;
	}
	return true;
}

/* "data" of Kinesis. Lambda's table for Kinesis: data must be JSON for a pattern on it to
 * match, and a pattern that is not JSON on data is refused when the mapping is made;
 * we cannot refuse it (a filter does not know its source), so it matches nothing. */
static bool data_kinesis(mctx_t *c, const pfield_t *f)
{
	uint8_t st;
	if (f->has_rules)
		return false;
	st = read_value(c);
	if (st == V_JSON)
		return match_obj(c, f->obj, 1);
	return st == V_NONE && f->obj->missing_ok;
}

static bool top_field(mctx_t *c, const pfield_t *f)
{
	const spate_record_t *r = c->r;
	bool kafka = c->kind == K_KAFKA;
	char buf[SPATE_POSITION_MAX > 80 ? SPATE_POSITION_MAX : 80];
	val_t v;
	switch (f->key) {
	case M_VALUE:
		return kafka ? value_kafka(c, f) : field_missing(f);
	case M_DATA:
		return kafka ? field_missing(f) : data_kinesis(c, f);
	case M_KEY:
	case M_PARTITION_KEY:
		if (kafka != (f->key == M_KEY) || !r->key)
			return field_missing(f);
		v = text_val(r->key, r->key_len);
		break;
	case M_HEADERS:
		if (!kafka)
			return field_missing(f);
		/* headers is an object: a rule list on it sees no scalar */
		if (f->has_rules && !f->rules.absent)
			return false;
		return !f->obj || match_headers(c, f->obj);
	case M_TOPIC:
		if (!kafka || !r->partition->topic)
			return field_missing(f);
		v = text_val(r->partition->topic, strlen(r->partition->topic));
		break;
	case M_PARTITION:
		if (!kafka)
			return field_missing(f);
		v = int_val(buf, sizeof(buf), r->partition->partition);
		break;
	case M_OFFSET:
		if (!kafka || r->position.w[0] || r->position.w[1] || r->position.w[2] > INT64_MAX)
			return field_missing(f);
		v = int_val(buf, sizeof(buf), (int64_t)r->position.w[2]);
		break;
	case M_TIMESTAMP:
		if (!kafka)
			return field_missing(f);
		v = int_val(buf, sizeof(buf), r->timestamp_ms);
		break;
	case M_SEQUENCE:
		if (kafka)
			return field_missing(f);
		v = seq_val(buf, &r->position);
		break;
	case M_ARRIVAL: {
		/* seconds with milliseconds, as Lambda's Kinesis event has it: 1545084650.987 */
		int64_t ms = r->timestamp_ms;
		uint64_t a = ms < 0 ? 0 - (uint64_t)ms : (uint64_t)ms;
		if (kafka)
			return field_missing(f);
		v = (val_t){.type = SP_JSON_NUMBER, .s = buf, .num = (double)ms / 1000.0};
		v.n = (size_t)snprintf(buf, sizeof(buf), "%s%" PRIu64 ".%03u", ms < 0 ? "-" : "", a / 1000,
		                       (unsigned)(a % 1000));
		break;
	}
	default:
		return field_missing(f);
	}
	return field_scalar(f, &v);
}

static bool match_top(mctx_t *c, const pobj_t *p)
{
	for (uint32_t i = 0; i < p->nfields; i++)
		if (!top_field(c, &p->fields[i]))
			return false;
	for (uint32_t i = 0; i < p->nors; i++) {
		uint32_t k;
		for (k = 0; k < p->ors[i].n; k++)
			if (match_top(c, &p->ors[i].alt[k]))
				break;
		if (k == p->ors[i].n)
			return false;
	}
	return true;
}

int sp_filter_match(const sp_filter_t *f, const spate_record_t *r, sp_filter_scratch_t *s)
{
	const spate_partition_t *part = r->partition;
	mctx_t c = {.f = f, .r = r, .b = &s->buf, .vstate = V_UNREAD};
	if (s->part != part || s->source != part->source) {
		s->part = part;
		s->source = part->source;
		s->kind = part->source && !strcmp(part->source, "kinesis") ? K_KINESIS : K_KAFKA;
	}
	c.kind = s->kind;
	for (uint32_t i = 0; i < f->n; i++)
		if (match_top(&c, &f->pat[i]))
			return 1;
	return c.vstate == V_NOMEM ? SPATE_ERR_NOMEM : 0;
}
