/* filter.c - compiling filter patterns (see filter.h; the compiled form is in
 * filter_impl.h, matching in filter_match.c).
 *
 * Each pattern is parsed with the JSON scanner (so a pattern is JSON exactly when the
 * scanner, and jansson, says so), then checked against the EventBridge grammar as
 * aws/event-ruler's JsonRuleCompiler checks it, and built into the tree of
 * filter_impl.h. Every error names the pattern and the byte of it where the offending
 * token starts. Where the grammar leaves a choice, we follow event-ruler: a key given
 * twice merges (nested objects) or replaces (rule lists); "$or" needs an array of at
 * least two non-empty objects, and inside it an operator name is no field name.
 *
 * Last, the fields under "value" (Kafka) and "data" (Kinesis) of every pattern are merged
 * into one selector tree per kind, which tells the scanner what to keep.
 *
 * It is longer than our usual file: it is the grammar, one operator after another, and
 * reads best whole; matching, the other half, is in filter_match.c.
 */
#include "engine/filter_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An error message quotes at most this much of the pattern. */
#define FILTER_ERR_QUOTE 160

typedef struct cctx {
	size_t idx, n;    /* the pattern (1-based in messages) and how many there are */
	const char *text; /* its text */
	size_t len;
	sp_json_buf_t *b; /* its parse */
	char *errstr;
	size_t size;
	bool nomem;
} cctx_t;

static const char *const meta_names[] = {
    [M_VALUE] = "value",
    [M_KEY] = "key",
    [M_HEADERS] = "headers",
    [M_TOPIC] = "topic",
    [M_PARTITION] = "partition",
    [M_OFFSET] = "offset",
    [M_TIMESTAMP] = "timestamp",
    [M_DATA] = "data",
    [M_PARTITION_KEY] = "partitionKey",
    [M_SEQUENCE] = "sequenceNumber",
    [M_ARRIVAL] = "approximateArrivalTimestamp",
};

/* Names event-ruler reserves inside "$or" (its RESERVED_FIELD_NAMES_IN_OR_RELATIONSHIP). */
static const char *const or_reserved[] = {
    "exactly",
    "equals-ignore-case",
    "prefix",
    "suffix",
    "anything-but",
    "exists",
    "wildcard",
    "numeric",
    "cidr",
    "=",
    "<",
    "<=",
    ">",
    ">=",
    "regex",
    "not-wildcard",
    "not-equals-ignore-case",
    "date-after",
    "date-on-or-after",
    "date-before",
    "date-on-or-before",
    "in-date-range",
    "ip-address-in-range",
    "ip-address-not-in-range",
};

__attribute__((format(printf, 3, 4))) static bool cerr(cctx_t *c, uint32_t pos, const char *fmt, ...)
{
	char msg[256], quote[FILTER_ERR_QUOTE + 4];
	size_t q = c->len < FILTER_ERR_QUOTE ? c->len : FILTER_ERR_QUOTE;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (size_t i = 0; i < q; i++)
		quote[i] = (unsigned char)c->text[i] < 0x20 ? ' ' : c->text[i];
	strcpy(quote + q, c->len > q ? "..." : "");
	if (c->errstr && c->size)
		snprintf(c->errstr, c->size, "pattern %zu of %zu, byte %u: %s: %s", c->idx + 1, c->n, pos,
		         msg, quote);
	return false;
}

static bool nomem(cctx_t *c)
{
	c->nomem = true;
	if (c->errstr && c->size)
		snprintf(c->errstr, c->size, "pattern %zu of %zu: out of memory", c->idx + 1, c->n);
	return false;
}

static const sp_json_node_t *node(const cctx_t *c, uint32_t i)
{
	return &c->b->nodes[i];
}

/* A string node's bytes (decoded), NUL-terminated into a new allocation. */
static char *node_strdup(cctx_t *c, const sp_json_node_t *n)
{
	char *s = malloc((size_t)n->len + 1);
	if (s) {
		memcpy(s, sp_json_bytes(c->b, c->text, n), n->len);
		s[n->len] = 0;
	}
	return s;
}

static bool key_is(const cctx_t *c, const sp_json_node_t *n, const char *name)
{
	size_t l = strlen(name);
	return n->klen == l && !memcmp(sp_json_key(c->b, c->text, n), name, l);
}

