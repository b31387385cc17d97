/* kintest.h - what the Kinesis pipeline tests share: records put through spate's own
 * sink (key kNNN, value "kNNN:SEQ" with a per-key sequence, header "n" = SEQ), a handler
 * that counts every delivery and checks per-key order, running an engine on a stream of
 * a kinesalite (tests/common/engine.h's t_engine_run), and reading the file store's
 * checkpoints. Failures are t_require / t_expect: kt_put and kt_wait_total also run on
 * a during thread. */
#ifndef SPATE_TESTS_KINTEST_H
#define SPATE_TESTS_KINTEST_H

#include "engine/engine.h"
#include "tests/common/engine.h"
#include "tests/common/kinesalite.h"

#include <pthread.h>
#include <stdatomic.h>

enum { KT_MAX_PARTS = 64 };

typedef struct kt_part {
	char name[128];
	long first_in; /* the handler tick of its first record (-1 none) */
	long last_out; /* the tick after its last record was handled */
	long n;
	spate_position_t last;
} kt_part_t;

typedef struct kt_seen kt_seen_t;
struct kt_seen {
	pthread_mutex_t mu;
	int keys, per_key;
	int *last;      /* per key: the last sequence handled (-1) */
	uint8_t *count; /* per (key, seq): deliveries */
	long total, dups, disorder, bad_header, foreign;
	long distinct; /* records handled at least once */
	long tick;
	kt_part_t parts[KT_MAX_PARTS];
	int nparts;
	/* hooks */
	spate_engine_t *e;
	long stop_after;           /* spate_engine_stop once this many were handled (0: never) */
	bool stopped;              /* ... and it was called (once: a second call stops at once) */
	int delay_ms;              /* each batch takes this long (so a stop lands mid-stream) */
	_Atomic int block;         /* 1: the handler waits while it stays 1 (set by the test) */
	_Atomic int blocked;       /* the handler is waiting */
	spate_position_t *min_pos; /* per partition name: records must be after (restart) */
	char (*min_names)[128];
	int nmin;
	long before_ckpt; /* records at or before min_pos */
	kt_part_t spare;  /* kt_part's answer when parts is full (a failure is noted) */
	/* called (under mu, on a worker: t_expect only) with a partition's name when its
	 * first record is handled; hook_arg is the test's */
	void (*first_of)(struct kt_seen *s, const char *part);
	void *hook_arg;
};

void kt_seen_init(kt_seen_t *s, int keys, int per_key);
void kt_seen_free(kt_seen_t *s);
/* Every record handled exactly once, in per-key order, with its header. */
void kt_assert_exactly_once(kt_seen_t *s);
kt_part_t *kt_part(kt_seen_t *s, const char *name);
/* The counting handler on s (what kt_run runs; a test running engines itself uses it). */
spate_handler_t kt_handler(kt_seen_t *s);

/* Put keys x per_key records (seq from first_seq) through the kinesis sink, interleaved
 * by key. */
void kt_put(t_kin_t *k, const char *stream, int keys, int first_seq, int per_key);

/* The conf of a source=kinesis run on stream: store=file:DIR/ck, fast ticks, as key,
 * value pairs in kv (for t_engine_opts_t.conf; valid while cf and k live). */
typedef struct kt_conf {
	char store[600];
	const char *kv[24];
} kt_conf_t;
void kt_conf_init(kt_conf_t *cf, t_kin_t *k, const char *stream, const char *dir);

/* Run an engine (t_engine_run) on cf and the more pairs (NULL-terminated, may be NULL)
 * with the counting handler, to its end (stop.at.end, s->stop_after, or a stop from
 * during). during, when not NULL, runs on a second thread meanwhile and gets arg as
 * d->arg; it stops the engine (spate_engine_stop(d->e)) when the run has no end of its
 * own. Fails the test unless the run ends without error. */
void kt_run(const kt_conf_t *cf, const char *const *more, kt_seen_t *s, void (*during)(t_during_t *),
            void *arg);
/* Wait until s->total reaches n (fails the test after ms). */
void kt_wait_total(kt_seen_t *s, long n, int ms);

/* The store's checkpoint of partition name as text ("" when none). Any thread. */
void kt_ckpt(const char *dir, const char *name, char *out, size_t size);

/* The hash key that splits shard sh in two halves (its range's midpoint + 1), in decimal. */
void kt_mid_hash(const t_shard_t *sh, char *buf, size_t size);

#endif
