/* kpltest.h - build KPL aggregated records in tests, from the format alone (magic
 * F3 89 9A C2, a protobuf AggregatedRecord, the MD5 of the protobuf bytes), with a
 * protobuf writer of the tests' own, so the de-aggregator is checked against bytes it
 * did not write. */
#ifndef SPATE_TESTS_KPLTEST_H
#define SPATE_TESTS_KPLTEST_H

#include <stddef.h>
#include <stdint.h>

/* An aggregate of n records: record i has key keys[key_idx[i]] and data datas[i]
 * (strings). Writes into out (room for cap bytes); returns the length. */
size_t t_kpl_build(const char *const *keys, size_t nkeys, const size_t *key_idx, const char *const *datas,
                   size_t n, uint8_t *out, size_t cap);

#endif
