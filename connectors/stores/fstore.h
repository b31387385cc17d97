/* fstore.h - the file store's private pieces: its text format (file_format.c) as the
 * store (file.c) uses it.
 *
 * file_format.c turns a set of checkpoints into the file's bytes and the bytes back into
 * checkpoints, checksum line and name escaping included, without any I/O; file.c does all
 * the I/O (the lock, reading the files, the crash-safe save). Neither is reached from
 * outside the store: the engine and the CLI use the vtable, the tests file.h.
 */
#ifndef SPATE_CONNECTORS_STORES_FSTORE_H
#define SPATE_CONNECTORS_STORES_FSTORE_H

#include "sp_spi.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A checkpoint file larger than this is refused rather than read: at about 40 bytes a
 * line it is millions of partitions, and it keeps lengths within crc32_iscsi()'s int. */
#define FSTORE_MAX_BYTES ((size_t)256 << 20)

/* One checkpoint held in memory; name is owned by the array that holds it. */
typedef struct fent {
	char *name;
	sp_ckpt_t ckpt;
} fent_t;

/* A growable output buffer; oom latches so callers check once at the end. */
typedef struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
} sbuf_t;

/* What a parse found. Entries come only from complete, well-formed lines, in order, so
 * after a failed parse they are what the file held up to the bad line. */
typedef struct fparse {
	fent_t *ents;
	size_t n, cap;
	bool have_header;
	bool truncated; /* the parse failed only because the file ends before its checksum line */
	uint64_t epoch;
	int64_t created_ms;
} fparse_t;

/* Parse a whole checkpoint file held in buf (file names it in messages). SPATE_OK when
 * it is complete and its checksum matches; else SPATE_ERR_CORRUPT (or _UNSUPPORTED,
 * _NOMEM) with the file and line in errstr, and *out holding what parsed before the bad
 * line (out->truncated when the only fault is that the file ends before its checksum
 * line). The caller frees out->ents either way. */
int sp_fstore_parse(const char *file, const char *buf, size_t file_len, fparse_t *out, char *errstr,
                    size_t size);

/* The epoch in the header line at the start of buf (len bytes, the first bytes of a
 * checkpoint file: the whole header line must be among them). SPATE_OK with *epoch set,
 * or SPATE_ERR_CORRUPT (or _UNSUPPORTED) with file named in errstr. */
int sp_fstore_head_epoch(const char *file, const char *buf, size_t len, uint64_t *epoch, char *errstr,
                         size_t size);

/* The file's bytes for this set of entries (sorted by name, names unique), appended to
 * b. SPATE_OK, or SPATE_ERR_NOMEM; b->p is the caller's to free either way. */
int sp_fstore_serialize(const fent_t *ents, size_t n, uint64_t epoch, int64_t created_ms, sbuf_t *b);

#endif /* SPATE_CONNECTORS_STORES_FSTORE_H */
