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
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. -Iinclude \
 *       tests/fuzz/fuzz_filter.c engine/filter.c engine/filter_match.c engine/json.c -lm -o fuzz_filter
 *   ./fuzz_filter -dict=tests/fuzz/filter.dict tests/fuzz/corpus/filter
 */
#include "engine/filter.h"

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
			                    .position = {{0, 0, 7}}};
			r.value = nul ? (const void *)(nul + 1) : values[i];
			r.value_len = nul ? size - plen - 1 : strlen(values[i]);
			int a = sp_filter_match(f, &r, scratch), b = sp_filter_match(f, &r, scratch),
			    c = sp_filter_match(g, &r, scratch);
			if (a < 0)
				break; /* out of memory */
			if ((a != 0 && a != 1) || a != b || a != c)
				fail("matching differs", pattern);
		}
	}
	sp_filter_free(g);
	sp_filter_free(f);
out:
	free(pattern);
	return 0;
}
