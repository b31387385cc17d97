/* util.c - small shared pieces: clocks, error strings, logging, positions, checkpoints.
 *
 * Logging goes through the engine (sp_msg(e, ...)) so two engines in one process can
 * log at different levels; with e == NULL it writes to stderr at info level.
 */
#include "engine/engine.h"

#include <isa-l/crc.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t sp_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t sp_now_ms(void)
{
	return sp_now_ns() / 1000000;
}

int64_t sp_wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t sp_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int spate_version(void)
{
	return SPATE_VERSION;
}

const char *spate_version_str(void)
{
	return SPATE_VERSION_STR;
}

static const struct {
	const char *name, *str;
} errs[] = {
    [0] = {"OK", "success"},
    [1] = {"ERR_INVALID", "invalid argument or configuration"},
    [2] = {"ERR_UNKNOWN", "unknown key or name"},
    [3] = {"ERR_NOMEM", "out of memory"},
    [4] = {"ERR_IO", "I/O error"},
    [5] = {"ERR_STATE", "not valid in the current state"},
    [6] = {"ERR_CORRUPT", "corrupt data"},
    [7] = {"ERR_NOT_FOUND", "not found"},
    [8] = {"ERR_UNSUPPORTED", "unsupported"},
    [9] = {"ERR_OUT_OF_RANGE", "position out of range"},
    [10] = {"ERR_TIMEOUT", "timed out"},
    [11] = {"ERR_FULL", "queue or buffer full"},
    [12] = {"ERR_BUSY", "held by another user"},
    [13] = {"ERR_HANDLER", "handler failed"},
    [14] = {"ERR_STORE", "checkpoint store failed"},
    [15] = {"ERR_SOURCE", "source failed"},
    [16] = {"ERR_SINK", "sink or DLQ failed"},
    [17] = {"ERR_LEASE", "lease lost: another process holds the partition"},
    [18] = {"ERR_STORE_LOST", "checkpoint store lost its data (epoch marker gone or changed)"},
};

const char *spate_err2str(spate_err_t err)
{
	int i = -(int)err;
	if (i < 0 || i >= (int)(sizeof(errs) / sizeof(errs[0])))
		return "unknown error code";
	return errs[i].str;
}

const char *spate_err2name(spate_err_t err)
{
	int i = -(int)err;
	if (i < 0 || i >= (int)(sizeof(errs) / sizeof(errs[0])))
		return "ERR_UNKNOWN_CODE";
	return errs[i].name;
}

int sp_err(char *errstr, size_t size, int err, const char *fmt, ...)
{
	if (errstr && size) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(errstr, size, fmt, ap);
		va_end(ap);
	}
	return err;
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

bool sp_msg_enabled(sp_engine_t *e, int level)
{
	return level <= (e ? e->log_level : SP_MSG_INFO);
}

