/* file_format.c - the file checkpoint store's text format: formatting, parsing, the
 * checksum line, the %XX escaping of partition names. No I/O: file.c reads and writes
 * the files.
 *
 * The file (format version 1) is text, so an operator can read it:
 *
 *   spate-checkpoints 1 epoch=<16 hex digits> created=<ms since the Unix epoch>
 *   <name>TAB<checkpoint>                 one line per partition, sorted by name
 *   #end entries=<count> crc32c=<8 hex digits>
 *
 * The checkpoint is what sp_ckpt_fmt() writes ("beginning" or a decimal position). In a
 * name, the bytes '%', '#', DEL and those below 0x20 are written as %XX, so an entry line
 * never starts with '#' and never holds a tab or newline of its own. The CRC-32C on the
 * last line covers every byte before that line; a file that fails it, or fails to parse,
 * is SPATE_ERR_CORRUPT with the file and line named, never an empty store. The epoch is a
 * random value written when the file is created and renewed when every checkpoint is
 * reset, so a file that was replaced can be told from the one that was saved.
 *
 * Each hex number is read in the one case it is written in, a decimal without sign or
 * blanks, and every line in full, so a flipped bit is a parse error or a checksum
 * mismatch, never another value.
 */
#include "fstore.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The format version this code writes; a file with a larger one is refused as
 * SPATE_ERR_UNSUPPORTED (a newer spate wrote it), never guessed at. */
#define FSTORE_VERSION 1
/* The first word of the header line. */
#define FSTORE_MAGIC "spate-checkpoints"
/* The first word of the checksum line, the last line of the file. */
#define FSTORE_TRAILER "#end"
/* The longest checkpoint text accepted in a line (any position, spate.h). */
#define FSTORE_CKPT_MAX SPATE_POSITION_MAX
/* The longest header or checksum line accepted. */
#define FSTORE_META_MAX 160

/* ---- output and names -------------------------------------------------------------- */

static void sbuf_add(sbuf_t *b, const void *data, size_t len)
{
	if (b->oom)
		return;
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + len)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void sbuf_str(sbuf_t *b, const char *s)
{
	sbuf_add(b, s, strlen(s));
}

/* True for the bytes a name carries as %XX in the file. */
static bool name_byte_escaped(unsigned char c)
{
	return c < 0x20 || c == 0x7f || c == '%' || c == '#';
}

static void sbuf_name(sbuf_t *b, const char *name)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (name_byte_escaped(*p)) {
			char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
			sbuf_add(b, esc, sizeof esc);
		} else {
			sbuf_add(b, p, 1);
		}
	}
}

/* The value of a hex digit, or -1. The file writes one case in each place (names
 * escape as %XX, numbers are lowercase) and reads only that case, so a flipped case bit
 * is never read as the same value. */