/* The member's key as a C string for messages (truncated; JSON keys never hold a NUL). */
static const char *key_str(const cctx_t *c, const sp_json_node_t *n, char *buf, size_t size)
{
	size_t l = n->klen < size - 1 ? n->klen : size - 1;
	memcpy(buf, sp_json_key(c->b, c->text, n), l);
	buf[l] = 0;
	return buf;
}

static const char *type_name(uint8_t t)
{
	static const char *const names[] = {"nothing",  "null",     "false",    "true",
	                                    "a number", "a string", "an array", "an object"};
	return names[t];
}

static uint32_t count_children(const cctx_t *c, uint32_t i)
{
	uint32_t n = 0;
	for (uint32_t k = node(c, i)->child; k; k = node(c, k)->next)
		n++;
	return n;
}

/* ---- freeing ------------------------------------------------------------------------- */

static void rule_clear(rule_t *r)
{
	for (uint32_t i = 0; r->s && i < r->n; i++)
		free(r->s[i].s);
	for (uint32_t i = 0; r->ci && i < r->n; i++)
		free(r->ci[i].cp);
	for (uint32_t i = 0; r->wc && i < r->n; i++) {
		for (uint32_t k = 0; r->wc[i].piece && k <= r->wc[i].nstar; k++)
			free(r->wc[i].piece[k].s);
		free(r->wc[i].piece);
	}
	free(r->s);
	free(r->ci);
	free(r->wc);
	free(r->num);
	memset(r, 0, sizeof(*r));
}

static void rules_clear(rules_t *rs)
{
	for (uint32_t i = 0; i < rs->n; i++)
		rule_clear(&rs->v[i]);
	free(rs->v);
	memset(rs, 0, sizeof(*rs));
}

static void pobj_clear(pobj_t *p)
{
	for (uint32_t i = 0; i < p->nfields; i++) {
		pfield_t *f = &p->fields[i];
		free(f->name);
		rules_clear(&f->rules);
		if (f->obj) {
			pobj_clear(f->obj);
			free(f->obj);
		}
	}
	for (uint32_t i = 0; i < p->nors; i++) {
		for (uint32_t k = 0; k < p->ors[i].n; k++)
			pobj_clear(&p->ors[i].alt[k]);
		free(p->ors[i].alt);
	}
	free(p->fields);
	free(p->ors);
	memset(p, 0, sizeof(*p));
}

static void msel_free(msel_t *m)
{
	if (!m)
		return;
	for (uint32_t i = 0; i < m->sel.nkeys; i++) {
		free((char *)m->keys[i].name);
		msel_free((msel_t *)m->keys[i].child);
	}
	free(m->keys);
	free(m);
}

void sp_filter_free(sp_filter_t *f)
{
	if (!f)
		return;
	for (uint32_t i = 0; i < f->n; i++)
		pobj_clear(&f->pat[i]);
	free(f->pat);
	for (int k = 0; k < K_N; k++)
		msel_free(f->sel[k]);
	free(f);
}

/* ---- strings: case folding and wildcards ----------------------------------------------- */

/* Case folding: the simple lower-case mapping of ASCII, Latin-1, Latin Extended-A, Greek
 * and Cyrillic (final sigma folds to sigma). Other scripts compare as they are. */
static bool names_meta(const pobj_t *o, uint16_t meta)
{
	for (uint32_t i = 0; i < o->nfields; i++)
		if (o->fields[i].key == meta)
			return true;
	for (uint32_t i = 0; i < o->nors; i++)
		for (uint32_t j = 0; j < o->ors[i].n; j++)
			if (names_meta(&o->ors[i].alt[j], meta))
				return true;
	return false;
}

bool sp_filter_uses_headers(const sp_filter_t *f)
{
	for (uint32_t i = 0; f && i < f->n; i++)
		if (names_meta(&f->pat[i], M_HEADERS))
			return true;
	return false;
}

uint32_t sp_filter_fold(uint32_t c)
{
	if (c < 0x80)
		return c >= 'A' && c <= 'Z' ? c + 32 : c;
	if (c < 0x100)
		return c >= 0xC0 && c <= 0xDE && c != 0xD7 ? c + 32 : c;
	if (c < 0x180) {
		if (c == 0x178)
			return 0xFF;
		if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E))
			return c & 1 ? c + 1 : c;
		if (c <= 0x137 && c != 0x130 && c != 0x131)
			return c & 1 ? c : c + 1;
		if (c >= 0x14A && c <= 0x177)
			return c & 1 ? c : c + 1;
		return c;
	}
	if (c >= 0x386 && c <= 0x3AB) {
		if (c >= 0x391 && c != 0x3A2)
			return c + 32;
		if (c == 0x386)
			return 0x3AC;
		if (c >= 0x388 && c <= 0x38A)
			return c + 37;
		if (c == 0x38C)
			return 0x3CC;
		if (c == 0x38E || c == 0x38F)
			return c + 63;
		return c;
	}
	if (c == 0x3C2)
		return 0x3C3;
	if (c >= 0x400 && c <= 0x42F)
		return c < 0x410 ? c + 80 : c + 32;
	return c;
}

