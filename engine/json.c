/* json.c - the validating, selective JSON scanner (see json.h for the contract).
 *
 * One pass, one loop: sp_json_scan() is a small state machine (value, member, element,
 * after a value) over an explicit stack of open containers, so a deep input costs heap
 * in the caller's buffer, not C stack. Every byte is checked; only values on a selected
 * path become nodes. Skipping a string is the hot part of filtering a record (most of
 * a value is strings nobody asked for), so it looks at eight bytes at a time for a quote,
 * a backslash, a control byte or a non-ASCII byte, and only then goes byte by byte.
 *
 * jansson's reader (load.c of 2.14) is the reference for what is accepted; the comments
 * say where it differs from the plain RFC and why we follow it.
 */
#include "engine/json.h"

#include <math.h>
#include <stdio.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

/* Significant digits passed to strtod for a number off the fast path. Deciding whether
 * a number overflows needs no more: the overflow threshold (half an ulp above DBL_MAX)
 * has 309 significant digits, so a prefix this long either differs from it or equals it,
 * and truncation cannot move a number across it. */
#define JSON_STRTOD_DIGITS 1100
/* A number's exponent is read up to this magnitude; beyond it every double is 0 or inf. */
#define JSON_EXP_SATURATE 1000000000000LL
/* Initial buffer sizes (nodes, bytes, frames); each grows by doubling. */
#define JSON_NODES_MIN  64
#define JSON_BYTES_MIN  256
#define JSON_FRAMES_MIN 16

struct sp_json_frame {
	uint32_t node;            /* the container's node, 0 when it is not kept */
	uint32_t last;            /* its last kept child */
	const sp_json_sel_t *sel; /* how its members or elements are read; NULL: skipped */
	uint8_t obj;              /* an object (1) or an array (0) */
};

const sp_json_sel_t sp_json_sel_all = {.keys = NULL, .nkeys = 0, .maxlen = 0, .leaf = true, .all = true};

/* Bytes inside a string: 0 plain, 1 quote, 2 backslash, 3 control, 4 non-ASCII. */
static const uint8_t str_class[256] = {
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
};

