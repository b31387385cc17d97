/* lease_store.h - what the leasing checkpoint stores (redis.c, dynamodb.c) share: the
 * conf they read, the epoch marker's value, the position as comparable hex, the audit
 * line of an open, and handing a listed lease to list / lease_list's callbacks. */
#ifndef SPATE_STORES_LEASE_STORE_H
#define SPATE_STORES_LEASE_STORE_H

#include "sp_spi.h"

#include <stddef.h>

/* The conf a store reads: its engine's, else the one the CLI set (s->conf, may be NULL). */
const spate_conf_t *ls_conf_of(sp_store_t *s);
/* A fresh epoch marker: 32 random hex digits (the wall clock when getrandom fails). */
void ls_new_epoch(char *buf, size_t size);
/* The position as 128 hex digits, its eight words most significant first (beginning for
 * "beginning"): strings that compare as the positions do (one 512-bit number). */
void ls_ckpt_hex(const sp_ckpt_t *c, const char *beginning, char *buf, size_t size);
/* The debug line of the lease audit trail that an open of store name wrote, namespace ns,
 * found epoch (no line without an engine). */
void ls_audit_open(sp_store_t *s, const char *name, const char *ns, const char *epoch);
/* A listed lease l to lfn (lease_list), and its checkpoint, when it has one, to fn (list);
 * either may be NULL. */
void ls_deliver(void (*fn)(void *arg, const sp_store_entry_t *ent),
                void (*lfn)(void *arg, const sp_lease_t *l), void *arg, const sp_lease_t *l);

#endif