static void msg_v(sp_engine_t *e, const char *who, int level, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

static void msg_v(sp_engine_t *e, const char *who, int level, const char *fmt, va_list ap)
{
	char line[2048];
	vsnprintf(line, sizeof(line), fmt, ap);
	/* One fprintf per line: stdio locks the stream, so lines from threads do not mix. */
	fprintf(stderr, "spate: %s: %s%s%s\n", level_names[level < 0 ? 0 : level > 3 ? 3 : level], who ? who : "",
	        who ? ": " : "", line);
}

void sp_msg(sp_engine_t *e, int level, const char *fmt, ...)
{
	if (!sp_msg_enabled(e, level))
		return;
	va_list ap;
	va_start(ap, fmt);
	msg_v(e, NULL, level, fmt, ap);
	va_end(ap);
}

void sp_msg_from(sp_engine_t *e, const char *who, int level, const char *fmt, ...)
{
	if (!sp_msg_enabled(e, level))
		return;
	va_list ap;
	va_start(ap, fmt);
	msg_v(e, who, level, fmt, ap);
	va_end(ap);
}

int sp_write_all(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;
	while (len) {
		ssize_t n = off >= 0 ? pwrite(fd, p, len, off) : write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
		if (off >= 0)
			off += n;
	}
	return 0;
}

uint32_t sp_crc32c(const void *buf, size_t len)
{
	/* ISA-L takes an int length: feed it in pieces */
	uint32_t crc = 0xFFFFFFFFu;
	const unsigned char *p = buf;
	while (len) {
		size_t n = len > (1u << 30) ? (1u << 30) : len;
		crc = crc32_iscsi((unsigned char *)p, (int)n, crc);
		p += n;
		len -= n;
	}
	return crc ^ 0xFFFFFFFFu;
}

int64_t sp_fault_hook(const char *env, char *errstr, size_t size)
{
	const char *f = getenv(env);
	if (!f || !*f)
		return 0;
	if (!strcmp(f, "fail"))
		return INT64_MAX;
	char *end;
	if (!strncmp(f, "fail:", 5) && f[5] >= '0' && f[5] <= '9') {
		errno = 0;
		long long n = strtoll(f + 5, &end, 10);
		if (!*end && !errno && n >= 0)
			return n;
	}
	sp_err(errstr, size, SPATE_ERR_INVALID, "%s=%s: not allowed (fail: every operation fails; fail:N: the next N)", env,
	       f);
	return -1;
}

/* ---- positions: one unsigned 512-bit number, x[0..4] then w[0..2] ----------------------- */

#define POS_WORDS 8
_Static_assert(sizeof(spate_position_t) == POS_WORDS * sizeof(uint64_t), "a position is 8 words, no padding");

/* The words of the number, most significant first (x[0] .. x[4], w[0] .. w[2]): the
 * struct is those eight words with no padding (the assertion above). */
static inline const uint64_t *pos_words(const spate_position_t *p)
{
	return (const uint64_t *)(const void *)p;
}

static inline uint64_t pos_word(const spate_position_t *p, int i)
{
	return pos_words(p)[i];
}

static inline uint64_t *pos_wordp(spate_position_t *p, int i)
{
	return (uint64_t *)(void *)p + i;
}

int spate_position_cmp(const spate_position_t *a, const spate_position_t *b)
{
	/* offsets (x all 0) decide on the low words; the high words are compared first */
	for (int i = 0; i < POS_WORDS; i++) {
		uint64_t u = pos_word(a, i), v = pos_word(b, i);
		if (u != v)
			return u < v ? -1 : 1;
	}
	return 0;
}

bool sp_pos_is_offset(const spate_position_t *p)
{
	for (int i = 0; i < POS_WORDS - 1; i++)
		if (pos_word(p, i))
			return false;
	return true;
}

spate_position_t sp_pos_closed(void)
{
	spate_position_t p;
	memset(&p, 0xff, sizeof(p));
	return p;
}

bool sp_pos_is_closed(const spate_position_t *p)
{
	for (int i = 0; i < POS_WORDS; i++)
		if (pos_word(p, i) != UINT64_MAX)
			return false;
	return true;
}

bool sp_pos_is_wide(const spate_position_t *p)
{
	return (p->x[0] & SPATE_POSITION_WIDE) && !sp_pos_is_closed(p);
}

/* The sequence-number part of a wide position: words 0..6 with the flag cleared, as a
 * little array v[0..6] most significant first. */
static void seq_words(const spate_position_t *p, uint64_t v[POS_WORDS - 1])
{
	for (int i = 0; i < POS_WORDS - 1; i++)
		v[i] = pos_word(p, i);
	v[0] &= ~SPATE_POSITION_WIDE;
}

/* Divide the n-word number v (most significant first) by d in place; the remainder. */
static uint64_t words_divmod(uint64_t *v, int n, uint64_t d)
{
	unsigned __int128 r = 0;
	for (int i = 0; i < n; i++) {
		unsigned __int128 cur = (r << 64) | v[i];
		v[i] = (uint64_t)(cur / d);
		r = cur % d;
	}
	return (uint64_t)r;
}

/* Decimal text of the n-word number v (consumed) into buf; its length, or -1 when it does
 * not fit. */
static int words_dec(uint64_t *v, int n, char *buf, size_t size)
{
	/* 10^19 is the largest power of ten below 2^64: peel 19 digits at a time; 448 bits
	 * are at most 135 digits, 8 such parts */
	const uint64_t chunk = UINT64_C(10000000000000000000);
	uint64_t parts[8];
	int np = 0;
	bool more;
	do {
		parts[np++] = words_divmod(v, n, chunk);
		more = false;
		for (int i = 0; i < n; i++)
			more = more || v[i];
	} while (more && np < 8);
	int len = snprintf(buf, size, "%" PRIu64, parts[np - 1]);
	for (int i = np - 2; i >= 0 && len >= 0 && (size_t)len < size; i--)
		len += snprintf(buf + len, size - (size_t)len, "%019" PRIu64, parts[i]);
	return len < 0 || (size_t)len >= size ? -1 : len;
}

int sp_position_seq_fmt(const spate_position_t *p, char *buf, size_t size)
{
	uint64_t v[POS_WORDS - 1];
	seq_words(p, v);
	return words_dec(v, POS_WORDS - 1, buf, size);
}

int sp_position_wide(const char *digits, size_t len, uint64_t sub, spate_position_t *out)
{
	/* a sequence number: 1 to SP_SEQ_DIGITS_MAX decimal digits, no sign, no leading 0
	 * (except "0" itself), as the Kinesis API's pattern 0|([1-9]\d{0,128}) */
	if (len == 0 || len > SP_SEQ_DIGITS_MAX || (len > 1 && digits[0] == '0'))
		return -1;
	uint64_t v[POS_WORDS - 1] = {0};
	for (size_t k = 0; k < len; k++) {
		if (digits[k] < '0' || digits[k] > '9')
			return -1;
		unsigned __int128 carry = (unsigned)(digits[k] - '0');
		for (int i = POS_WORDS - 2; i >= 0; i--) {
			unsigned __int128 cur = (unsigned __int128)v[i] * 10 + carry;
			v[i] = (uint64_t)cur;
			carry = cur >> 64;
		}
		if (carry || (v[0] & SPATE_POSITION_WIDE))
			return -1; /* cannot happen below SP_SEQ_DIGITS_MAX digits; kept as a guard */
	}
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < POS_WORDS - 1; i++)
		*pos_wordp(out, i) = v[i];
	out->x[0] |= SPATE_POSITION_WIDE;
	out->w[2] = sub;
	return 0;
}