static bool ci_make(cistr_t *out, const char *s, size_t n)
{
	const uint8_t *p = (const uint8_t *)s, *e = p + n;
	out->cp = malloc((n ? n : 1) * sizeof(uint32_t));
	out->n = 0;
	if (!out->cp)
		return false;
	while (p < e)
		out->cp[out->n++] = sp_filter_fold(sp_filter_utf8_next(&p));
	return true;
}

/* Check a wildcard as event-ruler does (no "**"; a backslash escapes only '*' and '\').
 * Returns -1 when good, else the offending character's index. *consec tells which. */
static long wc_check(const char *s, size_t n, bool *consec)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '*' && i + 1 < n && s[i + 1] == '*') {
			*consec = true;
			return (long)i;
		}
		if (s[i] == '\\') {
			if (i + 1 < n && (s[i + 1] == '*' || s[i + 1] == '\\')) {
				i++;
				continue;
			}
			*consec = false;
			return (long)i;
		}
	}
	return -1;
}

/* Split a checked wildcard into its literal pieces. */
static bool wc_make(wcard_t *w, const char *s, size_t n)
{
	uint32_t stars = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '*')
			stars++;
	}
	w->nstar = stars;
	w->piece = calloc((size_t)stars + 1, sizeof(*w->piece));
	if (!w->piece)
		return false;
	for (uint32_t k = 0; k <= stars; k++) {
		w->piece[k].s = malloc(n + 1);
		if (!w->piece[k].s)
			return false;
	}
	uint32_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '*') {
			k++;
			continue;
		}
		if (s[i] == '\\')
			i++;
		w->piece[k].s[w->piece[k].n++] = s[i];
	}
	return true;
}

/* ---- rules --------------------------------------------------------------------------- */

static bool rule_add(cctx_t *c, rules_t *rs, rule_t **out)
{
	rule_t *v = realloc(rs->v, ((size_t)rs->n + 1) * sizeof(*v));
	if (!v)
		return nomem(c);
	rs->v = v;
	*out = memset(&v[rs->n++], 0, sizeof(*v));
	return true;
}

static bool bstr_set(cctx_t *c, rule_t *r, uint32_t n)
{
	r->s = calloc(n, sizeof(*r->s));
	r->n = n;
	return r->s ? true : nomem(c);
}

static bool bstr_from(cctx_t *c, bstr_t *s, const sp_json_node_t *n)
{
	s->s = node_strdup(c, n);
	s->n = n->len;
	return s->s ? true : nomem(c);
}

/* A rule over one string or a list of strings: prefix, suffix, equals-ignore-case and
 * wildcard, alone or under anything-but. */
static bool strset_rule(cctx_t *c, rule_t *r, uint8_t op, uint32_t vi, const char *what)
{
	const sp_json_node_t *v = node(c, vi);
	uint32_t n = 1, i = 0;
	bool list = v->type == SP_JSON_ARRAY && op >= R_NOT_STR,
	     ci = op == R_PREFIX_CI || op == R_SUFFIX_CI || op == R_EQ_CI || op == R_NOT_CI,
	     wild = op == R_WILDCARD || op == R_NOT_WILDCARD,
	     noempty = op == R_NOT_PREFIX || op == R_NOT_SUFFIX;
	if (list) {
		n = count_children(c, vi);
		if (!n)
			return cerr(c, v->pos, "%s has an empty list", what);
	} else if (v->type != SP_JSON_STRING) {
		return cerr(c, v->pos, "%s needs a string%s, got %s", what,
		            op >= R_NOT_STR ? " or a list of strings" : "", type_name(v->type));
	}
	r->op = op;
	r->n = n;
	if (ci     ? !(r->ci = calloc(n, sizeof(*r->ci)))
	    : wild ? !(r->wc = calloc(n, sizeof(*r->wc)))
	           : !(r->s = calloc(n, sizeof(*r->s))))
		return nomem(c);
	for (uint32_t k = list ? v->child : vi; k; k = list ? node(c, k)->next : 0, i++) {
		const sp_json_node_t *e = node(c, k);
		const char *s = sp_json_bytes(c->b, c->text, e);
		if (e->type != SP_JSON_STRING)
			return cerr(c, e->pos, "%s lists only strings, not %s", what, type_name(e->type));
		if (noempty && !e->len)
			return cerr(c, e->pos, "%s cannot be empty", what);
		if (wild) {
			bool consec;
			long at = wc_check(s, e->len, &consec);
			if (at >= 0)
				return cerr(
				    c, e->pos, "%s: %s at character %ld of the wildcard", what,
				    consec ? "two '*' in a row" : "a backslash escapes only '*' or '\\'", at);
			if (!wc_make(&r->wc[i], s, e->len))
				return nomem(c);
		} else if (ci) {
			if (!ci_make(&r->ci[i], s, e->len))
				return nomem(c);
		} else if (!bstr_from(c, &r->s[i], e)) {
			return false;
		}
	}
	return true;
}

