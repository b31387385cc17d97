/* file.h - internal entry points of the file checkpoint store, for its tests.
 *
 * The engine and the CLI reach the file store only through its vtable, sp_store_file
 * (found by name in lib/registry.c). What is declared here besides the vtable exists
 * so tests can stop a save between its steps, as a crash would, and look at the
 * store's epoch marker; nothing in the engine calls it.
 */
#ifndef SPATE_CONNECTORS_STORES_FILE_H
#define SPATE_CONNECTORS_STORES_FILE_H

#include "sp_spi.h"

#include <stdint.h>

/** The embedded default checkpoint store: store=file:PATH. */
extern const sp_store_ops_t sp_store_file;

/** Where sp_store_file_save_fault() stops a save, in the order a save runs. */
enum sp_file_fault_step {
	SP_FILE_FAULT_NONE = 0,          /* run the whole save */
	SP_FILE_FAULT_PARTIAL_WRITE = 1, /* after writing the first half of PATH.tmp */
	SP_FILE_FAULT_BEFORE_FSYNC = 2,  /* after writing all of PATH.tmp, before its fsync */
	SP_FILE_FAULT_BEFORE_RENAME = 3, /* after the fsync, before rename(PATH.tmp, PATH) */
	SP_FILE_FAULT_BEFORE_DIRSYNC = 4 /* after the rename, before the directory's fsync */
};

/**
 * Run save() on a file store and stop after step stop_after (an sp_file_fault_step),
 * leaving the files as a crash at that instant would (the tmp file is not removed).
 * The store's memory is left unchanged, so the test should close the store and open
 * it again to see what a restarted process sees. Returns SPATE_ERR_STORE with
 * "fault injected ..." in errstr when it stopped, or what save() returns when
 * stop_after is SP_FILE_FAULT_NONE. @locality any thread (the store's lock is taken)
 */
int sp_store_file_save_fault(sp_store_t *s, const sp_store_entry_t *ents, size_t n, int stop_after,
                             char *errstr, size_t size);

/** The store's epoch marker: a random 64-bit value written when the file is first
 *  created and again when every checkpoint is reset; kept across ordinary saves. 0 for
 *  a read-only look (open_readonly) at a store that has no file yet. */
uint64_t sp_store_file_epoch(sp_store_t *s);

#endif /* SPATE_CONNECTORS_STORES_FILE_H */