char *spate_position_fmt(const spate_position_t *p, char *buf, size_t size)
{
	if (sp_pos_is_offset(p)) {
		snprintf(buf, size, "%" PRIu64, p->w[2]);
	} else if (sp_pos_is_closed(p)) {
		snprintf(buf, size, "SHARD_END");
	} else if (sp_pos_is_wide(p)) {
		char seq[SPATE_POSITION_MAX];
		if (sp_position_seq_fmt(p, seq, sizeof(seq)) < 0)
			seq[0] = 0;
		snprintf(buf, size, "%s.%" PRIu64, seq, p->w[2]);
	} else if (!p->x[0] && !p->x[1] && !p->x[2] && !p->x[3] && !p->x[4]) {
		snprintf(buf, size, "%" PRIx64 ":%016" PRIx64 ":%016" PRIx64, p->w[0], p->w[1], p->w[2]);
	} else {
		snprintf(buf, size,
		         "%" PRIx64 ":%016" PRIx64 ":%016" PRIx64 ":%016" PRIx64 ":%016" PRIx64 ":%016" PRIx64
		         ":%016" PRIx64 ":%016" PRIx64,
		         p->x[0], p->x[1], p->x[2], p->x[3], p->x[4], p->w[0], p->w[1], p->w[2]);
	}
	return buf;
}

/* Parse one unsigned word: digits only (no sign, no space), no overflow. */
static int parse_word(const char *s, int base, char stop, uint64_t *out, const char **next)
{
	char *end;
	if (!isxdigit((unsigned char)*s) || (base == 10 && !isdigit((unsigned char)*s)))
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, base);
	if (errno == ERANGE || *end != stop)
		return -1;
	*out = v;
	*next = end;
	return 0;
}

int sp_position_parse(const char *s, spate_position_t *out)
{
	if (!s)
		return -1;
	if (!strcmp(s, "SHARD_END")) {
		*out = sp_pos_closed();
		return 0;
	}
	const char *q = s;
	const char *dot = strchr(s, '.');
	if (dot) { /* SEQ.SUB */
		uint64_t sub;
		if (parse_word(dot + 1, 10, 0, &sub, &q) < 0)
			return -1;
		return sp_position_wide(s, (size_t)(dot - s), sub, out);
	}
	size_t colons = 0;
	for (const char *c = s; *c; c++)
		colons += *c == ':';
	if (colons == 2 || colons == POS_WORDS - 1) {
		int n = (int)colons + 1;
		uint64_t w[POS_WORDS];
		for (int i = 0; i < n; i++) {
			if (parse_word(q, 16, i < n - 1 ? ':' : 0, &w[i], &q) < 0)
				return -1;
			q++;
		}
		memset(out, 0, sizeof(*out));
		for (int i = 0; i < n; i++)
			*pos_wordp(out, POS_WORDS - n + i) = w[i];
		return 0;
	}
	if (colons)
		return -1;
	uint64_t v;
	if (parse_word(s, 10, 0, &v, &q) < 0)
		return -1;
	*out = sp_pos(v);
	return 0;
}

char *sp_ckpt_fmt(const sp_ckpt_t *c, char *buf, size_t size)
{
	if (c->beginning)
		snprintf(buf, size, "beginning");
	else
		spate_position_fmt(&c->after, buf, size);
	return buf;
}

int sp_ckpt_parse(const char *s, sp_ckpt_t *out)
{
	if (!strcmp(s, "beginning")) {
		memset(out, 0, sizeof(*out));
		out->beginning = true;
		return 0;
	}
	out->beginning = false;
	return sp_position_parse(s, &out->after);
}

size_t spate_record_id(const spate_record_t *rec, char *buf, size_t size)
{
	char pos[SPATE_POSITION_MAX];
	spate_position_fmt(&rec->position, pos, sizeof(pos));
	int n = snprintf(buf, buf ? size : 0, "%s/%s", rec->partition->name, pos);
	return n < 0 ? 0 : (size_t)n;
}

const char *sp_split_uri(const char *s, char *name, size_t name_size)
{
	size_t n = strcspn(s, ":");
	if (n >= name_size)
		n = name_size - 1;
	memcpy(name, s, n);
	name[n] = 0;
	if (s[n] != ':')
		return "";
	if (!strncmp(s + n, "://", 3))
		return s; /* redis://host:port keeps the whole URI */
	return s + n + 1;
}