/* {"prefix": "x"} or {"prefix": {"equals-ignore-case": "x"}}, and the same for suffix. */
static bool affix_rule(cctx_t *c, rule_t *r, uint32_t vi, bool prefix)
{
	const sp_json_node_t *v = node(c, vi);
	const char *what = prefix ? "\"prefix\"" : "\"suffix\"";
	if (v->type == SP_JSON_STRING)
		return strset_rule(c, r, prefix ? R_PREFIX : R_SUFFIX, vi, what);
	if (v->type != SP_JSON_OBJECT || count_children(c, vi) != 1 ||
	    !key_is(c, node(c, v->child), "equals-ignore-case"))
		return cerr(c, v->type == SP_JSON_OBJECT && v->child ? node(c, v->child)->kpos : v->pos,
		            "%s needs a string or {\"equals-ignore-case\": \"...\"}", what);
	if (node(c, v->child)->type != SP_JSON_STRING)
		return cerr(c, node(c, v->child)->pos, "\"equals-ignore-case\" needs a string, got %s",
		            type_name(node(c, v->child)->type));
	return strset_rule(c, r, prefix ? R_PREFIX_CI : R_SUFFIX_CI, v->child, what);
}

static bool anything_but_rule(cctx_t *c, rule_t *r, uint32_t vi)
{
	const sp_json_node_t *v = node(c, vi);
	static const struct {
		const char *name, *what;
		uint8_t op;
	} inner[] = {
	    {"prefix", "\"anything-but\"/\"prefix\"", R_NOT_PREFIX},
	    {"suffix", "\"anything-but\"/\"suffix\"", R_NOT_SUFFIX},
	    {"equals-ignore-case", "\"anything-but\"/\"equals-ignore-case\"", R_NOT_CI},
	    {"wildcard", "\"anything-but\"/\"wildcard\"", R_NOT_WILDCARD},
	};
	if (v->type == SP_JSON_OBJECT) {
		char kb[64];
		const sp_json_node_t *k = v->child ? node(c, v->child) : NULL;
		if (!k)
			return cerr(c, v->pos, "\"anything-but\" needs an operator inside its object");
		if (k->next)
			return cerr(c, node(c, k->next)->kpos,
			            "\"anything-but\" holds one operator; \"%s\" is a second",
			            key_str(c, node(c, k->next), kb, sizeof(kb)));
		for (size_t i = 0; i < sizeof(inner) / sizeof(inner[0]); i++)
			if (key_is(c, k, inner[i].name))
				return strset_rule(c, r, inner[i].op, v->child, inner[i].what);
		return cerr(
		    c, k->kpos,
		    "\"anything-but\" takes \"prefix\", \"suffix\", \"equals-ignore-case\" or \"wildcard\" "
		    "inside, not \"%s\"",
		    key_str(c, k, kb, sizeof(kb)));
	}
	/* a string, a number, or a list of only strings or only numbers */
	bool list = v->type == SP_JSON_ARRAY;
	uint32_t n = list ? count_children(c, vi) : 1, i = 0;
	uint8_t first = list ? (v->child ? node(c, v->child)->type : SP_JSON_NONE) : v->type;
	if (list && !n)
		return cerr(c, v->pos, "\"anything-but\" has an empty list");
	if (first != SP_JSON_STRING && first != SP_JSON_NUMBER)
		return cerr(c, list ? node(c, v->child)->pos : v->pos,
		            "\"anything-but\" needs strings or numbers (or an operator object), got %s",
		            type_name(first));
	r->op = first == SP_JSON_STRING ? R_NOT_STR : R_NOT_NUM;
	r->n = n;
	if (first == SP_JSON_STRING ? !(r->s = calloc(n, sizeof(*r->s)))
	                            : !(r->num = calloc(n, sizeof(*r->num))))
		return nomem(c);
	for (uint32_t k = list ? v->child : vi; k; k = list ? node(c, k)->next : 0, i++) {
		const sp_json_node_t *e = node(c, k);
		if (e->type != first)
			return cerr(c, e->pos,
			            "\"anything-but\" lists %s and %s together; a list holds one kind",
			            type_name(first), type_name(e->type));
		if (first == SP_JSON_NUMBER)
			r->num[i] = e->num;
		else if (!bstr_from(c, &r->s[i], e))
			return false;
	}
	return true;
}

