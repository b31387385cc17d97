/* logtest.h - helpers shared by the embedded log's tests: temporary directories,
 * deterministic records, reading a partition back, hashing a directory. */
#ifndef SPATE_TESTS_LOGTEST_H
#define SPATE_TESTS_LOGTEST_H

#include "connectors/log/log.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** A record as read back (owned copies). key/value NULL for null. */
typedef struct lt_rec {
	uint64_t offset;
	int64_t ts;
	uint8_t *key;
	size_t key_len;
	uint8_t *value;
	size_t value_len;
	size_t hcnt;
	spate_header_t *hdrs; /* keys and values copied */
} lt_rec_t;

typedef struct lt_recs {
	lt_rec_t *v;
	size_t n, cap;
} lt_recs_t;

/** A new directory under /tmp (abort on failure); free with lt_rmrf + free. */
char *lt_mkdtemp(void);
/** rm -rf dir. */
void lt_rmrf(const char *dir);
/** cp -a of a flat or nested directory tree. */
void lt_copy_tree(const char *src, const char *dst);
/** XXH3 over every file's relative path and bytes under dir, in name order. */
uint64_t lt_hash_tree(const char *dir);
/** XXH3 of one file's bytes, and its size. */
uint64_t lt_hash_file(const char *path, uint64_t *size);

/** The deterministic record i of a test stream: its key may be null (every 7th), value
 *  null (every 11th), 0..3 headers (a null header value every 5th), timestamps that
 *  mostly rise (every 13th goes back 3 ms). Pointers into static per-call storage: use
 *  before the next call with the same slot. */
void lt_make(uint64_t i, int slot, spate_push_record_t *r);
/** Compare a read-back record with lt_make(i) at offset. Criterion asserts inside. */
void lt_check(const lt_rec_t *got, uint64_t i, uint64_t offset);
/** lt_make with a value that compresses (when not null): {"i":I,"text":"abcdefgh" x (i % 40)}.
 *  tests/connectors/log/kafka_python.py makes the same records. */
void lt_make_text(uint64_t i, int slot, spate_push_record_t *r);
void lt_check_text(const lt_rec_t *got, uint64_t i, uint64_t offset);

/** Reader options with a malloc chunk allocator. */
void lt_ropts(sp_log_ropts_t *o);
/** Copy every record of the chunks into recs, release and free them. Checks with
 *  t_require (tests/common/engine.h), so it may run on a during thread. */
void lt_take(sp_chunk_t **c, int n, lt_recs_t *recs);
/** lt_take, copying records only while recs holds fewer than max; every chunk is still
 *  checked, released and freed. */
void lt_take_at_most(sp_chunk_t **c, int n, lt_recs_t *recs, size_t max);
/** Open dir for reading, bind partition 0 to p and seek it to `from` (Criterion asserts). */
sp_log_reader_t *lt_open_at(const char *dir, const sp_log_ropts_t *o, sp_part_t *p, uint64_t from);
/** Poll rd until recs holds exactly `until` records (fails after LT_WAIT_MS without
 *  progress). */
void lt_read_until(sp_log_reader_t *rd, lt_recs_t *recs, size_t until);
void lt_recs_free(lt_recs_t *recs);

/**
 * Read partition `part` of dir from `from` to its durable end as it is now (stop at
 * end). Returns SPATE_OK with the records appended to recs, or the poll's error (its
 * message in errstr). Waits at most LT_WAIT_MS per poll for the reader's fd (a guard
 * against hangs only). Checks with t_require, so it may run on a during thread.
 */
int lt_read(const char *dir, int part, uint64_t from, const sp_log_ropts_t *o, lt_recs_t *recs, char *errstr,
            size_t size);

/** Writer options for tests: small segments and batches, no time-based flush. */
void lt_wopts(sp_log_wopts_t *o, uint64_t segment_bytes, size_t batch_bytes);

/** Path of a partition's segment file by base. */
void lt_seg(char *buf, size_t size, const char *dir, int part, uint64_t base);

/** Number of *.log files in a partition. */
size_t lt_segments(const char *dir, int part);

#define LT_WAIT_MS 10000

#endif