static inline bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static inline bool is_alpha(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline const uint8_t *skip_ws(const uint8_t *p, const uint8_t *end)
{
	/* most calls find no whitespace: one comparison says so */
	while (p < end && *p <= ' ' && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	return p;
}

/* Eight bytes at once: nonzero when any is a quote, a backslash, below 0x20 or above
 * 0x7f (the "has a byte less than n" and "has a zero byte" word tricks). */
static inline uint64_t special8(uint64_t v)
{
	const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
	uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\');
	return (v | ((v - ones * 0x20) & ~v) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs;
}

/* The length of the valid UTF-8 sequence of 2-4 bytes at p, or 0 (jansson's
 * utf8_check_first and utf8_check_full). */
static size_t utf8_seq(const uint8_t *p, const uint8_t *end)
{
	uint8_t c = p[0];
	size_t n;
	uint32_t cp;
	if (c < 0xC2 || c > 0xF4)
		return 0;
	n = c <= 0xDF ? 2 : c <= 0xEF ? 3 : 4;
	if ((size_t)(end - p) < n)
		return 0;
	cp = c & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
	    (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

bool sp_json_utf8_valid(const void *s, size_t n)
{
	const uint8_t *p = s, *end = p + n;
	while (p < end) {
		if (end - p >= 8) {
			uint64_t v;
			memcpy(&v, p, 8);
			if (!(v & 0x8080808080808080ULL)) {
				p += 8;
				continue;
			}
		}
		if (*p < 0x80) {
			p++;
			continue;
		}
		size_t k = utf8_seq(p, end);
		if (!k)
			return false;
		p += k;
	}
	return true;
}

static bool hex4(const uint8_t *p, uint32_t *out)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++) {
		uint8_t c = p[i];
		v <<= 4;
		if (is_digit(c))
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t)(c - 'A' + 10);
		else
			return false;
	}
	*out = v;
	return true;
}

/* Check the string whose opening quote is at p; return the byte after its closing quote,
 * or NULL (*errp at the offending byte). *esc tells whether it has escapes. */
static inline __attribute__((always_inline)) const uint8_t *scan_string(const uint8_t *p, const uint8_t *end,
                                                                        bool *esc, const uint8_t **errp)
{
	p++;
	for (;;) {
#ifdef __SSE2__
		if (end - p >= 16) {
			/* sixteen bytes: a quote, a backslash, or (signed) below 0x20, which is
			 * a control byte or one above 0x7f */
			__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
			__m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
			                                        _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
			                           _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
			unsigned m = (unsigned)_mm_movemask_epi8(hit);
			if (!m) {
				p += 16;
				continue;
			}
			p += __builtin_ctz(m);
			if (*p == '"')
				return p + 1;
		} else
#endif
		    if (end - p >= 8) {
			uint64_t v, m;
			memcpy(&v, p, 8);
			m = special8(v);
			if (!m) {
				p += 8;
				continue;
			}
			/* the lowest flag is the first special byte: the word tricks only
			 * raise false flags above a true one */
			p += __builtin_ctzll(m) >> 3;
			if (*p == '"')
				return p + 1; /* the common end of a short string */
		} else {
			while (p < end && !str_class[*p])
				p++;
			if (p >= end)
				goto fail;
		}
		switch (str_class[*p]) {
		case 1:
			return p + 1;
		case 2: {
			uint32_t cp, lo;
			if (end - p < 2)
				goto fail;
			*esc = true;
			if (p[1] != 'u') {
				if (!strchr("\"\\/bfnrt", p[1]) || !p[1])
					goto fail;
				p += 2;
				break;
			}
			/* \u0000 needs JSON_ALLOW_NUL; a lone or unpaired surrogate is refused */
			if (end - p < 6 || !hex4(p + 2, &cp) || cp == 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
				goto fail;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || !hex4(p + 8, &lo) ||
				    lo < 0xDC00 || lo > 0xDFFF)
					goto fail;
				p += 12;
			} else {
				p += 6;
			}
			break;
		}
		case 3:
			goto fail;
		default: {
			size_t n = utf8_seq(p, end);
			if (!n)
				goto fail;
			p += n;
		}
		}
	}
fail:
	*errp = p < end ? p : end;
	return NULL;
}

static size_t utf8_put(uint32_t cp, char *o)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Decode the contents of a checked string (between the quotes) into o, which has room for
 * at least e - s bytes (decoding never lengthens). Returns the decoded length. */
static size_t decode_string(const uint8_t *s, const uint8_t *e, char *o)
{
	char *start = o;
	while (s < e) {
		const uint8_t *bs = memchr(s, '\\', (size_t)(e - s));
		size_t run = bs ? (size_t)(bs - s) : (size_t)(e - s);
		memcpy(o, s, run);
		o += run;
		s += run;
		if (!bs)
			break;
		uint8_t c = s[1];
		s += 2;
		switch (c) {
		case 'b':
			*o++ = '\b';
			break;
		case 'f':
			*o++ = '\f';
			break;
		case 'n':
			*o++ = '\n';
			break;
		case 'r':
			*o++ = '\r';
			break;
		case 't':
			*o++ = '\t';
			break;
		case 'u': {
			uint32_t cp = 0, lo = 0;
			hex4(s, &cp);
			s += 4;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				hex4(s + 2, &lo);
				s += 6;
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			}
			o += utf8_put(cp, o);
			break;
		}
		default: /* '"', '\\', '/' */
			*o++ = (char)c;
		}
	}
	return (size_t)(o - start);
}

/* The end of the number that starts at p, or NULL when it breaks the grammar. *real is
 * set when it has a fraction or an exponent (jansson's TOKEN_REAL), *exp when it has an
 * exponent. */
static const uint8_t *scan_number(const uint8_t *p, const uint8_t *end, bool *real, bool *exp)
{
	*real = *exp = false;
	if (*p == '-')
		p++;
	if (p == end)
		return NULL;
	if (*p == '0') {
		p++;
		if (p < end && is_digit(*p))
			return NULL;
	} else if (is_digit(*p)) {
		while (p < end && is_digit(*p))
			p++;
	} else {
		return NULL;
	}
	if (p < end && *p == '.') {
		p++;
		if (p == end || !is_digit(*p))
			return NULL;
		while (p < end && is_digit(*p))
			p++;
		*real = true;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p == end || !is_digit(*p))
			return NULL;
		while (p < end && is_digit(*p))
			p++;
		*real = *exp = true;
	}
	return p;
}

