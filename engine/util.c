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

int spate_position_cmp(const spate_position_t *a, const spate_position_t *b)
{
	for (int i = 0; i < 3; i++)
		if (a->w[i] != b->w[i])
			return a->w[i] < b->w[i] ? -1 : 1;
	return 0;
}

char *spate_position_fmt(const spate_position_t *p, char *buf, size_t size)
{
	if (!p->w[0] && !p->w[1])
		snprintf(buf, size, "%" PRIu64, p->w[2]);
	else
		snprintf(buf, size, "%" PRIx64 ":%016" PRIx64 ":%016" PRIx64, p->w[0], p->w[1], p->w[2]);
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
	const char *q = s;
	if (strchr(s, ':')) {
		uint64_t w[3];
		for (int i = 0; i < 3; i++) {
			if (parse_word(q, 16, i < 2 ? ':' : 0, &w[i], &q) < 0)
				return -1;
			q++;
		}
		memcpy(out->w, w, sizeof(w));
		return 0;
	}
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
	char pos[64];
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
