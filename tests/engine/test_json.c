/* test_json.c - tests engine/json.c against jansson: the scanner accepts exactly what
 * json_loadb(JSON_DECODE_ANY) accepts, and keeps the same values.
 *
 * Documents are generated from a fixed seed (so a failure reproduces), then mutated a
 * byte or a few at a time; every input goes through both parsers. When both accept, the
 * whole tree (sp_json_sel_all) must equal jansson's, and a scan that selects a few paths
 * must find at each path what json_object_get() finds. Hand-written cases pin jansson's
 * corners one by one: depth 2048, int64 bounds, real overflow, "\u0000", surrogates,
 * UTF-8, and the NUL byte it skips after a number or a literal.
 */
#include "engine/json.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Generated documents, and mutants made of each one. */
#define GEN_DOCS      4000
#define MUTANTS_EACH  3
#define GEN_MAX_DEPTH 6
#define DOC_MAX       8192

static uint64_t rng = 0x5eed5eed12345678ULL;
static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}
static unsigned below(unsigned n)
{
	return (unsigned)(rnd() % n);
}

typedef struct out {
	char b[DOC_MAX];
	size_t n;
} out_t;

static void put(out_t *o, const char *s)
{
	size_t l = strlen(s);
	if (o->n + l < DOC_MAX) {
		memcpy(o->b + o->n, s, l);
		o->n += l;
	}
}

static void ws(out_t *o)
{
	static const char *const w[] = {"", "", "", " ", "\n", "\t", "\r\n  "};
	put(o, w[below(7)]);
}

static const char *const numbers[] = {
    "0",
    "-0",
    "1",
    "-1",
    "42",
    "3.25",
    "-0.5",
    "1e3",
    "1E+3",
    "2.5e-3",
    "301.8",
    "3.018e2",
    "100",
    "100.0",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "-9223372036854775809",
    "12345678901234567890",
    "1e308",
    "1.7976931348623157e308",
    "1.7976931348623158e308",
    "1.8e308",
    "1e309",
    "-1e400",
    "1e-400",
    "4.9e-324",
    "0.000000000000000000000000000001",
    "123456789012345678.5",
    "0e99999999999999999999",
    "1.00000000000000011102230246251565404236316680908203125",
    "17976931348623158079372897140530341507993413271003782693617377898044496829276475094664901797758720709633"
    "02864166928879109465555478519404026306574886715058206819089020007083836762738548458177115317644757302700"
    "69855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497791."
    "9999999999999999999999999999999999999999999999999999999999999999999999",
};

static const char *const keys[] = {"a",  "b", "c", "x-y", "a.b", "", "\\u0061", "n\\u00e9", "\\ud83d\\ude00",
                                   "$or"};

static void gen_string(out_t *o)
{
	static const char *const parts[] = {
	    "a",   "Z",         " ",       "x", "\\n",   "\\\"", "\\\\",           "\\/",
	    "\\t", "\\u00e9",   "\\u20AC", "é", "€",     "😀",    "\\ud83d\\ude00", "'",
	    "~",   "\\b\\f\\r", "\x7f",    "*", "AB1234"};
	int n = (int)below(6);
	put(o, "\"");
	for (int i = 0; i < n; i++)
		put(o, parts[below(sizeof(parts) / sizeof(parts[0]))]);
	put(o, "\"");
}

static void gen_value(out_t *o, int depth)
{
	unsigned r = below(depth >= GEN_MAX_DEPTH ? 5 : 10);
	ws(o);
	if (r == 0) {
		static const char *const lit[] = {"null", "true", "false"};
		put(o, lit[below(3)]);
	} else if (r <= 2) {
		put(o, numbers[below(sizeof(numbers) / sizeof(numbers[0]))]);
	} else if (r <= 4) {
		gen_string(o);
	} else if (r <= 6) {
		int n = (int)below(5);
		put(o, "[");
		for (int i = 0; i < n; i++) {
			if (i)
				put(o, ",");
			gen_value(o, depth + 1);
		}
		ws(o);
		put(o, "]");
	} else {
		int n = (int)below(5);
		put(o, "{");
		for (int i = 0; i < n; i++) {
			if (i)
				put(o, ",");
			ws(o);
			put(o, "\"");
			put(o, keys[below(sizeof(keys) / sizeof(keys[0]))]);
			put(o, "\"");
			ws(o);
			put(o, ":");
			gen_value(o, depth + 1);
		}
		ws(o);
		put(o, "}");
	}
	ws(o);
}

