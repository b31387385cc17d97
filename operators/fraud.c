/* fraud.c - the fraud handler (handler=fraud): stateless rules on card transactions.
 *
 * Each record's value is a flat JSON object such as
 *   {"tx":"t-1","card":"4000-1234-5678-9012","merchant":"m-0042","amount":123.45,
 *    "currency":"EUR","country":"DE","ts":1700000000000}
 * and it is flagged when any of these rules hits:
 *  - amount:      amount is above fraud.amount.max (compared exactly in decimal);
 *  - merchant:    merchant is one of fraud.block.merchants;
 *  - card_prefix: the card's digits start with one of fraud.block.card.prefixes
 *                 (separators '-' and ' ' are ignored on both sides);
 *  - currency:    the country is in a small fixed table and the currency is not its own.
 * A value that is not such an object (bad JSON, a required field missing or of the
 * wrong type, a required field given twice) is counted as malformed, not failed: the
 * handler never fails a batch.
 *
 * The scanner below reads the value in place, allocating nothing; only a string with
 * escapes is decoded, into a small buffer on the stack. Counts go to a per-worker
 * context (made in init, flushed into the handler's totals with relaxed atomic adds
 * every FRAUD_FLUSH_RECORDS records and in fini), so workers share no cache line on
 * the hot path. report() prints the totals.
 */
#include "sp_spi.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A worker adds its counts into the shared totals after this many records (and when it
 * stops), so totals are near-live without an atomic per batch. */
#define FRAUD_FLUSH_RECORDS 65536
/* Nesting allowed inside fields the rules do not read (deeper is malformed). */
#define FRAUD_JSON_MAX_DEPTH 32
/* Longest decoded value of an escaped field or key the rules read; a longer one is
 * malformed (fields without escapes are read in place, of any length). */
#define FRAUD_FIELD_MAX 128
/* Longest entry of fraud.block.merchants and fraud.block.card.prefixes. */
#define FRAUD_LIST_ITEM_MAX 256
/* An exponent beyond this is clamped: the value is then far outside any amount. */
#define FRAUD_EXP_CLAMP 100000

enum { C_RECORDS, C_FLAGGED, C_AMOUNT, C_MERCHANT, C_CARD, C_CURRENCY, C_MALFORMED, C_N };

static const char *const counter_names[C_N] = {
    "fraud.records",     "fraud.flagged",  "fraud.amount",    "fraud.merchant",
    "fraud.card_prefix", "fraud.currency", "fraud.malformed",
};

/* Rule hits of one record. */
#define HIT_AMOUNT    1u
#define HIT_MERCHANT  2u
#define HIT_CARD      4u
#define HIT_CURRENCY  8u
#define HIT_MALFORMED 16u

/* Countries and the currency each one pays in. A country not listed never trips the
 * currency rule. gen's fraud kind draws from a subset of this table. */
static const struct {
	char country[3], currency[4];
} countries[] = {
    {"AT", "EUR"}, {"AU", "AUD"}, {"BE", "EUR"}, {"BR", "BRL"}, {"CA", "CAD"}, {"CH", "CHF"}, {"CN", "CNY"},
    {"DE", "EUR"}, {"DK", "DKK"}, {"ES", "EUR"}, {"FI", "EUR"}, {"FR", "EUR"}, {"GB", "GBP"}, {"IE", "EUR"},
    {"IN", "INR"}, {"IT", "EUR"}, {"JP", "JPY"}, {"KR", "KRW"}, {"MX", "MXN"}, {"NL", "EUR"}, {"NO", "NOK"},
    {"NZ", "NZD"}, {"PL", "PLN"}, {"PT", "EUR"}, {"SE", "SEK"}, {"SG", "SGD"}, {"US", "USD"}, {"ZA", "ZAR"},
};
#define NCOUNTRIES (sizeof(countries) / sizeof(countries[0]))

typedef struct span {
	const char *p;
	size_t n;
} span_t;

typedef struct fraud {
	uint64_t amount_max;
	span_t *merchants; /* sorted by length, then bytes */
	size_t nmerchants;
	span_t *prefixes; /* digits only */
	size_t nprefixes;
	char *mstrs, *pstrs; /* the bytes the lists point into */
	/* country "AB" -> 1 + index into countries[], 0 when not listed */
	uint8_t country_idx[26 * 26];
	_Atomic uint64_t totals[C_N];
	char *sink; /* fraud.sink: where flagged records go, or NULL */
} fraud_t;