static bool numeric_rule(cctx_t *c, rule_t *r, uint32_t vi)
{
	const sp_json_node_t *v = node(c, vi), *e[5] = {NULL};
	uint32_t n = 0;
	if (v->type != SP_JSON_ARRAY)
		return cerr(c, v->pos, "\"numeric\" needs an array such as [\">\", 0, \"<=\", 5], got %s",
		            type_name(v->type));
	for (uint32_t k = v->child; k; k = node(c, k)->next) {
		if (n == 4)
			return cerr(c, node(c, k)->pos, "\"numeric\" has too many elements (at most 4)");
		e[n++] = node(c, k);
	}
	r->op = R_RANGE;
	r->lo = -HUGE_VAL;
	r->hi = HUGE_VAL;
	for (uint32_t i = 0; i < n; i += 2) {
		char op[3] = "";
		if (e[i]->type != SP_JSON_STRING || e[i]->len > 2)
			return cerr(c, e[i]->pos, "\"numeric\" expects an operator (=, <, <=, >, >=) here");
		memcpy(op, sp_json_bytes(c->b, c->text, e[i]), e[i]->len);
		bool lt = !strcmp(op, "<") || !strcmp(op, "<="), gt = !strcmp(op, ">") || !strcmp(op, ">="),
		     eq = !strcmp(op, "=");
		if (!lt && !gt && !eq)
			return cerr(c, e[i]->pos, "\"numeric\": unknown operator \"%s\"", op);
		if (i == 2 && !lt)
			return cerr(c, e[i]->pos,
			            "\"numeric\": a range's second operator is < or <=, not \"%s\"", op);
		if (i + 1 >= n || e[i + 1]->type != SP_JSON_NUMBER)
			return cerr(c, i + 1 < n ? e[i + 1]->pos : e[i]->pos,
			            "\"numeric\": \"%s\" needs a number after it", op);
		if (i == 0 && !gt && n > 2)
			return cerr(c, e[2]->pos, "\"numeric\": only > or >= starts a range");
		double x = e[i + 1]->num;
		if (eq) {
			r->lo = r->hi = x;
		} else if (gt) {
			r->lo = x;
			r->lo_open = op[1] == 0;
		} else {
			r->hi = x;
			r->hi_open = op[1] == 0;
		}
	}
	if (n == 0)
		return cerr(c, v->pos, "\"numeric\" has an empty array");
	if (n == 4 && !(r->lo < r->hi))
		return cerr(c, e[3]->pos, "\"numeric\": the range's low end %g is not below its high end %g",
		            r->lo, r->hi);
	return true;
}

/* One operator object of a rule list: {"prefix": ...}, {"numeric": [...]}, ... */
static bool op_rule(cctx_t *c, rules_t *rs, uint32_t oi)
{
	const sp_json_node_t *o = node(c, oi), *k, *v;
	char kb[64];
	rule_t *r = NULL;
	if (!o->child)
		return cerr(c, o->pos, "an operator object needs one operator");
	k = node(c, o->child);
	if (k->next)
		return cerr(c, node(c, k->next)->kpos,
		            "an operator object holds one operator; \"%s\" is a second",
		            key_str(c, node(c, k->next), kb, sizeof(kb)));
	v = k;
	if (key_is(c, k, "exists")) {
		if (v->type != SP_JSON_TRUE && v->type != SP_JSON_FALSE)
			return cerr(c, v->pos, "\"exists\" needs true or false, got %s", type_name(v->type));
		if (v->type == SP_JSON_TRUE)
			rs->exists = true;
		else
			rs->absent = true;
		return true;
	}
	if (key_is(c, k, "cidr"))
		return cerr(c, k->kpos,
		            "\"cidr\" (IP address ranges) is not supported by Lambda's filters or spate's");
	if (!rule_add(c, rs, &r))
		return false;
	if (key_is(c, k, "prefix"))
		return affix_rule(c, r, o->child, true);
	if (key_is(c, k, "suffix"))
		return affix_rule(c, r, o->child, false);
	if (key_is(c, k, "equals-ignore-case"))
		return strset_rule(c, r, R_EQ_CI, o->child, "\"equals-ignore-case\"");
	if (key_is(c, k, "wildcard"))
		return strset_rule(c, r, R_WILDCARD, o->child, "\"wildcard\"");
	if (key_is(c, k, "anything-but"))
		return anything_but_rule(c, r, o->child);
	if (key_is(c, k, "numeric"))
		return numeric_rule(c, r, o->child);
	return cerr(c, k->kpos, "unknown operator \"%s\"", key_str(c, k, kb, sizeof(kb)));
}