/* jansson reads an integer with strtoll: outside int64_t it is "too big". */
static bool int_fits(const uint8_t *s, const uint8_t *e)
{
	bool neg = *s == '-';
	const uint8_t *d = s + neg;
	size_t n = (size_t)(e - d);
	if (n != 19)
		return n < 19;
	return memcmp(d, neg ? "9223372036854775808" : "9223372036854775807", 19) <= 0;
}

/* The significant digits and decimal exponent of a checked number: value = 0.D * 10^..
 * is awkward, so: value = (digits as an integer) * 10^dexp. */
typedef struct numparts {
	bool neg;
	const uint8_t *ip, *ie; /* integer digits */
	const uint8_t *fp, *fe; /* fraction digits (empty when none) */
	int64_t exp;            /* the exponent, saturated */
} numparts_t;

static void num_split(const uint8_t *s, const uint8_t *e, numparts_t *np)
{
	const uint8_t *p = s;
	np->neg = *p == '-';
	p += np->neg;
	np->ip = p;
	while (p < e && is_digit(*p))
		p++;
	np->ie = np->fp = np->fe = p;
	if (p < e && *p == '.') {
		np->fp = ++p;
		while (p < e && is_digit(*p))
			p++;
		np->fe = p;
	}
	np->exp = 0;
	if (p < e && (*p == 'e' || *p == 'E')) {
		bool eneg = false;
		p++;
		if (*p == '+' || *p == '-')
			eneg = *p++ == '-';
		while (p < e) {
			if (np->exp < JSON_EXP_SATURATE)
				np->exp = np->exp * 10 + (*p - '0');
			p++;
		}
		if (eneg)
			np->exp = -np->exp;
	}
}

static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                     1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The common number: at most 15 digits, maybe a fraction, no exponent. Exact (one IEEE
 * division of exact values), so the same as strtod; false when it is not that kind. */
static bool number_simple(const uint8_t *s, size_t len, double *out)
{
	const uint8_t *p = s, *e = s + len;
	uint64_t m = 0;
	int digits = 0, frac = -1;
	bool neg = *p == '-';
	if (len > 17)
		return false;
	for (p += neg; p < e; p++) {
		if (is_digit(*p)) {
			m = m * 10 + (uint64_t)(*p - '0');
			digits++;
			frac += frac >= 0;
		} else if (*p == '.') {
			frac = 0;
		} else {
			return false;
		}
	}
	if (digits > 15)
		return false;
	*out = frac > 0 ? (double)m / pow10_exact[frac] : (double)m;
	if (neg)
		*out = -*out;
	return true;
}

double sp_json_number(const char *str, size_t len)
{
	const uint8_t *s = (const uint8_t *)str;
	numparts_t np;
	double v;
	if (number_simple(s, len, &v))
		return v;
	num_split(s, s + len, &np);

	/* the significant digits, without leading zeros, as a run over both parts */
	char buf[JSON_STRTOD_DIGITS + 32];
	size_t nd = 0, nsig = 0;
	int64_t dexp = np.exp;
	for (int part = 0; part < 2; part++) {
		const uint8_t *p = part ? np.fp : np.ip, *e = part ? np.fe : np.ie;
		for (; p < e; p++) {
			if (part)
				dexp--;
			if (!nd && *p == '0')
				continue;
			if (nd < JSON_STRTOD_DIGITS) {
				buf[1 + nd++] = (char)*p;
				if (*p != '0')
					nsig = nd;
			} else {
				dexp++; /* a digit dropped: the exponent carries its place */
			}
		}
	}
	if (!nd)
		return np.neg ? -0.0 : 0.0;
	if (nsig <= 15) {
		/* at most 15 digits (trailing zeros go into the exponent) and a power of ten
		 * that is exact: one IEEE operation, so correctly rounded, as strtod */
		int64_t e10 = dexp + (int64_t)(nd - nsig);
		if (e10 >= -22 && e10 <= 22) {
			uint64_t m = 0;
			for (size_t i = 0; i < nsig; i++)
				m = m * 10 + (uint64_t)(buf[1 + i] - '0');
			v = e10 >= 0 ? (double)m * pow10_exact[e10] : (double)m / pow10_exact[-e10];
			return np.neg ? -v : v;
		}
	}
	buf[0] = np.neg ? '-' : '+';
	snprintf(buf + 1 + nd, sizeof(buf) - 1 - nd, "e%lld", (long long)dexp);
	return strtod(buf, NULL);
}

