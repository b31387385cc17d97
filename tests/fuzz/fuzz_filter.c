/* fuzz_filter.c - libFuzzer harness for the pattern compiler and the matcher
 * (engine/filter.c, engine/filter_match.c).
 *
 * The input is a pattern, optionally followed by a NUL byte and a record value. The
 * pattern is compiled alone; compiled again inside a two-pattern filter, which must
 * agree; and, when it compiles, matched against the value (or fixed values) on a Kafka
 * and a Kinesis record. What is checked: no crash, leak or undefined behaviour (run it
 * with the sanitizers); an error names pattern 1 of 1 and a byte inside the pattern;
 * compiling is deterministic; a pattern ORed with one that matches nothing matches
 * exactly the same records; matching returns 0 or 1 and the same answer twice.
 *
 * And a reference: for a pattern {"value": {...}} on a JSON value, the same semantics
 * written plainly over jansson's trees (no selector, no scan, no compiled form) must give
 * the same answer. It judges only what it can: patterns without duplicate keys (jansson
 * keeps one) and without bare numbers (jansson does not keep a number's text).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. -Iinclude \
 *       tests/fuzz/fuzz_filter.c engine/filter.c engine/filter_match.c engine/json.c \
 *       -ljansson -lm -o fuzz_filter
 *   ./fuzz_filter -dict=tests/fuzz/filter.dict tests/fuzz/corpus/filter
 */
#include "engine/filter.h"

#include <jansson.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_filter: %s: %s\n", what, detail);
	abort();
}

static const char *const values[] = {
    "{\"a\": 1, \"b\": \"x\", \"c\": [1, \"y\", {\"d\": null}], \"e\": {\"f\": true}}",
    "[{\"a\": 2}, {\"a\": \"AB12\"}]",
    "plain text",
    "",
};

/* ---- the reference --------------------------------------------------------------------- */

uint32_t sp_filter_fold(uint32_t c); /* filter.c: the case folding spate documents */

static bool ref_judges; /* cleared when the reference meets what it cannot judge */