static int hexval(char c, bool upper)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (!upper && c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (upper && c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode an escaped name of len bytes into a new string. NULL with *bad set when the
 * text is not what sbuf_name() writes; NULL with *bad clear when out of memory. */
static char *name_unescape(const char *s, size_t len, bool *bad)
{
	*bad = true;
	if (len == 0)
		return NULL;
	char *out = malloc(len + 1), *o = out;
	if (!out) {
		*bad = false;
		return NULL;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '%') {
			int hi = i + 2 < len ? hexval(s[i + 1], true) : -1;
			int lo = i + 2 < len ? hexval(s[i + 2], true) : -1;
			if (i + 2 >= len || hi < 0 || lo < 0 || (hi | lo) == 0)
				goto bad;
			*o++ = (char)(hi << 4 | lo);
			i += 2;
		} else if (name_byte_escaped(c)) {
			goto bad;
		} else {
			*o++ = (char)c;
		}
	}
	*o = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

/* Parse exactly `digits` lowercase hex digits (0: one to 16) at *p into *out; advances *p. */
static bool take_hex(const char **p, int digits, uint64_t *out)
{
	uint64_t v = 0;
	int k = 0;
	while (hexval((*p)[k], false) >= 0 && (digits == 0 || k < digits) && k < 16)
		v = v << 4 | (uint64_t)hexval((*p)[k++], false);
	if (k == 0 || (digits && k != digits) || hexval((*p)[k], false) >= 0)
		return false;
	*p += k;
	*out = v;
	return true;
}

/* Parse a decimal number without sign or leading blanks at *p; advances *p. */
static bool take_dec(const char **p, uint64_t *out)
{
	if (**p < '0' || **p > '9')
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(*p, &end, 10);
	if (errno)
		return false;
	*p = end;
	*out = v;
	return true;
}

static bool take_lit(const char **p, const char *lit)
{
	size_t n = strlen(lit);
	if (strncmp(*p, lit, n) != 0)
		return false;
	*p += n;
	return true;
}

/* ---- parsing ------------------------------------------------------------------------ */

#define CORRUPT(line, ...) parse_err(errstr, size, SPATE_ERR_CORRUPT, file, line, __VA_ARGS__)

static int parse_err(char *errstr, size_t size, int code, const char *file, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static int parse_err(char *errstr, size_t size, int code, const char *file, size_t line, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return sp_err(errstr, size, code, "checkpoint file %s line %zu: %s", file, line, msg);
}

/* Copy a header or checksum line into buf as a string; false when it is too long or
 * holds a NUL byte. */
static bool meta_line(const char *line, size_t len, char *buf, size_t bufsize)
{
	if (len >= bufsize || memchr(line, '\0', len))
		return false;
	memcpy(buf, line, len);
	buf[len] = '\0';
	return true;
}

static int parse_header(const char *file, const char *line, size_t len, fparse_t *out, char *errstr,
                        size_t size)
{
	char buf[FSTORE_META_MAX];
	const char *p = buf;
	uint64_t version, epoch, created;
	if (!meta_line(line, len, buf, sizeof buf) || !take_lit(&p, FSTORE_MAGIC " "))
		return CORRUPT(1, "not a spate checkpoint file (no \"%s\" header)", FSTORE_MAGIC);
	if (!take_dec(&p, &version) || *p != ' ' || version == 0)
		return CORRUPT(1, "bad format version in the header");
	if (version > FSTORE_VERSION)
		return parse_err(errstr, size, SPATE_ERR_UNSUPPORTED, file, 1,
		                 "format version %" PRIu64 " is newer than this spate reads (%d)", version,
		                 FSTORE_VERSION);
	if (!take_lit(&p, " epoch=") || !take_hex(&p, 16, &epoch) || !take_lit(&p, " created=") ||
	    !take_dec(&p, &created) || created > INT64_MAX || *p != '\0')
		return CORRUPT(1, "bad header (expected \"%s %d epoch=HEX16 created=MS\")", FSTORE_MAGIC,
		               FSTORE_VERSION);
	out->have_header = true;
	out->epoch = epoch;
	out->created_ms = (int64_t)created;
	return SPATE_OK;
}

static int parse_entry(const char *file, size_t lineno, const char *line, size_t len, fparse_t *out,
                       char *errstr, size_t size)
{
	const char *tab = memchr(line, '\t', len);
	if (!tab)
		return CORRUPT(lineno, "no tab between partition name and checkpoint");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if ((c < 0x20 || c == 0x7f) && line + i != tab)
			return CORRUPT(lineno, "control byte 0x%02x at column %zu", c, i + 1);
	}
	size_t nlen = (size_t)(tab - line), clen = len - nlen - 1;
	char ctext[FSTORE_CKPT_MAX + 1];
	sp_ckpt_t ckpt;
	if (clen == 0 || clen > FSTORE_CKPT_MAX)
		return CORRUPT(lineno, "checkpoint of %zu bytes", clen);
	memcpy(ctext, tab + 1, clen);
	ctext[clen] = '\0';
	if (sp_ckpt_parse(ctext, &ckpt) != 0)
		return CORRUPT(lineno, "bad checkpoint \"%s\"", ctext);
	bool bad;
	char *name = name_unescape(line, nlen, &bad);
	if (!name && bad)
		return CORRUPT(lineno, "bad partition name \"%.*s\"", (int)(nlen > 64 ? 64 : nlen), line);
	if (!name)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "checkpoint file %s: out of memory", file);
	if (out->n && strcmp(out->ents[out->n - 1].name, name) >= 0) {
		int r = CORRUPT(lineno, "partition \"%s\" is out of order or repeated", name);
		free(name);
		return r;
	}
	if (out->n == out->cap) {
		size_t cap = out->cap ? out->cap * 2 : 64;
		fent_t *e = realloc(out->ents, cap * sizeof *e);
		if (!e) {
			free(name);
			return sp_err(errstr, size, SPATE_ERR_NOMEM, "checkpoint file %s: out of memory",
			              file);
		}
		out->ents = e;
		out->cap = cap;
	}
	out->ents[out->n].name = name;
	out->ents[out->n].ckpt = ckpt;
	out->n++;
	return SPATE_OK;
}

static int parse_trailer(const char *file, size_t lineno, const char *buf, size_t off, size_t len,
                         size_t file_len, const fparse_t *out, char *errstr, size_t size)
{
	char meta[FSTORE_META_MAX];
	const char *p = meta;
	uint64_t cnt, crc;
	if (!meta_line(buf + off, len, meta, sizeof meta) || !take_lit(&p, FSTORE_TRAILER " entries=") ||
	    !take_dec(&p, &cnt) || !take_lit(&p, " crc32c=") || !take_hex(&p, 8, &crc) || *p != '\0')
		return CORRUPT(lineno, "bad checksum line (expected \"%s entries=N crc32c=HEX8\")",
		               FSTORE_TRAILER);
	uint32_t have = sp_crc32c(buf, off);
	if (have != (uint32_t)crc)
		return CORRUPT(lineno,
		               "checksum mismatch (stored %08" PRIx32 ", computed %08" PRIx32
		               "): the file is torn or was altered",
		               (uint32_t)crc, have);
	if (cnt != out->n)
		return CORRUPT(lineno, "the checksum line counts %" PRIu64 " entries, the file has %zu", cnt,
		               out->n);
	if (off + len + 1 != file_len)
		return CORRUPT(lineno + 1, "data after the checksum line");
	return SPATE_OK;
}

int sp_fstore_parse(const char *file, const char *buf, size_t file_len, fparse_t *out, char *errstr,
                    size_t size)
{
	size_t off = 0, lineno = 0;
	memset(out, 0, sizeof *out);
	if (file_len == 0) {
		out->truncated = true;
		return CORRUPT(1, "the file is empty");
	}
	while (off < file_len) {
		const char *line = buf + off;
		const char *nl = memchr(line, '\n', file_len - off);
		lineno++;
		if (!nl) {
			out->truncated = true;
			return CORRUPT(lineno, "truncated: the last line is cut off and the checksum line "
			                       "is missing");
		}
		size_t len = (size_t)(nl - line);
		int r;
		if (lineno == 1)
			r = parse_header(file, line, len, out, errstr, size);
		else if (len > 0 && line[0] == '#')
			return parse_trailer(file, lineno, buf, off, len, file_len, out, errstr, size);
		else
			r = parse_entry(file, lineno, line, len, out, errstr, size);
		if (r != SPATE_OK)
			return r;
		off += len + 1;
	}
	out->truncated = true;
	return CORRUPT(lineno + 1, "truncated: the checksum line is missing");
}

int sp_fstore_head_epoch(const char *file, const char *buf, size_t len, uint64_t *epoch, char *errstr,
                         size_t size)
{
	const char *nl = memchr(buf, '\n', len);
	fparse_t fp;
	memset(&fp, 0, sizeof fp);
	if (!nl)
		return CORRUPT(1, "no complete header line");
	int r = parse_header(file, buf, (size_t)(nl - buf), &fp, errstr, size);
	if (r == SPATE_OK)
		*epoch = fp.epoch;
	return r;
}

#undef CORRUPT

/* ---- formatting --------------------------------------------------------------------- */

int sp_fstore_serialize(const fent_t *ents, size_t n, uint64_t epoch, int64_t created_ms, sbuf_t *b)
{
	char line[FSTORE_META_MAX];
	snprintf(line, sizeof line, "%s %d epoch=%016" PRIx64 " created=%" PRId64 "\n", FSTORE_MAGIC,
	         FSTORE_VERSION, epoch, created_ms < 0 ? 0 : created_ms);
	sbuf_str(b, line);
	for (size_t i = 0; i < n; i++) {
		char ctext[FSTORE_CKPT_MAX];
		sbuf_name(b, ents[i].name);
		sbuf_add(b, "\t", 1);
		sbuf_str(b, sp_ckpt_fmt(&ents[i].ckpt, ctext, sizeof ctext));
		sbuf_add(b, "\n", 1);
	}
	if (b->oom)
		return SPATE_ERR_NOMEM;
	snprintf(line, sizeof line, "%s entries=%zu crc32c=%08" PRIx32 "\n", FSTORE_TRAILER, n,
	         sp_crc32c(b->p, b->len));
	sbuf_str(b, line);
	return b->oom ? SPATE_ERR_NOMEM : SPATE_OK;
}