typedef struct fraud_worker {
	uint64_t c[C_N]; /* not yet flushed */
} fraud_worker_t;

/* ---- the JSON scanner ------------------------------------------------------------------ */

/* A string as it appears between its quotes. */
typedef struct jstr {
	const char *p;
	size_t n;
	bool esc; /* holds escapes: decode before comparing */
} jstr_t;

/* A number as mantissa * 10^e10 with up to 19 significant digits; tail says digits
 * beyond those were not all zero. */
typedef struct jnum {
	uint64_t m;
	int e10;
	bool neg, tail;
} jnum_t;

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* p at '"': checks the string and returns the byte after its closing quote, or NULL. */
static const char *scan_string(const char *p, const char *end, jstr_t *out)
{
	const char *s = ++p;
	bool esc = false;
	while (p < end) {
		unsigned char ch = (unsigned char)*p;
		if (ch == '"') {
			out->p = s;
			out->n = (size_t)(p - s);
			out->esc = esc;
			return p + 1;
		}
		if (ch < 0x20)
			return NULL;
		if (ch == '\\') {
			esc = true;
			if (++p >= end)
				return NULL;
			switch (*p) {
			case '"':
			case '\\':
			case '/':
			case 'b':
			case 'f':
			case 'n':
			case 'r':
			case 't':
				break;
			case 'u':
				if (end - p < 5)
					return NULL;
				for (int k = 1; k <= 4; k++)
					if (hexval(p[k]) < 0)
						return NULL;
				p += 4;
				break;
			default:
				return NULL;
			}
		}
		p++;
	}
	return NULL;
}

/* Four hex digits that scan_string checked. */
static unsigned hex4(const char *p)
{
	unsigned v = 0;
	for (int k = 0; k < 4; k++)
		v = v << 4 | ((unsigned)hexval(p[k]) & 0xF);
	return v;
}

/* Decode a checked string with escapes into buf (cap bytes) as UTF-8. Returns the
 * length, or -1 when it does not fit or holds a lone surrogate. */
static int decode(const jstr_t *s, char *buf, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < s->n; i++) {
		char ch = s->p[i];
		if (ch != '\\') {
			if (o >= cap)
				return -1;
			buf[o++] = ch;
			continue;
		}
		ch = s->p[++i];
		uint32_t cp;
		switch (ch) {
		case 'b':
			cp = '\b';
			break;
		case 'f':
			cp = '\f';
			break;
		case 'n':
			cp = '\n';
			break;
		case 'r':
			cp = '\r';
			break;
		case 't':
			cp = '\t';
			break;
		case 'u':
			cp = hex4(s->p + i + 1);
			i += 4;
			if (cp >= 0xDC00 && cp <= 0xDFFF)
				return -1;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (i + 6 >= s->n || s->p[i + 1] != '\\' || s->p[i + 2] != 'u')
					return -1;
				uint32_t lo = hex4(s->p + i + 3);
				if (lo < 0xDC00 || lo > 0xDFFF)
					return -1;
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				i += 6;
			}
			break;
		default:
			cp = (unsigned char)ch;
			break; /* " \ / */
		}
		size_t need = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
		if (o + need > cap)
			return -1;
		if (need == 1) {
			buf[o++] = (char)cp;
		} else if (need == 2) {
			buf[o++] = (char)(0xC0 | cp >> 6);
			buf[o++] = (char)(0x80 | (cp & 0x3F));
		} else if (need == 3) {
			buf[o++] = (char)(0xE0 | cp >> 12);
			buf[o++] = (char)(0x80 | (cp >> 6 & 0x3F));
			buf[o++] = (char)(0x80 | (cp & 0x3F));
		} else {
			buf[o++] = (char)(0xF0 | cp >> 18);
			buf[o++] = (char)(0x80 | (cp >> 12 & 0x3F));
			buf[o++] = (char)(0x80 | (cp >> 6 & 0x3F));
			buf[o++] = (char)(0x80 | (cp & 0x3F));
		}
	}
	return (int)o;
}