/* jansson reads a real with strtod and refuses one that overflows (HUGE_VAL, ERANGE). */
static bool real_overflows(const uint8_t *s, const uint8_t *e)
{
	numparts_t np;
	int64_t mag;
	const uint8_t *p;
	num_split(s, e, &np);
	/* the decimal magnitude of the first nonzero digit: the value is in [10^mag, 10^(mag+1)) */
	for (p = np.ip; p < np.ie && *p == '0'; p++)
		;
	if (p < np.ie) {
		mag = (int64_t)(np.ie - p) - 1;
	} else {
		for (p = np.fp; p < np.fe && *p == '0'; p++)
			;
		if (p == np.fe)
			return false; /* zero */
		mag = -(int64_t)(p - np.fp) - 1;
	}
	mag += np.exp;
	if (mag <= 307)
		return false;
	if (mag >= 309)
		return true;
	return isinf(sp_json_number((const char *)s, (size_t)(e - s)));
}

/* ---- the buffer ------------------------------------------------------------------------ */

void sp_json_buf_free(sp_json_buf_t *b)
{
	free(b->nodes);
	free(b->bytes);
	free(b->frames);
	memset(b, 0, sizeof(*b));
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem, size_t min)
{
	size_t c = *cap ? *cap : min;
	while (c < need)
		c *= 2;
	void *n = realloc(*p, c * elem);
	if (!n)
		return false;
	*p = n;
	*cap = c;
	return true;
}

static bool need_nodes(sp_json_buf_t *b, uint32_t n)
{
	if (b->nnodes + n <= b->cap_nodes)
		return true;
	size_t cap = b->cap_nodes;
	if (!grow((void **)&b->nodes, &cap, (size_t)b->nnodes + n, sizeof(*b->nodes), JSON_NODES_MIN))
		return false;
	b->cap_nodes = (uint32_t)cap;
	return true;
}

static bool need_bytes(sp_json_buf_t *b, size_t n)
{
	if (b->nbytes + n <= b->cap_bytes)
		return true;
	return grow((void **)&b->bytes, &b->cap_bytes, b->nbytes + n, 1, JSON_BYTES_MIN);
}

static bool need_frames(sp_json_buf_t *b, uint32_t depth)
{
	if (depth < b->cap_frames)
		return true;
	size_t cap = b->cap_frames;
	if (!grow((void **)&b->frames, &cap, (size_t)depth + 1, sizeof(*b->frames), JSON_FRAMES_MIN))
		return false;
	b->cap_frames = (uint32_t)cap;
	return true;
}

/* Drop the member of frame f's object that has selector key `key` (a later member with
 * the same key replaces it, as in jansson, whether or not the later one is kept). */
static void unlink_key(sp_json_buf_t *b, struct sp_json_frame *f, uint16_t key)
{
	sp_json_node_t *nodes = b->nodes;
	uint32_t prev = 0;
	for (uint32_t c = nodes[f->node].child; c; prev = c, c = nodes[c].next) {
		if (nodes[c].key != key)
			continue;
		if (prev)
			nodes[prev].next = nodes[c].next;
		else
			nodes[f->node].child = nodes[c].next;
		if (f->last == c)
			f->last = prev;
		return;
	}
}

/* Append node idx to the container of frame f. */
static void link_child(sp_json_buf_t *b, struct sp_json_frame *f, uint32_t idx)
{
	if (f->last)
		b->nodes[f->last].next = idx;
	else
		b->nodes[f->node].child = idx;
	f->last = idx;
}