/* A field's list of rules (replacing any earlier list of the same field). */
static bool build_rules(cctx_t *c, pfield_t *f, uint32_t ai)
{
	const sp_json_node_t *a = node(c, ai);
	char kb[64];
	rules_clear(&f->rules);
	f->has_rules = true;
	if (!a->child)
		return cerr(c, a->pos, "\"%s\" has an empty list of rules, which matches nothing",
		            key_str(c, a, kb, sizeof(kb)));
	for (uint32_t k = a->child; k; k = node(c, k)->next) {
		const sp_json_node_t *e = node(c, k);
		rule_t *r;
		if (e->type == SP_JSON_OBJECT) {
			if (!op_rule(c, &f->rules, k))
				return false;
			continue;
		}
		if (e->type == SP_JSON_ARRAY)
			return cerr(c, e->pos,
			            "a rule is a string, a number, true, false, null or an operator object, "
			            "not an array");
		if (!rule_add(c, &f->rules, &r))
			return false;
		switch (e->type) {
		case SP_JSON_STRING:
		case SP_JSON_NUMBER:
			/* a number keeps its text: Lambda compares numbers as written (300 is not 3e2) */
			r->op = e->type == SP_JSON_STRING ? R_STR : R_NUM;
			if (!bstr_set(c, r, 1) || !bstr_from(c, &r->s[0], e))
				return false;
			break;
		default:
			r->op = e->type == SP_JSON_NULL ? R_NULL : e->type == SP_JSON_TRUE ? R_TRUE : R_FALSE;
		}
	}
	return true;
}

/* ---- objects ------------------------------------------------------------------------- */

static pfield_t *field_get(cctx_t *c, pobj_t *p, const sp_json_node_t *m, bool top)
{
	const char *k = sp_json_key(c->b, c->text, m);
	for (uint32_t i = 0; i < p->nfields; i++)
		if (p->fields[i].len == m->klen && !memcmp(p->fields[i].name, k, m->klen))
			return &p->fields[i];
	pfield_t *v = realloc(p->fields, ((size_t)p->nfields + 1) * sizeof(*v));
	if (!v)
		return nomem(c), NULL;
	p->fields = v;
	pfield_t *f = memset(&v[p->nfields++], 0, sizeof(*f));
	f->name = malloc((size_t)m->klen + 1);
	if (!f->name)
		return nomem(c), NULL;
	memcpy(f->name, k, m->klen);
	f->name[m->klen] = 0;
	f->len = m->klen;
	if (top)
		for (uint16_t id = 1; id < sizeof(meta_names) / sizeof(meta_names[0]); id++)
			if (!strcmp(f->name, meta_names[id]))
				f->key = id;
	return f;
}

static bool build_obj(cctx_t *c, pobj_t *p, uint32_t oi, bool top, bool in_or);

static bool build_or(cctx_t *c, pobj_t *p, uint32_t mi, bool top)
{
	const sp_json_node_t *m = node(c, mi);
	uint32_t n = 0, i = 0;
	if (m->type == SP_JSON_ARRAY)
		n = count_children(c, mi);
	if (m->type != SP_JSON_ARRAY || n < 2)
		return cerr(c, m->pos, "\"$or\" needs an array of at least two objects");
	por_t *v = realloc(p->ors, ((size_t)p->nors + 1) * sizeof(*v));
	if (!v)
		return nomem(c);
	p->ors = v;
	por_t *g = &v[p->nors++];
	g->n = n;
	g->alt = calloc(n, sizeof(*g->alt));
	if (!g->alt)
		return g->n = 0, nomem(c);
	for (uint32_t k = m->child; k; k = node(c, k)->next, i++) {
		if (node(c, k)->type != SP_JSON_OBJECT)
			return cerr(c, node(c, k)->pos, "\"$or\" holds only objects, not %s",
			            type_name(node(c, k)->type));
		if (!build_obj(c, &g->alt[i], k, top, true))
			return false;
	}
	return true;
}