/* A JSON number at p: returns the byte after it, or NULL when it is not one. */
static const char *scan_number(const char *p, const char *end, jnum_t *out)
{
	jnum_t v = {0, 0, false, false};
	int nd = 0; /* significant digits kept in v.m */
	if (p < end && *p == '-') {
		v.neg = true;
		p++;
	}
	if (p >= end || *p < '0' || *p > '9')
		return NULL;
	if (*p == '0') {
		p++;
	} else {
		for (; p < end && *p >= '0' && *p <= '9'; p++) {
			if (nd < 19) {
				v.m = v.m * 10 + (uint64_t)(*p - '0');
				nd++;
			} else {
				v.e10++;
				v.tail |= *p != '0';
			}
		}
	}
	if (p < end && *p == '.') {
		p++;
		if (p >= end || *p < '0' || *p > '9')
			return NULL;
		for (; p < end && *p >= '0' && *p <= '9'; p++) {
			if (nd < 19) {
				v.m = v.m * 10 + (uint64_t)(*p - '0');
				if (v.m)
					nd++;
				v.e10--;
			} else {
				v.tail |= *p != '0';
			}
		}
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		int sign = 1, x = 0;
		if (p < end && (*p == '+' || *p == '-'))
			sign = *p++ == '-' ? -1 : 1;
		if (p >= end || *p < '0' || *p > '9')
			return NULL;
		for (; p < end && *p >= '0' && *p <= '9'; p++)
			if (x < FRAUD_EXP_CLAMP)
				x = x * 10 + (*p - '0');
		v.e10 += sign * x;
	}
	*out = v;
	return p;
}

/* Skip any JSON value at p (after whitespace); NULL when it is not valid. */
static const char *skip_value(const char *p, const char *end, int depth)
{
	if (p >= end || depth > FRAUD_JSON_MAX_DEPTH)
		return NULL;
	jstr_t s;
	jnum_t num;
	switch (*p) {
	case '"':
		return scan_string(p, end, &s);
	case '{':
	case '[': {
		char close = *p == '{' ? '}' : ']';
		p = skip_ws(p + 1, end);
		if (p < end && *p == close)
			return p + 1;
		for (;;) {
			if (close == '}') {
				if (p >= end || *p != '"' || !(p = scan_string(p, end, &s)))
					return NULL;
				p = skip_ws(p, end);
				if (p >= end || *p != ':')
					return NULL;
				p = skip_ws(p + 1, end);
			}
			if (!(p = skip_value(p, end, depth + 1)))
				return NULL;
			p = skip_ws(p, end);
			if (p < end && *p == ',') {
				p = skip_ws(p + 1, end);
				continue;
			}
			if (p < end && *p == close)
				return p + 1;
			return NULL;
		}
	}
	case 't':
		return end - p >= 4 && !memcmp(p, "true", 4) ? p + 4 : NULL;
	case 'f':
		return end - p >= 5 && !memcmp(p, "false", 5) ? p + 5 : NULL;
	case 'n':
		return end - p >= 4 && !memcmp(p, "null", 4) ? p + 4 : NULL;
	default:
		return scan_number(p, end, &num);
	}
}

/* The fields the rules read. */
enum { F_CARD, F_MERCHANT, F_CURRENCY, F_COUNTRY, F_AMOUNT, F_N };
static const struct {
	const char *name;
	size_t len;
} field_names[F_N] = {
    {"card", 4}, {"merchant", 8}, {"currency", 8}, {"country", 7}, {"amount", 6},
};

static int field_of(const char *k, size_t n)
{
	for (int f = 0; f < F_N; f++)
		if (n == field_names[f].len && !memcmp(k, field_names[f].name, n))
			return f;
	return -1;
}

typedef struct txn {
	jstr_t str[F_N]; /* F_CARD .. F_COUNTRY */
	jnum_t amount;
	unsigned seen; /* bit per field */
} txn_t;