/* Equal bytes, inline for the short keys filters compare. */
static inline bool same_bytes(const char *a, const char *b, size_t n)
{
	if (n > 16)
		return !memcmp(a, b, n);
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

/* The selector key matching the member key raw[0..n) (esc: it has escapes), or -1. */
static int sel_lookup(const sp_json_sel_t *sel, const uint8_t *raw, size_t n, bool esc, sp_json_buf_t *b)
{
	const char *k = (const char *)raw;
	if (n > sel->maxlen && !esc)
		return -1;
	if (esc) {
		/* decode into the spare end of the byte buffer, and give the room back */
		if (!need_bytes(b, n))
			return -2;
		n = decode_string(raw, raw + n, b->bytes + b->nbytes);
		k = b->bytes + b->nbytes;
		if (n > sel->maxlen)
			return -1;
	}
	for (uint32_t i = 0; i < sel->nkeys; i++)
		if (sel->keys[i].len == n && same_bytes(sel->keys[i].name, k, n))
			return (int)i;
	return -1;
}

int sp_json_scan(const void *input, size_t len, const sp_json_sel_t *sel, sp_json_buf_t *b, size_t *err_off)
{
	const uint8_t *in = input, *p = in, *end = in + len, *errp = NULL;
	uint32_t depth = 0;
	const sp_json_sel_t *vsel = sel; /* how the value about to be read is read; NULL: skipped */
	uint16_t vkey = SP_JSON_KEY_NONE;
	uint32_t vkpos = 0, vkoff = 0, vklen = 0;
	uint8_t vkflags = 0;
	bool esc, real;
	uint32_t idx;

	if (len >= UINT32_MAX) {
		errp = in;
		goto fail;
	}
	b->nnodes = 1;
	b->nbytes = 0;

value:
	p = skip_ws(p, end);
	errp = p;
	if (p == end || depth >= SP_JSON_MAX_DEPTH)
		goto fail;
	{
		uint8_t c = *p, type;
		const uint8_t *start = p;
		bool container = c == '{' || c == '[', keep;
		if (container) {
			p++;
			type = c == '{' ? SP_JSON_OBJECT : SP_JSON_ARRAY;
			keep = vsel && (!depth || type == SP_JSON_ARRAY || vsel->all || vsel->nkeys);
		} else if (c == '"') {
			const uint8_t *q;
			esc = false;
			q = scan_string(p, end, &esc, &errp);
			if (!q)
				goto fail;
			p = q;
			type = SP_JSON_STRING;
		} else if (c == '-' || is_digit(c)) {
			bool exp;
			const uint8_t *q = scan_number(p, end, &real, &exp);
			/* a real without an exponent needs 309 digits to overflow */
			if (!q || (real ? (exp || q - p > 300) && real_overflows(p, q) : !int_fits(p, q))) {
				errp = q ? p : errp;
				goto fail;
			}
			p = q;
			type = SP_JSON_NUMBER;
		} else if (c == 't' && end - p >= 4 && !memcmp(p, "true", 4)) {
			p += 4;
			type = SP_JSON_TRUE;
		} else if (c == 'f' && end - p >= 5 && !memcmp(p, "false", 5)) {
			p += 5;
			type = SP_JSON_FALSE;
		} else if (c == 'n' && end - p >= 4 && !memcmp(p, "null", 4)) {
			p += 4;
			type = SP_JSON_NULL;
		} else {
			goto fail;
		}
		if (type == SP_JSON_NUMBER || type <= SP_JSON_TRUE) {
			/* jansson reads a number or a word to its end: "truex" is one bad token */
			if (type != SP_JSON_NUMBER && p < end && is_alpha(*p)) {
				errp = start;
				goto fail;
			}
			/* ... and a NUL it reads past the end and pushes back is lost */
			if (p < end && !*p)
				p++;
		}
		if (!container)
			keep = vsel && (!depth || vsel->leaf);

		if (depth && b->frames[depth - 1].node) {
			struct sp_json_frame *f = &b->frames[depth - 1];
			if (f->obj && vkey != SP_JSON_KEY_NONE)
				unlink_key(b, f, vkey);
			else if (!f->obj && !keep)
				b->nodes[f->node].flags |= SP_JSON_F_SKIPPED;
		}
		if (!keep) {
			idx = 0;
		} else {
			sp_json_node_t *n;
			if (!need_nodes(b, 1))
				goto nomem;
			idx = b->nnodes++;
			n = &b->nodes[idx];
			memset(n, 0, sizeof(*n));
			n->type = type;
			n->pos = (uint32_t)(start - in);
			n->key = vkey;
			n->kpos = vkpos;
			n->koff = vkoff;
			n->klen = vklen;
			n->flags = vkflags;
			if (type == SP_JSON_STRING) {
				size_t raw = (size_t)(p - start) - 2;
				if (esc) {
					if (!need_bytes(b, raw))
						goto nomem;
					n = &b->nodes[idx];
					n->off = (uint32_t)b->nbytes;
					n->len =
					    (uint32_t)decode_string(start + 1, p - 1, b->bytes + b->nbytes);
					b->nbytes += n->len;
					n->flags |= SP_JSON_F_DECODED;
				} else {
					n->off = (uint32_t)(start + 1 - in);
					n->len = (uint32_t)raw;
				}
			} else if (type == SP_JSON_NUMBER) {
				const uint8_t *q = p;
				if (q > start && !q[-1])
					q--; /* the skipped NUL is not part of it */
				n->off = (uint32_t)(start - in);
				n->len = (uint32_t)(q - start);
				n->num = sp_json_number((const char *)start, n->len);
			}
			if (depth)
				link_child(b, &b->frames[depth - 1], idx);
		}
		if (container) {
			struct sp_json_frame *f;
			if (!need_frames(b, depth))
				goto nomem;
			f = &b->frames[depth++];
			f->node = idx;
			f->last = 0;
			f->sel = keep ? vsel : NULL;
			f->obj = type == SP_JSON_OBJECT;
			p = skip_ws(p, end);
			if (p < end && *p == (f->obj ? '}' : ']')) {
				p++;
				depth--;
				goto after;
			}
			if (f->obj)
				goto member;
			vsel = f->sel;
			vkey = SP_JSON_KEY_NONE;
			vkflags = 0;
			goto value;
		}
	}

after:
	if (!depth) {
		p = skip_ws(p, end);
		errp = p;
		if (p != end)
			goto fail;
		if (err_off)
			*err_off = 0;
		return sel ? 1 : 0;
	}
	p = skip_ws(p, end);
	errp = p;
	if (p == end)
		goto fail;
	{
		struct sp_json_frame *f = &b->frames[depth - 1];
		if (*p == ',') {
			p++;
			if (f->obj)
				goto member;
			vsel = f->sel;
			vkey = SP_JSON_KEY_NONE;
			vkflags = 0;
			goto value;
		}
		if (*p != (f->obj ? '}' : ']'))
			goto fail;
		p++;
		depth--;
		goto after;
	}

member:
	p = skip_ws(p, end);
	errp = p;
	if (p == end || *p != '"')
		goto fail;
	{
		const struct sp_json_frame *f = &b->frames[depth - 1];
		const uint8_t *k = p, *q;
		size_t klen;
		esc = false;
		q = scan_string(p, end, &esc, &errp);
		if (!q)
			goto fail;
		klen = (size_t)(q - k) - 2;
		vkpos = (uint32_t)(k - in);
		vkflags = 0;
		vkey = SP_JSON_KEY_NONE;
		vsel = NULL;
		if (f->sel && f->sel->all) {
			vsel = f->sel;
			if (esc) {
				if (!need_bytes(b, klen))
					goto nomem;
				vkoff = (uint32_t)b->nbytes;
				vklen = (uint32_t)decode_string(k + 1, q - 1, b->bytes + b->nbytes);
				b->nbytes += vklen;
				vkflags = SP_JSON_F_KDECODED;
			} else {
				vkoff = (uint32_t)(k + 1 - in);
				vklen = (uint32_t)klen;
			}
		} else if (f->sel) {
			int i = sel_lookup(f->sel, k + 1, klen, esc, b);
			if (i == -2)
				goto nomem;
			if (i >= 0) {
				vsel = f->sel->keys[i].child;
				vkey = (uint16_t)i;
			}
		}
		p = skip_ws(q, end);
		errp = p;
		if (p == end || *p != ':')
			goto fail;
		p++;
		goto value;
	}

nomem:
	if (err_off)
		*err_off = (size_t)(p - in);
	return SP_JSON_ENOMEM;
fail:
	if (err_off)
		*err_off = (size_t)((errp ? errp : p) - in);
	return SP_JSON_EINVAL;
}