static uint32_t utf8_cp(const unsigned char **p)
{
	const unsigned char *s = *p;
	if (s[0] < 0x80) {
		*p += 1;
		return s[0];
	}
	if (s[0] < 0xE0) {
		*p += 2;
		return ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu);
	}
	if (s[0] < 0xF0) {
		*p += 3;
		return ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
	}
	*p += 4;
	return ((s[0] & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
}

/* Case-folded comparison of a and b: 0 equal, 1 a has b as a prefix (mode 1) or
 * suffix (mode 2). Decodes both into code points first. */
static bool ref_ci(const char *a, size_t an, const char *b, size_t bn, int mode)
{
	uint32_t ca[4096], cb[4096];
	size_t na = 0, nb = 0;
	const unsigned char *p = (const unsigned char *)a, *e = p + an;
	while (p < e && na < 4096)
		ca[na++] = sp_filter_fold(utf8_cp(&p));
	p = (const unsigned char *)b;
	e = p + bn;
	while (p < e && nb < 4096)
		cb[nb++] = sp_filter_fold(utf8_cp(&p));
	if (na == 4096 || nb == 4096) {
		ref_judges = false;
		return false;
	}
	if (mode == 0)
		return na == nb && !memcmp(ca, cb, na * 4);
	if (nb > na)
		return false;
	return !memcmp(mode == 1 ? ca : ca + na - nb, cb, nb * 4);
}

/* A wildcard, by backtracking over its characters (\* and \\ are literals). */
static bool ref_glob(const char *w, size_t wn, const char *s, size_t sn)
{
	if (!wn)
		return !sn;
	if (w[0] == '*') {
		for (size_t k = 0; k <= sn; k++)
			if (ref_glob(w + 1, wn - 1, s + k, sn - k))
				return true;
		return false;
	}
	size_t step = w[0] == '\\' ? 2 : 1;
	return sn && s[0] == w[step - 1] && ref_glob(w + step, wn - step, s + 1, sn - 1);
}

static bool is_str(json_t *v, const char **s, size_t *n)
{
	if (!json_is_string(v))
		return false;
	*s = json_string_value(v);
	*n = json_string_length(v);
	return true;
}

/* One string operator (prefix, suffix, equals-ignore-case, wildcard) on string s. */
static bool ref_strop(const char *op, json_t *arg, const char *s, size_t n)
{
	const char *a;
	size_t an;
	if (json_is_object(arg)) { /* {"prefix": {"equals-ignore-case": "x"}} */
		arg = json_object_get(arg, "equals-ignore-case");
		is_str(arg, &a, &an);
		return ref_ci(s, n, a, an, !strcmp(op, "prefix") ? 1 : 2);
	}
	is_str(arg, &a, &an);
	if (!strcmp(op, "prefix"))
		return an <= n && !memcmp(s, a, an);
	if (!strcmp(op, "suffix"))
		return an <= n && !memcmp(s + n - an, a, an);
	if (!strcmp(op, "equals-ignore-case"))
		return ref_ci(s, n, a, an, 0);
	return ref_glob(a, an, s, n); /* wildcard */
}

static bool ref_rule(json_t *r, json_t *v)
{
	const char *s = NULL, *k;
	size_t n = 0;
	bool str = is_str(v, &s, &n);
	json_t *arg;
	if (json_is_string(r))
		return str && n == json_string_length(r) && !memcmp(s, json_string_value(r), n);
	if (json_is_number(r)) {
		ref_judges = false;
		return false;
	}
	if (!json_is_object(r))
		return json_typeof(r) == json_typeof(v);
	json_object_foreach(r, k, arg) break;
	if (!strcmp(k, "exists"))
		return false;
	if (!strcmp(k, "numeric")) {
		double x = json_number_value(v), lo = -HUGE_VAL, hi = HUGE_VAL;
		bool lo_open = false, hi_open = false;
		if (!json_is_number(v))
			return false;
		for (size_t i = 0; i + 1 < json_array_size(arg); i += 2) {
			const char *o = json_string_value(json_array_get(arg, i));
			double y = json_number_value(json_array_get(arg, i + 1));
			if (!strcmp(o, "="))
				lo = hi = y;
			else if (o[0] == '>')
				lo = y, lo_open = !o[1];
			else
				hi = y, hi_open = !o[1];
		}
		return (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
	}
	if (!strcmp(k, "anything-but")) {
		if (json_is_object(arg)) { /* {"anything-but": {"prefix": ...}} */
			const char *op;
			json_t *list;
			json_object_foreach(arg, op, list) break;
			if (!str)
				return false;
			if (!json_is_array(list))
				return !ref_strop(op, list, s, n);
			for (size_t i = 0; i < json_array_size(list); i++)
				if (ref_strop(op, json_array_get(list, i), s, n))
					return false;
			return true;
		}
		json_t *first = json_is_array(arg) ? json_array_get(arg, 0) : arg;
		bool nums = json_is_number(first);
		if (!str && !json_is_number(v))
			return false;
		if (str != !nums) /* a string is none of the numbers, a number none of the strings */
			return true;
		for (size_t i = 0; i < (json_is_array(arg) ? json_array_size(arg) : 1); i++) {
			json_t *x = json_is_array(arg) ? json_array_get(arg, i) : arg;
			if (nums ? json_number_value(x) == json_number_value(v)
			         : json_string_length(x) == n && !memcmp(json_string_value(x), s, n))
				return false;
		}
		return true;
	}
	return str && ref_strop(k, arg, s, n);
}

static bool has_exists(json_t *rules, bool want)
{
	for (size_t i = 0; i < json_array_size(rules); i++) {
		json_t *e = json_object_get(json_array_get(rules, i), "exists");
		if (e && json_is_true(e) == want)
			return true;
	}
	return false;
}

/* Rules over v's scalars (arrays flattened, objects ignored); *any: a scalar was seen. */
static bool ref_scalars(json_t *rules, json_t *v, bool *any)
{
	if (json_is_object(v))
		return false;
	if (json_is_array(v)) {
		for (size_t i = 0; i < json_array_size(v); i++)
			if (ref_scalars(rules, json_array_get(v, i), any))
				return true;
		return false;
	}
	*any = true;
	for (size_t i = 0; i < json_array_size(rules); i++)
		if (ref_rule(json_array_get(rules, i), v))
			return true;
	return false;
}

static bool ref_leaf(json_t *rules, json_t *v)
{
	bool any = false;
	if (v && ref_scalars(rules, v, &any))
		return true;
	return has_exists(rules, any);
}

static bool ref_missing(json_t *p)
{
	const char *k;
	json_t *v;
	json_object_foreach(p, k, v)
	{
		bool ok = false;
		if (!strcmp(k, "$or")) {
			for (size_t i = 0; i < json_array_size(v) && !ok; i++)
				ok = ref_missing(json_array_get(v, i));
		} else {
			ok = json_is_object(v) ? ref_missing(v) : has_exists(v, false);
		}
		if (!ok)
			return false;
	}
	return true;
}

static bool ref_obj(json_t *p, json_t *e)
{
	const char *k;
	json_t *v;
	if (!e || (!json_is_object(e) && !json_is_array(e)))
		return ref_missing(p);
	if (json_is_array(e)) {
		/* one element for the whole object; an empty array, or a scalar, is missing */
		if (!json_array_size(e))
			return ref_missing(p);
		for (size_t i = 0; i < json_array_size(e); i++)
			if (ref_obj(p, json_array_get(e, i)))
				return true;
		return false;
	}
	json_object_foreach(p, k, v)
	{
		bool ok = false;
		if (!strcmp(k, "$or")) {
			for (size_t i = 0; i < json_array_size(v) && !ok; i++)
				ok = ref_obj(json_array_get(v, i), e);
		} else {
			ok = json_is_object(v) ? ref_obj(v, json_object_get(e, k))
			                       : ref_leaf(v, json_object_get(e, k));
		}
		if (!ok)
			return false;
	}
	return true;
}

/* The reference's answer for pattern text on a Kafka record whose value is value, or
 * -1 when it cannot judge. */
static int reference(const char *pattern, const char *value, size_t vlen)
{
	json_error_t err;
	json_t *p = json_loads(pattern, JSON_REJECT_DUPLICATES, &err), *e, *pv;
	int answer = -1;
	if (!p)
		return -1; /* a duplicate key: jansson keeps one */
	pv = json_object_get(p, "value");
	e = json_loadb(value, vlen, JSON_DECODE_ANY, &err);
	if (json_object_size(p) == 1 && json_is_object(pv) && e) {
		ref_judges = true;
		answer = ref_obj(pv, e);
		if (!ref_judges)
			answer = -1;
	}
	json_decref(e);
	json_decref(p);
	return answer;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static sp_filter_scratch_t *scratch;
	const uint8_t *nul = memchr(data, 0, size);
	size_t plen = nul ? (size_t)(nul - data) : size;
	char *pattern = malloc(plen + 1), err[1024], err2[1024];
	const char *one[1], *two[2];
	sp_filter_t *f, *g;

	if (!scratch && !(scratch = sp_filter_scratch_new()))
		abort();
	memcpy(pattern, data, plen);
	pattern[plen] = 0;
	one[0] = pattern;
	f = sp_filter_compile(one, 1, err, sizeof(err));
	g = sp_filter_compile(one, 1, err2, sizeof(err2));
	if (!f != !g || (!f && strcmp(err, err2)))
		fail("compiling twice differs", pattern);
	sp_filter_free(g);
	if (!f) {
		unsigned long byte;
		if (strstr(err, "out of memory"))
			goto out;
		if (sscanf(err, "pattern 1 of 1, byte %lu: ", &byte) != 1 &&
		    strncmp(err, "pattern 1 of 1 ", 15))
			fail("an error that names no pattern", err);
		if (!strncmp(err, "pattern 1 of 1, byte", 20) && byte > plen)
			fail("an error past the pattern's end", err);
		goto out;
	}
	two[0] = "{\"no such field\": [\"never\"]}";
	two[1] = pattern;
	g = sp_filter_compile(two, 2, err, sizeof(err));
	if (!g)
		fail("a pattern compiles alone but not second of two", err);

	for (int src = 0; src < 2; src++) {
		spate_partition_t part = {
		    .source = src ? "kinesis" : "kafka", .topic = "t", .partition = 1, .name = "p"};
		size_t nv = nul ? 1 : sizeof(values) / sizeof(values[0]);
		for (size_t i = 0; i < nv; i++) {
			spate_header_t hd = {"h", 1, "v", 1};
			spate_record_t r = {.version = SPATE_RECORD_VERSION,
			                    .key = "k",
			                    .key_len = 1,
			                    .partition = &part,
			                    .headers = &hd,
			                    .header_cnt = 1,
			                    .timestamp_ms = 1000,
			                    .position = {.w = {0, 0, 7}}};
			r.value = nul ? (const void *)(nul + 1) : values[i];
			r.value_len = nul ? size - plen - 1 : strlen(values[i]);
			int a = sp_filter_match(f, &r, scratch), b = sp_filter_match(f, &r, scratch),
			    c = sp_filter_match(g, &r, scratch);
			if (a < 0)
				break; /* out of memory */
			if ((a != 0 && a != 1) || a != b || a != c)
				fail("matching differs", pattern);
			if (!src) {
				int want = reference(pattern, r.value, r.value_len);
				if (getenv("FUZZ_FILTER_VERBOSE"))
					fprintf(stderr, "reference %d, filter %d\n", want, a);
				if (want >= 0 && want != a)
					fail(a ? "matches where the reference does not"
					       : "the reference matches, not the filter",
					     pattern);
			}
		}
	}
	sp_filter_free(g);
	sp_filter_free(f);
out:
	free(pattern);
	return 0;
}
