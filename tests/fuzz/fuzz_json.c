/* fuzz_json.c - libFuzzer harness for engine/json.c, held to jansson.
 *
 * Each input goes through jansson's json_loadb(JSON_DECODE_ANY) and through
 * sp_json_scan() three ways (keep everything, check only, keep one path named by the
 * input's first object key); all must accept or refuse together, and when they accept,
 * the scanner's tree must equal jansson's (the last of duplicate keys, as jansson keeps)
 * and the selected path must hold what json_object_get() finds. A disagreement aborts.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. -Iinclude \
 *       tests/fuzz/fuzz_json.c engine/json.c -ljansson -lm -o fuzz_json
 *   ./fuzz_json tests/fuzz/corpus/json
 */
#include "engine/json.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sp_json_buf_t buf;
static const char *doc;

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_json: %s\n", what);
	abort();
}

/* Numbers of more significant digits than this may round differently (json.c truncates
 * what it gives strtod); jansson's value is not compared for them. */
#define DIGITS_EXACT 1000

static void same(uint32_t idx, json_t *j)
{
	const sp_json_node_t *n = &buf.nodes[idx];
	switch (json_typeof(j)) {
	case JSON_NULL:
	case JSON_TRUE:
	case JSON_FALSE:
		if (n->type != (json_is_null(j)   ? SP_JSON_NULL
		                : json_is_true(j) ? SP_JSON_TRUE
		                                  : SP_JSON_FALSE))
			fail("literal differs");
		break;
	case JSON_INTEGER:
		if (n->type != SP_JSON_NUMBER || n->num != (double)json_integer_value(j))
			fail("integer differs");
		break;
	case JSON_REAL:
		if (n->type != SP_JSON_NUMBER)
			fail("real differs");
		if (n->len < DIGITS_EXACT && memcmp(&n->num, &(double){json_real_value(j)}, sizeof(double)))
			fail("real value differs");
		break;
	case JSON_STRING:
		if (n->type != SP_JSON_STRING || n->len != json_string_length(j) ||
		    memcmp(sp_json_bytes(&buf, doc, n), json_string_value(j), n->len))
			fail("string differs");
		break;
	case JSON_ARRAY: {
		size_t i = 0;
		if (n->type != SP_JSON_ARRAY)
			fail("array differs");
		for (uint32_t c = n->child; c; c = buf.nodes[c].next, i++) {
			if (i >= json_array_size(j))
				fail("array longer");
			same(c, json_array_get(j, i));
		}
		if (i != json_array_size(j))
			fail("array shorter");
		break;
	}
	case JSON_OBJECT: {
		const char *k;
		json_t *v;
		size_t members = 0;
		if (n->type != SP_JSON_OBJECT)
			fail("object differs");
		json_object_foreach(j, k, v)
		{
			uint32_t last = 0;
			size_t kl = strlen(k);
			for (uint32_t c = n->child; c; c = buf.nodes[c].next)
				if (buf.nodes[c].klen == kl &&
				    !memcmp(sp_json_key(&buf, doc, &buf.nodes[c]), k, kl))
					last = c;
			if (!last)
				fail("key missing");
			same(last, v);
		}
		for (uint32_t c = n->child; c; c = buf.nodes[c].next)
			members++;
		if (members < json_object_size(j))
			fail("fewer members than keys");
		break;
	}
	}
}

/* The first key of the top object, as a one-key selector whose value is a leaf. */
static void check_first_key(json_t *j, size_t size)
{
	const char *k;
	json_t *v;
	sp_json_sel_t leaf = {.leaf = true};
	sp_json_selkey_t key;
	sp_json_sel_t root = {.keys = &key, .nkeys = 1};
	if (!json_is_object(j) || !json_object_size(j))
		return;
	json_object_foreach(j, k, v) break;
	key = (sp_json_selkey_t){.name = k, .len = (uint32_t)strlen(k), .child = &leaf};
	root.maxlen = key.len;
	if (sp_json_scan(doc, size, &root, &buf, NULL) != 1)
		fail("a selective scan refused what a full one took");
	uint32_t found = 0;
	for (uint32_t c = buf.nodes[1].child; c; c = buf.nodes[c].next)
		if (buf.nodes[c].key == 0) {
			if (found)
				fail("a duplicate key was kept twice");
			found = c;
		}
	v = json_object_get(j, k);
	if (json_is_object(v)) {
		if (found)
			fail("an object at a leaf was kept");
	} else if (json_is_array(v)) {
		if (!found || buf.nodes[found].type != SP_JSON_ARRAY)
			fail("the selected array is missing");
	} else {
		if (!found)
			fail("the selected scalar is missing");
		same(found, v);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t err;
	json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, &err);
	doc = (const char *)data;
	int check = sp_json_scan(data, size, NULL, &buf, NULL);
	int full = sp_json_scan(data, size, &sp_json_sel_all, &buf, NULL);
	if (full == SP_JSON_ENOMEM || check == SP_JSON_ENOMEM)
		fail("out of memory");
	if ((j != NULL) != (full == 1) || (j != NULL) != (check == 0))
		fail(j ? "jansson accepts what the scanner refuses"
		       : "the scanner accepts what jansson refuses");
	if (j) {
		same(1, j);
		check_first_key(j, size);
		json_decref(j);
	}
	return 0;
}