static bool build_obj(cctx_t *c, pobj_t *p, uint32_t oi, bool top, bool in_or)
{
	const sp_json_node_t *o = node(c, oi);
	char kb[64];
	if (!o->child)
		return cerr(c, o->pos, "an empty object matches nothing");
	for (uint32_t k = o->child; k; k = node(c, k)->next) {
		const sp_json_node_t *m = node(c, k);
		pfield_t *f;
		if (key_is(c, m, "$or")) {
			if (!build_or(c, p, k, top))
				return false;
			continue;
		}
		if (in_or)
			for (size_t i = 0; i < sizeof(or_reserved) / sizeof(or_reserved[0]); i++)
				if (key_is(c, m, or_reserved[i]))
					return cerr(c, m->kpos,
					            "\"%s\" is an operator, not a field name, inside \"$or\"",
					            or_reserved[i]);
		if (m->type != SP_JSON_OBJECT && m->type != SP_JSON_ARRAY)
			return cerr(c, m->pos, "\"%s\" must be an object or an array of rules, not %s",
			            key_str(c, m, kb, sizeof(kb)), type_name(m->type));
		if (!(f = field_get(c, p, m, top)))
			return false;
		if (m->type == SP_JSON_ARRAY) {
			if (!build_rules(c, f, k))
				return false;
			continue;
		}
		if (!f->obj && !(f->obj = calloc(1, sizeof(*f->obj))))
			return nomem(c);
		if (!build_obj(c, f->obj, k, false, in_or))
			return false;
	}
	return true;
}

/* Whether p matches a missing value: every field would then be missing too. */
static bool missing_ok(pobj_t *p)
{
	bool ok = true;
	for (uint32_t i = 0; i < p->nfields; i++) {
		pfield_t *f = &p->fields[i];
		bool fo = true;
		if (f->obj)
			fo = missing_ok(f->obj);
		if (f->has_rules && !f->rules.absent)
			fo = false;
		ok = ok && fo;
	}
	for (uint32_t i = 0; i < p->nors; i++) {
		bool any = false;
		for (uint32_t k = 0; k < p->ors[i].n; k++)
			any = missing_ok(&p->ors[i].alt[k]) || any;
		ok = ok && any;
	}
	p->missing_ok = ok;
	return ok;
}

/* The top level's data fields go last, so a record that fails on its key or topic is not
 * parsed at all. */
static void order_top(pobj_t *p)
{
	uint32_t w = 0;
	for (int data = 0; data < 2; data++)
		for (uint32_t i = w; i < p->nfields; i++) {
			pfield_t tmp = p->fields[i];
			if ((tmp.key == M_VALUE || tmp.key == M_DATA) != data)
				continue;
			memmove(&p->fields[w + 1], &p->fields[w], (i - w) * sizeof(tmp));
			p->fields[w++] = tmp;
		}
	for (uint32_t i = 0; i < p->nors; i++)
		for (uint32_t k = 0; k < p->ors[i].n; k++)
			order_top(&p->ors[i].alt[k]);
}

/* ---- selectors ----------------------------------------------------------------------- */

static msel_t *msel_new(void)
{
	return calloc(1, sizeof(msel_t));
}

/* The index of key name in m, added (with a new child) when absent; -1 out of memory. */
static int msel_key(msel_t *m, const char *name, uint32_t len)
{
	for (uint32_t i = 0; i < m->sel.nkeys; i++)
		if (m->keys[i].len == len && !memcmp(m->keys[i].name, name, len))
			return (int)i;
	if (m->sel.nkeys >= SP_JSON_KEY_NONE)
		return -1;
	if (m->sel.nkeys == m->cap) {
		uint32_t cap = m->cap ? m->cap * 2 : 4;
		sp_json_selkey_t *k = realloc(m->keys, cap * sizeof(*k));
		if (!k)
			return -1;
		m->keys = k;
		m->cap = cap;
		m->sel.keys = k;
	}
	msel_t *child = msel_new();
	char *nm = strdup(name);
	if (!child || !nm) {
		free(child);
		free(nm);
		return -1;
	}
	m->keys[m->sel.nkeys] = (sp_json_selkey_t){.name = nm, .len = len, .child = &child->sel};
	if (len > m->sel.maxlen)
		m->sel.maxlen = len;
	return (int)m->sel.nkeys++;
}

