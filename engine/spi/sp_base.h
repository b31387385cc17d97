/* sp_base.h - the small utilities every layer of spate uses: clocks, messages (the
 * engine's logger), error strings, configuration getters, positions and checkpoints,
 * "name:arg" values, whole writes, CRC-32C and the test fault hooks.
 *
 * It is one of the two headers a connector or operator may include besides the public
 * spate/spate.h (the other is sp_spi.h, the plugin interface). Nothing here depends on
 * the engine's private state.
 */
#ifndef SPATE_SP_BASE_H
#define SPATE_SP_BASE_H

#include <spate/spate.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/** The engine, as plugins and utilities name it (the same object as spate_engine_t). */
typedef struct spate_engine_s sp_engine_t;

/* ---- clocks ------------------------------------------------------------------------ */

/** Monotonic milliseconds / nanoseconds. */
int64_t sp_now_ms(void);
int64_t sp_now_ns(void);
/** Wall clock ms / us since the epoch (record timestamps). */
int64_t sp_wall_ms(void);
int64_t sp_wall_us(void);

/* ---- messages: the engine's logger (distinct from the embedded log, sp_log_*) --------- */

enum sp_msg_level { SP_MSG_ERROR = 0, SP_MSG_WARN = 1, SP_MSG_INFO = 2, SP_MSG_DEBUG = 3 };

/** A message through engine e's logger (stderr; level from log.level). e may be NULL
 *  (then stderr at info). Thread-safe: one write per line. Never pass secrets. */
void sp_msg(sp_engine_t *e, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/** The same, prefixed with "who: " (a plugin's name): what SP_PMSG writes. */
void sp_msg_from(sp_engine_t *e, const char *who, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
bool sp_msg_enabled(sp_engine_t *e, int level);

/** snprintf into an errstr that may be NULL. Returns err so callers can `return sp_err(...)`. */
int sp_err(char *errstr, size_t size, int err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ---- configuration getters (engine/conf.c) ---------------------------------------- */

/** Typed getters for keys of the option tables (the engine's and every plugin's); abort
 *  on a key no table has (a bug). */
int64_t sp_conf_int(const spate_conf_t *c, const char *key);
bool sp_conf_bool(const spate_conf_t *c, const char *key);
const char *sp_conf_str(const spate_conf_t *c, const char *key); /* never NULL ("" when unset) */
/** True when the key was set explicitly (not a default). */
bool sp_conf_is_set(const spate_conf_t *c, const char *key);
/** Call fn for every pass-through key that starts with prefix ("kafka."). */
void sp_conf_foreach_prefix(const spate_conf_t *c, const char *prefix,
                            void (*fn)(void *arg, const char *key, const char *val), void *arg);
/** Parse "123", "1k", "4M", "1G" (binary multiples) into *out. 0 or -1. */
int sp_parse_size(const char *s, int64_t *out);

/* ---- positions and checkpoints ---------------------------------------------------- */

/** A checkpoint: either "nothing of this partition is DONE yet" (beginning: for offset
 *  positions, offset 0) or "every record up to and including `after` is DONE". */
typedef struct sp_ckpt {
	bool beginning;
	spate_position_t after;
} sp_ckpt_t;

/** "beginning" or the position's text (spate_position_fmt) into buf. */
char *sp_ckpt_fmt(const sp_ckpt_t *c, char *buf, size_t size);
/** Parse what sp_ckpt_fmt wrote. 0 or -1. */
int sp_ckpt_parse(const char *s, sp_ckpt_t *out);
/** Parse a position as spate_position_fmt writes it (also the three-word hex form older
 *  versions wrote). 0 or -1. */
int sp_position_parse(const char *s, spate_position_t *out);

static inline spate_position_t sp_pos(uint64_t off)
{
	spate_position_t p = {.w = {0, 0, off}};
	return p;
}

/** The most digits of a wide position's sequence number (the Kinesis API's pattern
 *  0|([1-9]\d{0,128})). */
#define SP_SEQ_DIGITS_MAX 129

/** True when p is an offset: only w[2] may be non-zero (what log, gen, push and Kafka
 *  positions are; a source refuses a checkpoint that is not one). */
bool sp_pos_is_offset(const spate_position_t *p);
/** True for a wide (sequence number, sub-sequence) position (not SHARD_END). */
bool sp_pos_is_wide(const spate_position_t *p);
/** SPATE_POSITION_CLOSED (every bit set, "SHARD_END"): after every record of a partition
 *  that has ended. */
spate_position_t sp_pos_closed(void);
bool sp_pos_is_closed(const spate_position_t *p);
/** A wide position from a sequence number in decimal (digits, len: 1 to
 *  SP_SEQ_DIGITS_MAX digits, no sign, no leading zero) and a sub-sequence number. 0, or
 *  -1 when digits is not such a number. Needs no NUL after the digits. */
int sp_position_wide(const char *digits, size_t len, uint64_t sub, spate_position_t *out);
/** The sequence number of a wide position in decimal into buf (SPATE_POSITION_MAX bytes
 *  hold any). Its length, or -1 when buf is too small. */
int sp_position_seq_fmt(const spate_position_t *p, char *buf, size_t size);

/* ---- values, files, checksums ----------------------------------------------------- */

/** Split "name:arg" at the first ':' into name (copied into buf) and arg (pointer into s).
 *  "redis://h:p" keeps the whole string as arg with name "redis". */
const char *sp_split_uri(const char *s, char *name, size_t name_size);

/** The modes spate asks for what it makes (logs and DLQs, their folders, segments,
 *  indexes, durable and metadata files, file stores and their locks, the journal,
 *  summary.json, stats.file): private to the user. The umask still applies, so a
 *  stricter one makes them stricter; a file that exists keeps its mode. */
#define SP_FILE_MODE 0600
#define SP_DIR_MODE  0700

/** Write all len bytes to fd (at off with pwrite when off >= 0, else write), retrying
 *  short writes and EINTR. 0, or -1 with errno set. */
int sp_write_all(int fd, const void *buf, size_t len, off_t off);

/** CRC-32C (Castagnoli) of buf, as Kafka and the file store compute it (ISA-L). */
uint32_t sp_crc32c(const void *buf, size_t len);

/* ---- test fault hooks ------------------------------------------------------------------ */

/** A fault hook from the environment variable env: unset or "" is 0 (off), "fail" is
 *  INT64_MAX (every operation fails), "fail:N" the next N. A bad value is -1 with errstr
 *  naming the variable and what is allowed. Read once per instance (no global state). */
int64_t sp_fault_hook(const char *env, char *errstr, size_t size);

#endif /* SPATE_SP_BASE_H */
