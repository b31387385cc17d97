/* sp_filter.h - record filters: Lambda's FilterCriteria (EventBridge pattern syntax) for
 * spate's records, compiled once and matched by every worker. Part of the plugin
 * interface: the engine's filter key and the route operator use it.
 *
 * A filter is up to SP_FILTER_MAX_PATTERNS patterns, ORed: a record passes when any
 * pattern matches it. A pattern is a JSON object of at most SP_FILTER_MAX_PATTERN_BYTES
 * bytes, matched against the record seen as Lambda's event for its source:
 *
 *   source kafka, log, gen, push (Kafka's names):
 *     value      the record's value: its JSON when it is JSON, else the text itself
 *     key        the key as text          headers    {"name": "value", ...}
 *     topic      the topic (text)         partition  the partition (number)
 *     offset     the offset (number)      timestamp  ms since the epoch (number)
 *   source kinesis (Kinesis's names):
 *     data       the record's value (JSON only)
 *     partitionKey, sequenceNumber (text), approximateArrivalTimestamp (seconds, number)
 *
 * Whether a value that is not JSON matches follows Lambda's tables for each source:
 * docs/filters.md has them with the whole syntax, the limits and the error format.
 *
 * Compiling allocates; matching does not: sp_filter_match() reads the value once,
 * keeping only the fields the patterns name, into a scratch the caller owns (one per
 * worker), which grows only when a record needs more room than any before it.
 */
#ifndef SPATE_SP_FILTER_H
#define SPATE_SP_FILTER_H

#include <spate/spate.h>

#include <stddef.h>

/* Lambda's quota: 5 filters per event source mapping by default, 10 at most. */
#define SP_FILTER_MAX_PATTERNS 10
/* Lambda's limit on one filter's Pattern string (the Filter API type). */
#define SP_FILTER_MAX_PATTERN_BYTES 4096

/** A compiled filter: immutable, shared by every worker. */
typedef struct sp_filter sp_filter_t;
/** What sp_filter_match() works in: one per thread, reused for every record. */
typedef struct sp_filter_scratch sp_filter_scratch_t;

/**
 * Compile n patterns (1..SP_FILTER_MAX_PATTERNS NUL-terminated strings) into a filter.
 * Returns NULL on error with errstr (may be NULL) naming the pattern, the byte of it at
 * fault (from 0), what is wrong and the pattern, e.g. for {"a": [{"prefix": 1}]}
 *   pattern 2 of 3, byte 18: "prefix" needs a string or {"equals-ignore-case": "..."}: {"a": ...
 * or, when out of memory, saying so. The filter keeps no pointer into the patterns.
 * @locality any thread
 */
sp_filter_t *sp_filter_compile(const char *const *patterns, size_t n, char *errstr, size_t size);

/** Free a filter (NULL is ignored). No sp_filter_match() may be running on it. */
void sp_filter_free(sp_filter_t *f);

/** A new, empty scratch; NULL when out of memory. @locality any thread */
sp_filter_scratch_t *sp_filter_scratch_new(void);
/** Free a scratch (NULL is ignored). */
void sp_filter_scratch_free(sp_filter_scratch_t *s);

/**
 * Whether record r passes filter f: 1 when some pattern matches, 0 when none does, or
 * SPATE_ERR_NOMEM when the scratch could not grow for this record's value (the caller
 * decides; passing the record on is the safe choice). Allocates only to grow s.
 * @locality any thread, concurrently on one filter, each thread with its own scratch
 */
int sp_filter_match(const sp_filter_t *f, const spate_record_t *r, sp_filter_scratch_t *s);

#endif /* SPATE_SP_FILTER_H */
