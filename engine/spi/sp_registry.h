/* sp_registry.h - the one table of every plugin (lib/registry.c): the engine finds
 * sources, stores, sinks and operators by name through it, the configuration is the
 * union of their option tables, and the CLI opens stores and sinks with it.
 *
 * Plugins do not need it. The engine includes nothing from connectors/ or operators/:
 * it knows them only through these lookups.
 */
#ifndef SPATE_SP_REGISTRY_H
#define SPATE_SP_REGISTRY_H

#include "sp_spi.h"

const sp_source_ops_t *sp_find_source(const char *name);
const sp_store_ops_t *sp_find_store(const char *name);
const sp_sink_ops_t *sp_find_sink(const char *name);
const sp_operator_ops_t *sp_find_operator(const char *name);
/** NULL-terminated lists, for --help and the option tables. */
const sp_source_ops_t *const *sp_sources(void);
const sp_store_ops_t *const *sp_stores(void);
const sp_sink_ops_t *const *sp_sinks(void);
const sp_operator_ops_t *const *sp_operators(void);

/** The names of every plugin of a kind ("gen, push, log:DIR, kafka"), for errors. */
const char *sp_registry_kinds(const char *kind);

/** Open a store from a "store" value (file:PATH, ...) outside an engine (the CLI). */
int sp_store_open_uri(const char *uri, sp_store_t *st, char *errstr, size_t size);
/** The same, only to read: the store's open_readonly when it has one (no lock, nothing
 *  written), else its open. */
int sp_store_open_uri_readonly(const char *uri, sp_store_t *st, char *errstr, size_t size);
/** Either of them for the checkpoints of pipeline ns in a shared store (redis: the keys
 *  spate:NS:...; NULL: "pipeline"), with the store's keys from conf (redis.tls.ca, ...;
 *  NULL: their defaults; it must outlive the store). */
int sp_store_open_uri_ns(const char *uri, const char *ns, const spate_conf_t *conf, bool readonly, sp_store_t *st,
                         char *errstr, size_t size);

#endif /* SPATE_SP_REGISTRY_H */