/* Parse a flat transaction object. 0, or -1 when malformed. */
static int parse_txn(const char *p, size_t len, txn_t *t)
{
	const char *end = p + len;
	t->seen = 0;
	p = skip_ws(p, end);
	if (p >= end || *p != '{')
		return -1;
	p = skip_ws(p + 1, end);
	if (p < end && *p == '}')
		return -1; /* no fields at all */
	for (;;) {
		jstr_t key;
		if (p >= end || *p != '"' || !(p = scan_string(p, end, &key)))
			return -1;
		int f;
		if (key.esc) {
			char kb[FRAUD_FIELD_MAX];
			int kl = decode(&key, kb, sizeof(kb));
			f = kl < 0 ? -1 : field_of(kb, (size_t)kl);
		} else {
			f = field_of(key.p, key.n);
		}
		p = skip_ws(p, end);
		if (p >= end || *p != ':')
			return -1;
		p = skip_ws(p + 1, end);
		if (f >= 0 && (t->seen & (1u << f)))
			return -1; /* given twice: which one counts is ambiguous */
		if (f == F_AMOUNT) {
			if (p >= end || (*p != '-' && (*p < '0' || *p > '9')) ||
			    !(p = scan_number(p, end, &t->amount)))
				return -1;
		} else if (f >= 0) {
			if (p >= end || *p != '"' || !(p = scan_string(p, end, &t->str[f])))
				return -1;
		} else if (!(p = skip_value(p, end, 1))) {
			return -1;
		}
		if (f >= 0)
			t->seen |= 1u << f;
		p = skip_ws(p, end);
		if (p < end && *p == ',') {
			p = skip_ws(p + 1, end);
			continue;
		}
		if (p < end && *p == '}')
			break;
		return -1;
	}
	if (skip_ws(p + 1, end) != end)
		return -1;
	return t->seen == (1u << F_N) - 1 ? 0 : -1;
}

/* ---- the rules ----------------------------------------------------------------------- */

static const uint64_t pow10_tab[20] = {
    1ULL,
    10ULL,
    100ULL,
    1000ULL,
    10000ULL,
    100000ULL,
    1000000ULL,
    10000000ULL,
    100000000ULL,
    1000000000ULL,
    10000000000ULL,
    100000000000ULL,
    1000000000000ULL,
    10000000000000ULL,
    100000000000000ULL,
    1000000000000000ULL,
    10000000000000000ULL,
    100000000000000000ULL,
    1000000000000000000ULL,
    10000000000000000000ULL,
};

/* Whether amount > max, exactly (no floating point). */
static bool amount_above(const jnum_t *a, uint64_t max)
{
	if (a->neg || a->m == 0)
		return false;
	int cmp;
	if (a->e10 >= 0) {
		if (a->e10 > 19 || a->m > UINT64_MAX / pow10_tab[a->e10])
			return true;
		uint64_t v = a->m * pow10_tab[a->e10];
		cmp = v > max ? 1 : v < max ? -1 : 0;
	} else {
		/* integer part q and fraction r of m / 10^k */
		int k = -a->e10;
		uint64_t q = k > 19 ? 0 : a->m / pow10_tab[k];
		uint64_t r = k > 19 ? a->m : a->m % pow10_tab[k];
		cmp = q > max ? 1 : q < max ? -1 : r > 0 ? 1 : 0;
	}
	return cmp > 0 || (cmp == 0 && a->tail);
}

static int span_cmp(const void *a, const void *b)
{
	const span_t *x = a, *y = b;
	if (x->n != y->n)
		return x->n < y->n ? -1 : 1;
	return memcmp(x->p, y->p, x->n);
}

static bool merchant_blocked(const fraud_t *f, const char *p, size_t n)
{
	if (!f->nmerchants)
		return false;
	span_t key = {p, n};
	return bsearch(&key, f->merchants, f->nmerchants, sizeof(span_t), span_cmp) != NULL;
}

static bool card_blocked(const fraud_t *f, const char *card, size_t n)
{
	for (size_t i = 0; i < f->nprefixes; i++) {
		const span_t *pre = &f->prefixes[i];
		size_t j = 0;
		for (size_t c = 0; c < n && j < pre->n; c++) {
			if (card[c] == '-' || card[c] == ' ')
				continue;
			if (card[c] != pre->p[j])
				break;
			j++;
		}
		if (j == pre->n)
			return true;
	}
	return false;
}