static void mutate(out_t *o)
{
	static const uint8_t interesting[] = {'"',  '\\', '{', '}', '[',  ']',  ',',  ':',  '0',
	                                      '9',  'e',  '-', '.', 0x00, 0x80, 0xC3, 0xE2, 0xED,
	                                      0xF4, 0xFF, ' ', 'u', 'x',  't',  0x1f};
	int k = 1 + (int)below(3);
	for (int i = 0; i < k && o->n; i++) {
		size_t at = below((unsigned)o->n);
		uint8_t c = interesting[below(sizeof(interesting))];
		switch (below(5)) {
		case 0:
			o->b[at] = (char)c;
			break;
		case 1:
			memmove(o->b + at, o->b + at + 1, o->n - at - 1);
			o->n--;
			break;
		case 2:
			if (o->n + 1 < DOC_MAX) {
				memmove(o->b + at + 1, o->b + at, o->n - at);
				o->b[at] = (char)c;
				o->n++;
			}
			break;
		case 3:
			o->n = at;
			break;
		default:
			/* a NUL after a number or a literal is jansson's quirk: aim at it */
			for (size_t j = at; j < o->n; j++) {
				char d = o->b[j];
				if ((d >= '0' && d <= '9') || d == 'e' || d == 'l') {
					if (o->n + 1 < DOC_MAX) {
						memmove(o->b + j + 2, o->b + j + 1, o->n - j - 1);
						o->b[j + 1] = 0;
						o->n++;
					}
					break;
				}
			}
		}
	}
}

/* ---- comparing trees ------------------------------------------------------------------ */

static const char *cur_doc;
static size_t cur_len;

static void fail_doc(const char *what)
{
	char hex[3 * 200 + 1] = "";
	size_t n = cur_len < 200 ? cur_len : 200;
	for (size_t i = 0; i < n; i++)
		sprintf(hex + 3 * i, "%02x ", (uint8_t)cur_doc[i]);
	cr_assert_fail("%s: input of %zu bytes: %s", what, cur_len, hex);
}

static void same_tree(const sp_json_buf_t *b, uint32_t idx, json_t *j)
{
	const sp_json_node_t *n = &b->nodes[idx];
	switch (json_typeof(j)) {
	case JSON_NULL:
		if (n->type != SP_JSON_NULL)
			fail_doc("null differs");
		break;
	case JSON_TRUE:
		if (n->type != SP_JSON_TRUE)
			fail_doc("true differs");
		break;
	case JSON_FALSE:
		if (n->type != SP_JSON_FALSE)
			fail_doc("false differs");
		break;
	case JSON_INTEGER: {
		char t[64];
		if (n->type != SP_JSON_NUMBER || n->len >= sizeof(t))
			fail_doc("integer differs");
		memcpy(t, sp_json_bytes(b, cur_doc, n), n->len);
		t[n->len] = 0;
		if (strtoll(t, NULL, 10) != json_integer_value(j) || n->num != (double)json_integer_value(j))
			fail_doc("integer value differs");
		break;
	}
	case JSON_REAL:
		if (n->type != SP_JSON_NUMBER ||
		    memcmp(&n->num, &(double){json_real_value(j)}, sizeof(double)))
			fail_doc("real differs");
		break;
	case JSON_STRING:
		if (n->type != SP_JSON_STRING || n->len != json_string_length(j) ||
		    memcmp(sp_json_bytes(b, cur_doc, n), json_string_value(j), n->len))
			fail_doc("string differs");
		break;
	case JSON_ARRAY: {
		size_t i = 0;
		if (n->type != SP_JSON_ARRAY)
			fail_doc("array differs");
		for (uint32_t c = n->child; c; c = b->nodes[c].next, i++) {
			if (i >= json_array_size(j))
				fail_doc("array longer");
			same_tree(b, c, json_array_get(j, i));
		}
		if (i != json_array_size(j))
			fail_doc("array shorter");
		break;
	}
	case JSON_OBJECT: {
		const char *k;
		json_t *v;
		size_t distinct = 0;
		if (n->type != SP_JSON_OBJECT)
			fail_doc("object differs");
		/* jansson keeps the last of duplicate keys; sel_all keeps them all */
		json_object_foreach(j, k, v)
		{
			uint32_t last = 0;
			size_t kl = strlen(k);
			for (uint32_t c = n->child; c; c = b->nodes[c].next)
				if (b->nodes[c].klen == kl &&
				    !memcmp(sp_json_key(b, cur_doc, &b->nodes[c]), k, kl))
					last = c;
			if (!last)
				fail_doc("a key is missing");
			same_tree(b, last, v);
		}
		for (uint32_t c = n->child; c; c = b->nodes[c].next) {
			bool first = true;
			for (uint32_t d = n->child; d != c; d = b->nodes[d].next)
				if (b->nodes[d].klen == b->nodes[c].klen &&
				    !memcmp(sp_json_key(b, cur_doc, &b->nodes[d]),
				            sp_json_key(b, cur_doc, &b->nodes[c]), b->nodes[c].klen))
					first = false;
			distinct += first;
		}
		if (distinct != json_object_size(j))
			fail_doc("object key count differs");
		break;
	}
	}
}

