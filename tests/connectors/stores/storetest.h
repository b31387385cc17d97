/* storetest.h - what the lease store tests (test_redis_store.c, test_dynamodb_store.c)
 * share: opening a store, one-entry saves, and the bodies of the tests every leasing
 * store passes alike (round trip, an old holder refused, racing acquirers), each given
 * the store's ops and its argument (URI or table). Failures are Criterion assertions. */
#ifndef SPATE_TESTS_STORETEST_H
#define SPATE_TESTS_STORETEST_H

#include "engine/spi/sp_registry.h"

#include <stddef.h>
#include <stdint.h>

/* The configuration stt_open gives the stores it opens (their keys: redis.tls.ca, ...);
 * NULL, the default, gives none. Criterion runs each test in its own process. */
extern const spate_conf_t *stt_conf;
/* Open st (zeroed first) as ops on arg in namespace ns; asserts it opens. */
void stt_open(sp_store_t *st, const sp_store_ops_t *ops, const char *arg, const char *ns);
/* A checkpoint after offset off. */
sp_ckpt_t stt_at(uint64_t off);
/* Save one entry; asserts save's result and the entry's agree, returns it. */
int stt_save1(sp_store_t *st, const char *name, sp_ckpt_t ck, const char *owner, uint64_t counter, char *err,
              size_t sz);
/* The round trip in namespace ns, partition "log/t/0": not found, acquired by "a" (counter
 * 1), saved at 41 (then after_first(arg) checks what the store holds, when not NULL), not
 * moved back to the beginning, a wide position after it saved, a position before that
 * refused; reopened, the wide position loads; namespace "other" does not see it. The
 * store is left open in *st (the reopened one) for the caller's own checks. */
void stt_round_trip(sp_store_t *st, const sp_store_ops_t *ops, const char *arg, const char *ns,
                    void (*after_first)(sp_store_t *st, void *arg), void *hook_arg);
/* Partition name: a (which held it with counter old as "A") can no longer write, renew or
 * release; a write naming "B" with old is refused too; b ("B", counter cur) writes at 20. */
void stt_old_holder_refused(sp_store_t *a, sp_store_t *b, const char *name, uint64_t old, uint64_t cur);
/* A save without a lease (no owner) on partition name is refused (SPATE_ERR_INVALID). */
void stt_bare_save_refused(sp_store_t *st, const char *name);
/* On the open store st: "A" acquires "p" and saves at 5; after wipe(arg) emptied the
 * store under it, epoch says SPATE_ERR_STORE_LOST (an error naming named and "lost its
 * data"), and a save and a renewal are refused as lost too. st stays open. */
void stt_wiped_is_store_lost(sp_store_t *st, void (*wipe)(void *arg), void *arg, const char *named);
/* Two stores on arg in namespace ns: a holds "p"; b resets a partition it does not have
 * (SPATE_ERR_NOT_FOUND), then everything: a's epoch is lost, b's the new one. */
void stt_reset_writes_new_epoch(const sp_store_ops_t *ops, const char *arg, const char *ns);
/* n threads each open ops on arg in namespace ns and, together, acquire partition name
 * without a view: exactly one wins, the others are refused (SPATE_ERR_LEASE). */
void stt_acquirers_one_wins(const sp_store_ops_t *ops, const char *arg, const char *ns, const char *name,
                            int n);

#endif