static bool currency_mismatch(const fraud_t *f, const char *country, size_t cn, const char *cur, size_t un)
{
	if (cn != 2 || country[0] < 'A' || country[0] > 'Z' || country[1] < 'A' || country[1] > 'Z')
		return false;
	uint8_t idx = f->country_idx[(country[0] - 'A') * 26 + (country[1] - 'A')];
	if (!idx)
		return false;
	return un != 3 || memcmp(cur, countries[idx - 1].currency, 3) != 0;
}

/* A field's bytes: in place, or decoded into buf. false when it cannot be decoded. */
static bool field_text(const jstr_t *s, char *buf, const char **p, size_t *n)
{
	if (!s->esc) {
		*p = s->p;
		*n = s->n;
		return true;
	}
	int len = decode(s, buf, FRAUD_FIELD_MAX);
	if (len < 0)
		return false;
	*p = buf;
	*n = (size_t)len;
	return true;
}

/* The rule hits of one value (HIT_* bits). */
static unsigned check(const fraud_t *f, const void *value, size_t len)
{
	txn_t t;
	if (!value || parse_txn(value, len, &t) < 0)
		return HIT_MALFORMED;
	char bufs[4][FRAUD_FIELD_MAX];
	const char *s[4];
	size_t n[4];
	for (int i = F_CARD; i <= F_COUNTRY; i++)
		if (!field_text(&t.str[i], bufs[i], &s[i], &n[i]))
			return HIT_MALFORMED;
	unsigned hits = 0;
	if (amount_above(&t.amount, f->amount_max))
		hits |= HIT_AMOUNT;
	if (merchant_blocked(f, s[F_MERCHANT], n[F_MERCHANT]))
		hits |= HIT_MERCHANT;
	if (card_blocked(f, s[F_CARD], n[F_CARD]))
		hits |= HIT_CARD;
	if (currency_mismatch(f, s[F_COUNTRY], n[F_COUNTRY], s[F_CURRENCY], n[F_CURRENCY]))
		hits |= HIT_CURRENCY;
	return hits;
}

/* ---- the handler ----------------------------------------------------------------------- */

static void flush(fraud_t *f, uint64_t *c)
{
	for (int k = 0; k < C_N; k++)
		if (c[k]) {
			atomic_fetch_add_explicit(&f->totals[k], c[k], memory_order_relaxed);
			c[k] = 0;
		}
}

static int fraud_init(void *opaque, int worker_id, void **wctx)
{
	fraud_worker_t *w = calloc(1, sizeof(*w));
	if (!w)
		return SPATE_ERR_NOMEM;
	*wctx = w;
	return SPATE_OK;
}

static void fraud_fini(void *opaque, void *wctx)
{
	fraud_worker_t *w = wctx;
	if (!w)
		return;
	flush(opaque, w->c);
	free(w);
}

/* fraud.sink: emit flagged record i of b (its key and value) with a fraud.rules header
 * naming the rules that fired ("amount,card_prefix"); the engine adds spate.origin. */
static int emit_flagged(const fraud_t *f, spate_batch_t *b, size_t i, const spate_record_t *r, unsigned hits)
{
	static const struct {
		unsigned bit;
		const char *name;
	} rules[] = {{HIT_AMOUNT, "amount"},
	             {HIT_MERCHANT, "merchant"},
	             {HIT_CARD, "card_prefix"},
	             {HIT_CURRENCY, "currency"}};
	char names[64];
	size_t len = 0;
	for (size_t k = 0; k < sizeof(rules) / sizeof(rules[0]); k++)
		if (hits & rules[k].bit)
			len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s", len ? "," : "",
			                        rules[k].name);
	spate_header_t h = {"fraud.rules", 11, names, len};
	return spate_batch_emit(b, i, f->sink, r->key, r->key_len, r->value, r->value_len, &h, 1);
}