/* A selector for one path of object keys (the last one a leaf), built on the stack. */
#define PATH_MAX_KEYS 4
typedef struct path_sel {
	sp_json_sel_t sel[PATH_MAX_KEYS + 1];
	sp_json_selkey_t key[PATH_MAX_KEYS];
	char name[PATH_MAX_KEYS][64];
} path_sel_t;

/* Pick a random path of keys down jansson's tree (objects only). Returns its length. */
static int pick_path(json_t *j, path_sel_t *ps)
{
	int n = 0;
	memset(ps, 0, sizeof(*ps));
	while (n < PATH_MAX_KEYS && json_is_object(j) && json_object_size(j)) {
		size_t want = below((unsigned)json_object_size(j)), i = 0;
		const char *k;
		json_t *v, *pick = NULL;
		json_object_foreach(j, k, v)
		{
			if (i++ == want) {
				size_t kl = strlen(k);
				if (kl >= sizeof(ps->name[n]))
					return n;
				memcpy(ps->name[n], k, kl);
				ps->key[n] = (sp_json_selkey_t){
				    .name = ps->name[n], .len = (uint32_t)kl, .child = &ps->sel[n + 1]};
				ps->sel[n] =
				    (sp_json_sel_t){.keys = &ps->key[n], .nkeys = 1, .maxlen = (uint32_t)kl};
				pick = v;
			}
		}
		n++;
		j = pick;
	}
	ps->sel[n].leaf = true;
	return n;
}

/* The scalars at the end of the path, in order (arrays flattened), from both sides. */
static void same_leaves(const sp_json_buf_t *b, uint32_t idx, json_t *j)
{
	if (json_is_array(j)) {
		const sp_json_node_t *n = &b->nodes[idx];
		uint32_t c = n->child;
		cr_assert_eq(n->type, SP_JSON_ARRAY);
		for (size_t i = 0; i < json_array_size(j); i++) {
			json_t *e = json_array_get(j, i);
			if (json_is_object(e))
				continue; /* not kept at a leaf */
			if (!c)
				fail_doc("selected array lost an element");
			same_leaves(b, c, e);
			c = b->nodes[c].next;
		}
		if (c)
			fail_doc("selected array has more elements");
		return;
	}
	same_tree(b, idx, j);
}

static void check_paths(json_t *j, sp_json_buf_t *b)
{
	for (int t = 0; t < 3; t++) {
		path_sel_t ps;
		int n = pick_path(j, &ps);
		int root = sp_json_scan(cur_doc, cur_len, &ps.sel[0], b, NULL);
		if (root != 1)
			fail_doc("a selective scan refused what a full one took");
		uint32_t at = (uint32_t)root;
		json_t *jv = j;
		for (int i = 0; i < n; i++) {
			uint32_t found = 0;
			for (uint32_t c = b->nodes[at].child; c; c = b->nodes[c].next)
				if (b->nodes[c].key == 0)
					found = c;
			jv = json_object_get(jv, ps.name[i]);
			if (!jv)
				fail_doc("jansson lost a path it gave");
			if (i == n - 1 && json_is_object(jv)) {
				/* an object where a leaf is asked for is no value: not kept */
				if (found)
					fail_doc("an object at a leaf was kept");
				break;
			}
			if (!found)
				fail_doc("a selected path is missing");
			at = found;
		}
		if (n == 0 || json_is_object(jv))
			continue;
		same_leaves(b, at, jv);
	}
}