static bool sel_register(msel_t *m, pobj_t *p)
{
	for (uint32_t i = 0; i < p->nfields; i++) {
		pfield_t *f = &p->fields[i];
		int k = msel_key(m, f->name, f->len);
		if (k < 0)
			return false;
		f->key = (uint16_t)k;
		msel_t *child = (msel_t *)m->keys[k].child;
		if (f->has_rules)
			child->sel.leaf = true;
		if (f->obj && !sel_register(child, f->obj))
			return false;
	}
	for (uint32_t i = 0; i < p->nors; i++)
		for (uint32_t k = 0; k < p->ors[i].n; k++)
			if (!sel_register(m, &p->ors[i].alt[k]))
				return false;
	return true;
}

/* Register the value/data fields of a top-level object (and its top-level $or). */
static bool sel_top(sp_filter_t *f, pobj_t *p)
{
	for (uint32_t i = 0; i < p->nfields; i++) {
		pfield_t *fl = &p->fields[i];
		int kind = fl->key == M_VALUE ? K_KAFKA : fl->key == M_DATA ? K_KINESIS : -1;
		if (kind < 0)
			continue;
		f->reads[kind] = true;
		if (!fl->obj)
			continue;
		if (!f->sel[kind] && !(f->sel[kind] = msel_new()))
			return false;
		if (!sel_register(f->sel[kind], fl->obj))
			return false;
	}
	for (uint32_t i = 0; i < p->nors; i++)
		for (uint32_t k = 0; k < p->ors[i].n; k++)
			if (!sel_top(f, &p->ors[i].alt[k]))
				return false;
	return true;
}

sp_filter_t *sp_filter_compile(const char *const *patterns, size_t n, char *errstr, size_t size)
{
	sp_json_buf_t b = SP_JSON_BUF_INIT;
	sp_filter_t *f;
	cctx_t c = {.n = n, .b = &b, .errstr = errstr, .size = size};

	if (n < 1 || n > SP_FILTER_MAX_PATTERNS || !patterns) {
		if (errstr && size)
			snprintf(errstr, size, "%zu patterns: a filter has 1 to %d", n,
			         SP_FILTER_MAX_PATTERNS);
		return NULL;
	}
	if (!(f = calloc(1, sizeof(*f))) || !(f->pat = calloc(n, sizeof(*f->pat)))) {
		free(f);
		nomem(&c);
		return NULL;
	}
	f->n = (uint32_t)n;
	for (c.idx = 0; c.idx < n; c.idx++) {
		size_t off;
		int root;
		if (!patterns[c.idx]) {
			if (errstr && size)
				snprintf(errstr, size, "pattern %zu of %zu is NULL", c.idx + 1, n);
			goto fail;
		}
		c.text = patterns[c.idx];
		c.len = strlen(c.text);
		if (c.len > SP_FILTER_MAX_PATTERN_BYTES) {
			cerr(&c, SP_FILTER_MAX_PATTERN_BYTES, "the pattern has %zu bytes; the most is %d",
			     c.len, SP_FILTER_MAX_PATTERN_BYTES);
			goto fail;
		}
		root = sp_json_scan(c.text, c.len, &sp_json_sel_all, &b, &off);
		if (root == SP_JSON_ENOMEM) {
			nomem(&c);
			goto fail;
		}
		if (root < 0) {
			cerr(&c, (uint32_t)off, "not valid JSON");
			goto fail;
		}
		if (node(&c, 1)->type != SP_JSON_OBJECT) {
			cerr(&c, node(&c, 1)->pos, "a pattern is a JSON object, not %s",
			     type_name(node(&c, 1)->type));
			goto fail;
		}
		if (!build_obj(&c, &f->pat[c.idx], 1, true, false))
			goto fail;
		order_top(&f->pat[c.idx]);
		missing_ok(&f->pat[c.idx]);
		if (!sel_top(f, &f->pat[c.idx])) {
			nomem(&c);
			goto fail;
		}
	}
	sp_json_buf_free(&b);
	return f;
fail:
	sp_json_buf_free(&b);
	sp_filter_free(f);
	return NULL;
}
