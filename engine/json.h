/* json.h - a validating JSON scanner that keeps only the paths it is asked for.
 *
 * The record filter (filter.c) needs to know two things of a record's value: whether it
 * is JSON, and what the few fields its patterns name hold. sp_json_scan() reads the
 * whole input once, checking it against the grammar exactly as jansson 2.14's
 * json_loadb(JSON_DECODE_ANY) does (the tests hold it to that, input by input), but
 * builds nodes only along the paths of a selector tree: other members are checked and
 * skipped without decoding a string or converting a number. With the selector
 * sp_json_sel_all it keeps everything, which is how filter patterns are parsed.
 *
 * What "accepts exactly what jansson accepts" means, beyond RFC 8259:
 *  - nesting deeper than SP_JSON_MAX_DEPTH values (2048) is refused;
 *  - an integer (no '.', no exponent) outside int64_t is refused, and so is a real
 *    that overflows a double; underflow is accepted;
 *  - "\u0000" is refused in strings and keys, as are lone UTF-16 surrogates and
 *    invalid UTF-8 (overlong forms, surrogates, above U+10FFFF);
 *  - one NUL byte right after a number or a literal (true, false, null) is skipped
 *    (jansson's reader drops a NUL it pushes back); any other NUL byte is refused;
 *  - duplicate keys are accepted; the selector path keeps only the last one, as
 *    json_object_get() would see it (sp_json_sel_all keeps them all).
 *
 * Nodes live in an sp_json_buf_t the caller owns and reuses (the filter keeps one per
 * worker); it grows when an input needs more and never shrinks, so a steady stream of
 * similar records allocates nothing. Node 0 is never used: index 0 means "none".
 *
 * @locality any thread; a buffer is used by one thread at a time.
 */
#ifndef SPATE_ENGINE_JSON_H
#define SPATE_ENGINE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The deepest nesting jansson accepts: the top-level value is at depth 1. */
#define SP_JSON_MAX_DEPTH 2048

/* Results of sp_json_scan() besides a node index. */
#define SP_JSON_EINVAL (-1) /* not JSON (jansson would refuse it) */
#define SP_JSON_ENOMEM (-2) /* the buffer could not grow */

typedef enum sp_json_type {
	SP_JSON_NONE = 0, /* no value (an index of 0) */
	SP_JSON_NULL,
	SP_JSON_FALSE,
	SP_JSON_TRUE,
	SP_JSON_NUMBER,
	SP_JSON_STRING,
	SP_JSON_ARRAY,
	SP_JSON_OBJECT,
} sp_json_type_t;

/* Node flags. */
#define SP_JSON_F_DECODED  0x01 /* the string's bytes are in buf->bytes (it had escapes) */
#define SP_JSON_F_KDECODED 0x02 /* the member key's bytes are in buf->bytes */
#define SP_JSON_F_SKIPPED  0x04 /* an array: some element was not kept (a scalar off the leaves) */

/* A member key matched by no selector key (and every key under sp_json_sel_all). */
#define SP_JSON_KEY_NONE UINT16_MAX

typedef struct sp_json_node {
	uint8_t type;   /* sp_json_type_t */
	uint8_t flags;  /* SP_JSON_F_* */
	uint16_t key;   /* an object member: the index of the selector key it matched */
	uint32_t next;  /* the next sibling, 0 for none */
	uint32_t child; /* the first kept member or element, 0 for none */
	uint32_t pos;   /* the byte offset of the value's first byte in the input */
	uint32_t off;   /* strings and numbers: where the bytes are (input, or buf->bytes) */
	uint32_t len;   /* ... and how many (strings decoded, without the quotes) */
	uint32_t kpos;  /* an object member: the offset of its key's opening quote */
	uint32_t koff;  /* sel_all only: the decoded key (input, or buf->bytes), and length */
	uint32_t klen;
	double num; /* a number's value (strtod's, correctly rounded) */
} sp_json_node_t;

typedef struct sp_json_sel sp_json_sel_t;

/* One key a selector looks for, and the selector its value is read with. */
typedef struct sp_json_selkey {
	const char *name; /* the key as decoded bytes (may hold any byte but NUL) */
	uint32_t len;
	const sp_json_sel_t *child; /* never NULL */
} sp_json_selkey_t;

/*
 * Which parts of a value to keep. A value read with a selector is kept as a node when it
 * is an array (its elements are read with the same selector: arrays are transparent), an
 * object whose selector has keys (only the members named by keys are kept, each read
 * with its key's child), or a scalar whose selector is a leaf. The top-level value is
 * always kept.
 */
struct sp_json_sel {
	const sp_json_selkey_t *keys;
	uint32_t nkeys;
	uint32_t maxlen; /* the longest key (longer event keys are skipped unread) */
	bool leaf;       /* keep scalars here */
	bool all;        /* keep everything below (sp_json_sel_all) */
};

/* Keep every value and every key, in document order, duplicates included. */
extern const sp_json_sel_t sp_json_sel_all;

struct sp_json_frame;

/* The caller's reusable storage for one scan at a time. Zero it (or SP_JSON_BUF_INIT)
 * before the first use; sp_json_buf_free() releases it. */
typedef struct sp_json_buf {
	sp_json_node_t *nodes;
	uint32_t nnodes, cap_nodes;
	char *bytes; /* decoded strings and keys */
	size_t nbytes, cap_bytes;
	struct sp_json_frame *frames;
	uint32_t cap_frames;
} sp_json_buf_t;

#define SP_JSON_BUF_INIT                                                                                     \
	{                                                                                                    \
		0                                                                                            \
	}

void sp_json_buf_free(sp_json_buf_t *b);

/**
 * Check that in[0..len) is one JSON value (any type, surrounded by optional
 * whitespace), as jansson does, keeping what sel asks for (NULL: check only).
 * Returns the index of the top-level node (1) when sel is not NULL, 0 when sel is NULL,
 * SP_JSON_EINVAL when the input is not JSON (with *err_off, when not NULL, at the byte
 * where the scan stopped), or SP_JSON_ENOMEM. An input of 4 GiB or more is EINVAL.
 * @locality any thread; b is the caller's and is overwritten
 */
int sp_json_scan(const void *in, size_t len, const sp_json_sel_t *sel, sp_json_buf_t *b, size_t *err_off);

/** The bytes of a string or number node (not NUL-terminated), given the scanned input. */
static inline const char *sp_json_bytes(const sp_json_buf_t *b, const void *in, const sp_json_node_t *n)
{
	return (n->flags & SP_JSON_F_DECODED) ? b->bytes + n->off : (const char *)in + n->off;
}

/** The decoded key of a member node scanned with sp_json_sel_all. */
static inline const char *sp_json_key(const sp_json_buf_t *b, const void *in, const sp_json_node_t *n)
{
	return (n->flags & SP_JSON_F_KDECODED) ? b->bytes + n->koff : (const char *)in + n->koff;
}

/** True when p[0..n) is UTF-8 as jansson accepts it (no overlong forms, surrogates or
 *  code points above U+10FFFF). NUL bytes are allowed. */
bool sp_json_utf8_valid(const void *p, size_t n);

/**
 * The double nearest to the JSON number text s[0..n) (which must be one), as strtod
 * gives it in the C locale, without strtod's locale or a NUL terminator. Numbers of up
 * to 15 significant digits and small exponents take an exact fast path.
 */
double sp_json_number(const char *s, size_t n);

#endif /* SPATE_ENGINE_JSON_H */