/* One input through both parsers. Returns whether jansson took it. */
static bool differ_one(const char *doc, size_t len, sp_json_buf_t *b)
{
	json_error_t err;
	json_t *j = json_loadb(doc, len, JSON_DECODE_ANY, &err);
	size_t off = 0;
	cur_doc = doc;
	cur_len = len;
	int full = sp_json_scan(doc, len, &sp_json_sel_all, b, &off);
	int check = sp_json_scan(doc, len, NULL, b, NULL);
	if (full == SP_JSON_ENOMEM || check == SP_JSON_ENOMEM)
		cr_assert_fail("out of memory");
	if (!j != (full < 0) || (full < 0) != (check < 0)) {
		char what[300];
		snprintf(what, sizeof(what), "jansson %s (%s), scanner %d/%d at %zu",
		         j ? "accepts" : "refuses", j ? "" : err.text, full, check, off);
		fail_doc(what);
	}
	if (j) {
		sp_json_scan(doc, len, &sp_json_sel_all, b, NULL);
		same_tree(b, 1, j);
		check_paths(j, b);
		json_decref(j);
	}
	return j != NULL;
}

Test(json, generated_and_mutated_documents_agree_with_jansson, .timeout = 120)
{
	sp_json_buf_t b = SP_JSON_BUF_INIT;
	int accepted = 0, refused = 0, total = 0;
	for (int d = 0; d < GEN_DOCS; d++) {
		out_t o = {.n = 0};
		gen_value(&o, 0);
		if (differ_one(o.b, o.n, &b))
			accepted++;
		else
			refused++;
		total++;
		for (int m = 0; m < MUTANTS_EACH; m++) {
			out_t mu = o;
			mutate(&mu);
			if (differ_one(mu.b, mu.n, &b))
				accepted++;
			else
				refused++;
			total++;
		}
	}
	cr_log_info("%d inputs: %d accepted, %d refused", total, accepted, refused);
	/* both sides are exercised: neither answer dominates */
	cr_assert_eq(total, GEN_DOCS * (1 + MUTANTS_EACH));
	cr_assert_gt(accepted, total / 5);
	cr_assert_gt(refused, total / 5);
	sp_json_buf_free(&b);
}

/* Each case: input (with explicit length), and whether jansson accepts it. */
static const struct corner {
	const char *doc;
	size_t len;
	bool ok;
} corners[] = {
#define C(s, ok)                                                                                             \
	{                                                                                                    \
		s, sizeof(s) - 1, ok                                                                         \
	}
    C("", false),
    C(" ", false),
    C("1", true),
    C("-0", true),
    C("01", false),
    C("1.", false),
    C(".5", false),
    C("+1", false),
    C("1e", false),
    C("1e+", false),
    C("1E5", true),
    C("9223372036854775807", true),
    C("9223372036854775808", false),
    C("-9223372036854775808", true),
    C("-9223372036854775809", false),
    C("92233720368547758070", false),
    C("9223372036854775808.0", true),
    C("1e308", true),
    C("1.7976931348623157e308", true),
    C("1.7976931348623158e308", true),
    C("1.7976931348623159e308", false),
    C("1e309", false),
    C("-1e309", false),
    C("1e-400", true),
    C("0e999999999999999999999", true),
    C("1\0", true),
    C("1\0\0", false),
    C("[1\0,2]", true),
    C("[true\0]", true),
    C("null\0 ", true),
    C("\"a\"\0", false),
    C("\0", false),
    C("[1,\0 2]", false),
    C("\"\\u0000\"", false),
    C("{\"\\u0000\":1}", false),
    C("\"\\ud800\"", false),
    C("\"\\udc00\"", false),
    C("\"\\ud800\\u0041\"", false),
    C("\"\\ud83d\\ude00\"", true),
    C("\"\\uD83D\\uDE00\"", true),
    C("\"\\u00e9\"", true),
    C("\"\\x\"", false),
    C("\"\x01\"", false),
    C("\"\x7f\"", true),
    C("\"\xc3\xa9\"", true),
    C("\"\xc0\x80\"", false),
    C("\"\xed\xa0\x80\"", false),
    C("\"\xf4\x90\x80\x80\"", false),
    C("\"\xf0\x9f\x98\x80\"", true),
    C("\"\xe2\x82\"", false),
    C("truex", false),
    C("true1", false),
    C("[true,]", false),
    C("{\"a\":1,}", false),
    C("{\"a\" 1}", false),
    C("{1:1}", false),
    C("{\"a\":1}x", false),
    C(" {\"a\":[1,2,{\"b\":null}]} \r\n\t", true),
    C("{\"a\":1,\"a\":2}", true),
    C("[]", true),
    C("{}", true),
    C("[", false),
    C("]", false),
#undef C
};