static int fraud_handle(void *opaque, void *wctx, spate_batch_t *b)
{
	fraud_t *f = opaque;
	size_t n = spate_batch_count(b);
	const spate_record_t *const *recs = spate_batch_records(b);
	uint64_t c[C_N] = {0};
	for (size_t i = 0; i < n; i++) {
		unsigned hits = check(f, recs[i]->value, recs[i]->value_len);
		if (hits & HIT_MALFORMED) {
			c[C_MALFORMED]++;
			continue;
		}
		if (hits && f->sink && emit_flagged(f, b, i, recs[i], hits) != SPATE_OK)
			return SPATE_HANDLER_FAIL; /* out of memory: the batch retries, nothing counted */
		c[C_FLAGGED] += hits != 0;
		c[C_AMOUNT] += !!(hits & HIT_AMOUNT);
		c[C_MERCHANT] += !!(hits & HIT_MERCHANT);
		c[C_CARD] += !!(hits & HIT_CARD);
		c[C_CURRENCY] += !!(hits & HIT_CURRENCY);
	}
	c[C_RECORDS] = n;
	fraud_worker_t *w = wctx;
	if (!w) { /* called without init (an embedder's own loop): add per batch */
		flush(f, c);
		return SPATE_HANDLER_OK;
	}
	for (int k = 0; k < C_N; k++)
		w->c[k] += c[k];
	if (w->c[C_RECORDS] >= FRAUD_FLUSH_RECORDS)
		flush(f, w->c);
	return SPATE_HANDLER_OK;
}

/* Split a comma-separated list into spans over a copy in *strs. Items are trimmed of
 * spaces and tabs; empty items are skipped. digits: items keep only their digits and
 * must hold nothing but digits, '-' and ' ' (card prefixes). */
static int parse_list(const char *key, const char *v, bool digits, span_t **out, size_t *cnt, char **strs,
                      char *err, size_t sz)
{
	size_t len = strlen(v), items = 1;
	for (const char *q = v; *q; q++)
		items += *q == ',';
	span_t *sp = calloc(items, sizeof(*sp));
	char *buf = malloc(len + 1);
	if (!sp || !buf) {
		free(sp);
		free(buf);
		return sp_err(err, sz, SPATE_ERR_NOMEM, "%s: out of memory", key);
	}
	size_t n = 0, o = 0;
	for (const char *q = v; *q;) {
		size_t il = strcspn(q, ",");
		const char *a = q, *z = q + il;
		q = *z ? z + 1 : z;
		while (a < z && (*a == ' ' || *a == '\t'))
			a++;
		while (z > a && (z[-1] == ' ' || z[-1] == '\t'))
			z--;
		if (a == z)
			continue;
		if ((size_t)(z - a) > FRAUD_LIST_ITEM_MAX)
			goto bad;
		size_t start = o;
		for (const char *c = a; c < z; c++) {
			if ((unsigned char)*c < 0x20)
				goto bad;
			if (digits && (*c == '-' || *c == ' '))
				continue;
			if (digits && (*c < '0' || *c > '9'))
				goto bad;
			buf[o++] = *c;
		}
		if (o == start)
			goto bad; /* separators only */
		sp[n++] = (span_t){buf + start, o - start};
		continue;
	bad:
		free(sp);
		free(buf);
		return sp_err(err, sz, SPATE_ERR_INVALID, "%s: \"%.*s\" is not allowed (%s)", key,
		              (int)(z - a), a,
		              digits ? "a card number prefix: digits, with '-' or ' ' between them"
		                     : "a merchant id of 1..256 printable characters");
	}
	*out = sp;
	*cnt = n;
	*strs = buf;
	return SPATE_OK;
}

static void fraud_free(fraud_t *f)
{
	if (!f)
		return;
	free(f->merchants);
	free(f->prefixes);
	free(f->mstrs);
	free(f->pstrs);
	free(f->sink);
	free(f);
}

static void fraud_destroy(spate_handler_t *h)
{
	fraud_free(h->opaque);
	h->opaque = NULL;
}

/* Whether the pipeline names a sink NAME (sink.NAME=...): the pass-through keys. */
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

static bool has_sink(const spate_conf_t *conf, const char *name)
{
	sink_find_t s = {name, false};
	sp_conf_foreach_prefix(conf, "sink.", sink_seen, &s);
	return s.found;
}

