/* kinesalite.h - Criterion helpers for Kinesis tests: run kinesalite (npm) as a child
 * process on a free port of 127.0.0.1, and call the Kinesis API directly (libcurl, its
 * own SigV4 signing) to set streams up, reshard them, put raw records and read shards.
 *
 * t_kinesalite_start() runs `node tests/tools/kinesalite.js NODE_MODULES` (the modules
 * folder in SPATE_KINESALITE_MODULES, set by tests/meson.build to the one
 * scripts/deps.sh installs into) with its stdin and stdout on pipes, and waits for its
 * "listening" line. If the test process dies, the pipe closes and kinesalite exits; it
 * also gets SIGKILL with its parent (PR_SET_PDEATHSIG). Register t_kinesalite_fini as
 * the suite's .fini so a failing test still stops it.
 *
 * Never skips: a missing node or kinesalite fails the test, naming what to install.
 * Every helper fails with t_require (tests/common/engine.h), so the calls below also
 * work on t_engine_run's during thread (a mid-run split, merge or clock move).
 */
#ifndef SPATE_TESTS_KINESALITE_H
#define SPATE_TESTS_KINESALITE_H

#include <stddef.h>
#include <stdint.h>

typedef struct t_kin t_kin_t;

/* Test credentials (kinesalite checks the shape of a signature, not the signature). */
#define T_KIN_KEY_ID "AKIAIOSFODNN7EXAMPLE"
#define T_KIN_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define T_KIN_REGION "us-east-1"

t_kin_t *t_kinesalite_start(void);
/* "http://127.0.0.1:PORT", valid until t_kinesalite_stop. */
const char *t_kin_endpoint(const t_kin_t *k);
/* Move kinesalite's clock ms ahead (its iterators made before then look older). */
void t_kin_skew(t_kin_t *k, int64_t ms);
/* Stop it (stdin closed, SIGTERM, then SIGKILL after a bound). Frees k. */
void t_kinesalite_stop(t_kin_t *k);
/* Stop every kinesalite still running in this process (Criterion .fini). */
void t_kinesalite_fini(void);
/* Set the AWS_* variables of this process (inherited by the CLI) to the test ones. */
void t_kin_env(void);

/* Call op with the JSON body; returns the HTTP status (0: no reply) and the reply body
 * in *out (malloc'd, may be NULL). */
long t_kin_call(t_kin_t *k, const char *op, const char *body, char **out);
/* t_kin_call that must answer 200 (fails the test otherwise); the reply, malloc'd. */
char *t_kin_ok(t_kin_t *k, const char *op, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Create stream with shards and wait until it is ACTIVE. */
void t_kin_create(t_kin_t *k, const char *stream, int shards);
/* Wait until the stream is ACTIVE again (after a split or merge). */
void t_kin_wait_active(t_kin_t *k, const char *stream);
/* Put one record with raw data; its sequence number (malloc'd). */
char *t_kin_put(t_kin_t *k, const char *stream, const char *key, const void *data, size_t len);

/* A shard as ListShards shows it. */
typedef struct t_shard {
	char id[64], parent[64], adj[64];
	char start_hash[64], end_hash[64];
	int closed;
} t_shard_t;
/* Every shard of the stream (at most max); the count. */
int t_kin_shards(t_kin_t *k, const char *stream, t_shard_t *out, int max);

/* Read a shard from TRIM_HORIZON to where it is caught up with a plain GetRecords loop;
 * returns the number of records, the last sequence number into last (when not NULL,
 * "" when none). */
long t_kin_read_shard(t_kin_t *k, const char *stream, const char *shard, char *last, size_t size);

#endif