Test(json, corners_agree_with_jansson)
{
	sp_json_buf_t b = SP_JSON_BUF_INIT;
	for (size_t i = 0; i < sizeof(corners) / sizeof(corners[0]); i++) {
		json_error_t err;
		json_t *j = json_loadb(corners[i].doc, corners[i].len, JSON_DECODE_ANY, &err);
		cr_assert_eq(j != NULL, corners[i].ok, "case %zu: jansson %s it (%s)", i,
		             j ? "accepts" : "refuses", err.text);
		json_decref(j);
		cr_assert_eq(differ_one(corners[i].doc, corners[i].len, &b), corners[i].ok, "case %zu", i);
	}
	sp_json_buf_free(&b);
}

Test(json, depth_2048_is_the_limit)
{
	sp_json_buf_t b = SP_JSON_BUF_INIT;
	static char doc[2 * 2100 + 8];
	for (int depth = 2046; depth <= 2050; depth++) {
		for (int scalar = 0; scalar < 2; scalar++) {
			size_t n = 0;
			for (int i = 0; i < depth; i++)
				doc[n++] = '[';
			if (scalar)
				doc[n++] = '1';
			for (int i = 0; i < depth; i++)
				doc[n++] = ']';
			json_error_t err;
			json_t *j = json_loadb(doc, n, JSON_DECODE_ANY, &err);
			bool want = depth + scalar <= SP_JSON_MAX_DEPTH;
			cr_assert_eq(j != NULL, want, "jansson at depth %d+%d", depth, scalar);
			json_decref(j);
			cr_assert_eq(differ_one(doc, n, &b), want);
		}
	}
	sp_json_buf_free(&b);
}

Test(json, selected_paths_keep_only_what_is_asked_and_the_last_duplicate)
{
	static const char doc[] = "{\"tx\":\"t-1\",\"amount\":12.5,\"m\":{\"id\":\"m-1\",\"x\":[1,2]},"
	                          "\"amount\":99,\"tags\":[\"a\",{\"z\":1},[\"b\"]],\"\\u0061mount\":7}";
	sp_json_sel_t leaf = {.leaf = true};
	sp_json_selkey_t k[] = {{"amount", 6, &leaf}, {"tags", 4, &leaf}};
	sp_json_sel_t root = {.keys = k, .nkeys = 2, .maxlen = 6};
	sp_json_buf_t b = SP_JSON_BUF_INIT;
	cr_assert_eq(sp_json_scan(doc, sizeof(doc) - 1, &root, &b, NULL), 1);
	/* nodes made: root, the three amounts, tags, "a", the inner array, "b" (and node 0) */
	cr_assert_eq(b.nnodes, 9);
	uint32_t c = b.nodes[1].child;
	cr_assert_eq(b.nodes[c].key, 1); /* tags: the first amounts were dropped */
	c = b.nodes[c].next;
	cr_assert_eq(b.nodes[c].key, 0);
	cr_assert_eq(b.nodes[c].num, 7.0);
	cr_assert_eq(b.nodes[c].next, 0);
	/* the tags array skipped its object element and says so */
	cr_assert(b.nodes[b.nodes[1].child].flags & SP_JSON_F_SKIPPED);
	cr_assert_eq(sp_json_scan(doc, sizeof(doc) - 2, &root, &b, NULL), SP_JSON_EINVAL);
	sp_json_buf_free(&b);
}

Test(json, number_conversion_is_strtod)
{
	static const char *const nums[] = {"0.1",
	                                   "301.8",
	                                   "3.018e2",
	                                   "1e22",
	                                   "1e23",
	                                   "123456789012345",
	                                   "1234567890123456789",
	                                   "2.2250738585072011e-308",
	                                   "4.9e-324",
	                                   "-5e-324",
	                                   "0.30000000000000004",
	                                   "9007199254740993",
	                                   "1.5e300",
	                                   "7e-10",
	                                   "100000000000000000000000"};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		double want = strtod(nums[i], NULL), got = sp_json_number(nums[i], strlen(nums[i]));
		cr_assert(!memcmp(&want, &got, sizeof(got)), "%s: %.17g, want %.17g", nums[i], got, want);
	}
}