static int fraud_setup(fraud_t *f, const spate_conf_t *conf, char *err, size_t sz)
{
	f->amount_max = (uint64_t)sp_conf_int(conf, "fraud.amount.max");
	int rc = parse_list("fraud.block.merchants", sp_conf_str(conf, "fraud.block.merchants"), false,
	                    &f->merchants, &f->nmerchants, &f->mstrs, err, sz);
	if (!rc)
		rc = parse_list("fraud.block.card.prefixes", sp_conf_str(conf, "fraud.block.card.prefixes"),
		                true, &f->prefixes, &f->nprefixes, &f->pstrs, err, sz);
	if (rc)
		return rc;
	const char *sink = sp_conf_str(conf, "fraud.sink");
	if (*sink) {
		if (!has_sink(conf, sink))
			return sp_err(err, sz, SPATE_ERR_INVALID,
			              "fraud.sink: no sink named \"%s\" (set sink.%s=log:DIR or kafka:TOPIC)",
			              sink, sink);
		f->sink = strdup(sink);
		if (!f->sink)
			return sp_err(err, sz, SPATE_ERR_NOMEM, "fraud.sink: out of memory");
	}
	if (f->nmerchants > 1)
		qsort(f->merchants, f->nmerchants, sizeof(span_t), span_cmp);
	for (size_t i = 0; i < NCOUNTRIES; i++)
		f->country_idx[(countries[i].country[0] - 'A') * 26 + (countries[i].country[1] - 'A')] =
		    (uint8_t)(i + 1);
	return SPATE_OK;
}

static int fraud_create(const char *arg, const spate_conf_t *conf, spate_engine_t *e, spate_handler_t *h,
                        char *err, size_t sz)
{
	if (arg && *arg)
		return sp_err(err, sz, SPATE_ERR_INVALID,
		              "handler: fraud takes no argument, got \"fraud:%s\" (set fraud.* keys instead)",
		              arg);
	fraud_t *f = calloc(1, sizeof(*f));
	if (!f)
		return sp_err(err, sz, SPATE_ERR_NOMEM, "handler: out of memory");
	/* without a conf (a caller outside an engine), the defaults */
	spate_conf_t *own = conf ? NULL : spate_conf_new();
	if (!conf && !own) {
		free(f);
		return sp_err(err, sz, SPATE_ERR_NOMEM, "handler: out of memory");
	}
	int rc = fraud_setup(f, conf ? conf : own, err, sz);
	spate_conf_destroy(own);
	if (rc) {
		fraud_free(f);
		return rc;
	}
	memset(h, 0, sizeof(*h));
	h->version = SPATE_HANDLER_VERSION;
	h->name = "fraud";
	h->init = fraud_init;
	h->handle = fraud_handle;
	h->fini = fraud_fini;
	h->opaque = f;
	return SPATE_OK;
}

static void fraud_report(spate_handler_t *h, FILE *fp)
{
	fraud_t *f = h->opaque;
	for (int k = 0; k < C_N; k++)
		fprintf(fp, "%s %" PRIu64 "\n", counter_names[k], atomic_load(&f->totals[k]));
}

/* The keys of this plugin (its part of the configuration reference). */
static const sp_opt_t fraud_opts[] = {
    {"fraud.amount.max", SP_OPT_INT, 0, INT64_MAX, NULL, "5000",
     "fraud: flag transactions above this amount"},
    {"fraud.block.merchants", SP_OPT_STR, 0, 0, NULL, "m-0666,m-1313",
     "fraud: comma-separated merchant ids that are flagged"},
    {"fraud.block.card.prefixes", SP_OPT_STR, 0, 0, NULL, "4000-66",
     "fraud: comma-separated card number prefixes that are flagged"},
    {"fraud.sink", SP_OPT_STR, 0, 0, NULL, "",
     "fraud: a named sink (sink.NAME) each flagged transaction is emitted to, unchanged, with a "
     "fraud.rules header naming the rules that fired; empty = only count"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

const sp_operator_ops_t sp_op_fraud = {
    .version = SP_OPERATOR_OPS_VERSION,
    .name = "fraud",
    .desc = "flags card transactions by amount, merchant, card prefix and currency (fraud.* keys)",
    .opts = fraud_opts,
    .syntax = "fraud",
    .create = fraud_create,
    .ignores_headers = true,
    .destroy = fraud_destroy,
    .report = fraud_report,
};
