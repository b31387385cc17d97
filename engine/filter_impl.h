/* filter_impl.h - the compiled form of a filter, shared by filter.c (which builds it
 * from the patterns' text) and filter_match.c (which walks it per record).
 *
 * A pattern compiles into a tree that mirrors its JSON: an object (pobj_t) is a list of
 * fields that must all match, and of $or groups of which one alternative must match;
 * a field holds a nested object, a list of rules (any one matching is enough), or both
 * (when a pattern names the same key twice, as {"a": [1], "a": {"b": [2]}}). The top
 * object's fields are the event's fields (value, key, topic, ...), numbered by
 * sp_filter_meta; below "value" and "data", each field carries the index of its key in
 * the JSON selector the scanner reads the record's value with, so matching never
 * compares a key's bytes.
 */
#ifndef SPATE_ENGINE_FILTER_IMPL_H
#define SPATE_ENGINE_FILTER_IMPL_H

#include "engine/filter.h"
#include "engine/json.h"

#include <stdbool.h>
#include <stdint.h>

/* The event's top-level fields, per source kind. */
enum sp_filter_meta {
	M_OTHER = 0, /* a name no source has: always missing */
	M_VALUE,     /* Kafka names */
	M_KEY,
	M_HEADERS,
	M_TOPIC,
	M_PARTITION,
	M_OFFSET,
	M_TIMESTAMP,
	M_DATA, /* Kinesis names */
	M_PARTITION_KEY,
	M_SEQUENCE,
	M_ARRIVAL,
};

enum sp_filter_kind { K_KAFKA = 0, K_KINESIS = 1, K_N };

/* Rule operators. A rule list also has exists/absent flags, which are not rules. */
enum rule_op {
	R_STR,  /* "text": the same string */
	R_NUM,  /* 300: a number written the same way (Lambda compares the text) */
	R_NULL, /* null */
	R_TRUE,
	R_FALSE,
	R_PREFIX,
	R_PREFIX_CI,
	R_SUFFIX,
	R_SUFFIX_CI,
	R_EQ_CI,
	R_WILDCARD,
	R_NOT_STR, /* anything-but: strings and numbers not in the set */
	R_NOT_NUM,
	R_NOT_PREFIX, /* anything-but over prefix, suffix, equals-ignore-case, wildcard: strings */
	R_NOT_SUFFIX,
	R_NOT_CI,
	R_NOT_WILDCARD,
	R_RANGE, /* numeric */
};

typedef struct bstr {
	char *s;
	uint32_t n;
} bstr_t;

/* A case-folded string, as code points (equals-ignore-case and its kin). */
typedef struct cistr {
	uint32_t *cp;
	uint32_t n;
} cistr_t;

/* A wildcard: the literal pieces between its '*'s (nstar + 1 of them, maybe empty). */
typedef struct wcard {
	bstr_t *piece;
	uint32_t nstar;
} wcard_t;

typedef struct rule {
	uint8_t op;            /* enum rule_op */
	bool lo_open, hi_open; /* R_RANGE: > rather than >=, < rather than <= */
	uint32_t n;            /* entries in the one array below the op uses */
	bstr_t *s;             /* R_STR, R_NUM, R_PREFIX, R_SUFFIX, R_NOT_STR/PREFIX/SUFFIX */
	cistr_t *ci;           /* R_PREFIX_CI, R_SUFFIX_CI, R_EQ_CI, R_NOT_CI */
	wcard_t *wc;           /* R_WILDCARD, R_NOT_WILDCARD */
	double *num;           /* R_NOT_NUM */
	double lo, hi;         /* R_RANGE */
} rule_t;

typedef struct rules {
	rule_t *v;
	uint32_t n;
	bool exists; /* {"exists": true}: any value */
	bool absent; /* {"exists": false}: no value */
} rules_t;

typedef struct pobj pobj_t;

typedef struct pfield {
	char *name; /* decoded, NUL-terminated (JSON keys here never hold a NUL) */
	uint32_t len;
	uint16_t key;   /* top level: enum sp_filter_meta; below value/data: selector key */
	bool has_rules; /* the field has a rule list (maybe of exists alone) */
	rules_t rules;
	pobj_t *obj; /* the nested object, or NULL */
} pfield_t;

typedef struct por {
	pobj_t *alt; /* the alternatives (at least two) */
	uint32_t n;
} por_t;

struct pobj {
	pfield_t *fields;
	uint32_t nfields;
	por_t *ors;
	uint32_t nors;
	bool missing_ok; /* it matches a missing value, or one that is not an object */
};

/* A selector node under construction (the scanner reads .sel; keys grow). */
typedef struct msel {
	sp_json_sel_t sel; /* first: a child pointer to it is a pointer to the msel */
	sp_json_selkey_t *keys;
	uint32_t cap;
} msel_t;

struct sp_filter {
	pobj_t *pat; /* the patterns, top level */
	uint32_t n;
	msel_t *sel[K_N]; /* how value (Kafka) and data (Kinesis) are read; NULL: not at all */
	bool reads[K_N];  /* some pattern needs the value parsed (JSON or not) */
};

/* Case-fold one code point (filter.c says which scripts). */
uint32_t sp_filter_fold(uint32_t c);

/* Decode one code point of valid UTF-8 at *p and advance *p past it. */
static inline uint32_t sp_filter_utf8_next(const uint8_t **p)
{
	const uint8_t *s = *p;
	uint32_t c = s[0];
	if (c < 0x80) {
		*p = s + 1;
		return c;
	}
	if (c < 0xE0) {
		*p = s + 2;
		return ((c & 0x1F) << 6) | (s[1] & 0x3F);
	}
	if (c < 0xF0) {
		*p = s + 3;
		return ((c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
	}
	*p = s + 4;
	return ((c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
	       (s[3] & 0x3F);
}

#endif /* SPATE_ENGINE_FILTER_IMPL_H */
