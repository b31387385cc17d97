/* logtest.c - helpers shared by the embedded log's tests (see logtest.h). */
#include "tests/connectors/log/logtest.h"
#include "tests/common/engine.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

char *lt_mkdtemp(void)
{
	char *d = strdup("/tmp/spate-logtest-XXXXXX");
	if (!d || !mkdtemp(d))
		abort();
	return d;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void lt_rmrf(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void lt_copy_tree(const char *src, const char *dst)
{
	mkdir(dst, 0777);
	DIR *d = opendir(src);
	cr_assert(d, "opendir %s", src);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char s[4096], t[4096];
		snprintf(s, sizeof(s), "%s/%s", src, de->d_name);
		snprintf(t, sizeof(t), "%s/%s", dst, de->d_name);
		struct stat st;
		cr_assert_eq(stat(s, &st), 0);
		if (S_ISDIR(st.st_mode)) {
			lt_copy_tree(s, t);
			continue;
		}
		int in = open(s, O_RDONLY), out = open(t, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		cr_assert(in >= 0 && out >= 0);
		char buf[65536];
		ssize_t n;
		while ((n = read(in, buf, sizeof(buf))) > 0)
			cr_assert_eq(write(out, buf, (size_t)n), n);
		close(in);
		close(out);
	}
	closedir(d);
}

uint64_t lt_hash_file(const char *path, uint64_t *size)
{
	int fd = open(path, O_RDONLY);
	cr_assert(fd >= 0, "open %s", path);
	XXH3_state_t *st = XXH3_createState();
	XXH3_64bits_reset(st);
	char buf[65536];
	ssize_t n;
	uint64_t total = 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		XXH3_64bits_update(st, buf, (size_t)n);
		total += (uint64_t)n;
	}
	close(fd);
	uint64_t h = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	if (size)
		*size = total;
	return h;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static uint64_t hash_rel(const char *root, const char *rel, uint64_t h)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s%s%s", root, *rel ? "/" : "", rel);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "stat %s", path);
	if (!S_ISDIR(st.st_mode)) {
		uint64_t size;
		uint64_t fh = lt_hash_file(path, &size);
		uint64_t parts[3] = {h, fh, size};
		return XXH3_64bits_withSeed(parts, sizeof(parts), XXH3_64bits(rel, strlen(rel)));
	}
	DIR *d = opendir(path);
	cr_assert(d);
	char *names[4096];
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && n < 4096)
			names[n++] = strdup(de->d_name);
	closedir(d);
	qsort(names, n, sizeof(char *), cmp_str);
	for (size_t i = 0; i < n; i++) {
		char sub[4096];
		snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", names[i]);
		h = hash_rel(root, sub, h);
		free(names[i]);
	}
	return h;
}

uint64_t lt_hash_tree(const char *dir)
{
	return hash_rel(dir, "", 0);
}

/* ---- deterministic records ------------------------------------------------------- */

#define LT_SLOTS 4
static struct {
	char key[32];
	uint8_t value[600];
	char text[400];
	spate_header_t h[3];
	char hk[3][8];
	char hv[3][16];
} slots[LT_SLOTS];

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

void lt_make(uint64_t i, int slot, spate_push_record_t *r)
{
	memset(r, 0, sizeof(*r));
	typeof(slots[0]) *s = &slots[slot % LT_SLOTS];
	if (i % 7 != 3) {
		r->key_len =
		    (size_t)snprintf(s->key, sizeof(s->key), "key-%llu", (unsigned long long)(i % 97));
		r->key = s->key;
	}
	if (i % 11 != 5) {
		size_t len = (size_t)(mix(i) % 300);
		for (size_t k = 0; k < len; k++)
			s->value[k] = (uint8_t)(mix(i * 1000 + k) & 0xff);
		r->value = s->value;
		r->value_len = len; /* len 0: an empty, non-null value */
	}
	r->header_cnt = (size_t)(i % 4);
	for (size_t k = 0; k < r->header_cnt; k++) {
		s->hk[k][0] = 'h';
		s->hk[k][1] = (char)('0' + k);
		s->hk[k][2] = 0;
		s->h[k].key = s->hk[k];
		s->h[k].key_len = strlen(s->hk[k]);
		if ((i + k) % 5 == 0) {
			s->h[k].value = NULL;
			s->h[k].value_len = 0;
		} else {
			s->h[k].value_len = (size_t)snprintf(s->hv[k], sizeof(s->hv[k]), "v%llu",
			                                     (unsigned long long)(i * 3 + k));
			s->h[k].value = s->hv[k];
		}
	}
	r->headers = r->header_cnt ? s->h : NULL;
	r->timestamp_ms = 1700000000000LL + (int64_t)i * 2 - (i % 13 == 0 ? 3 : 0);
}

static bool bytes_eq(const void *a, size_t al, const void *b, size_t bl)
{
	if (!a || !b)
		return !a && !b;
	return al == bl && (al == 0 || !memcmp(a, b, al));
}

void lt_make_text(uint64_t i, int slot, spate_push_record_t *r)
{
	lt_make(i, slot, r);
	if (!r->value)
		return;
	typeof(slots[0]) *s = &slots[slot % LT_SLOTS];
	int n = snprintf(s->text, sizeof(s->text), "{\"i\":%llu,\"text\":\"", (unsigned long long)i);
	for (uint64_t k = 0; k < i % 40; k++)
		n += snprintf(s->text + n, sizeof(s->text) - (size_t)n, "abcdefgh");
	n += snprintf(s->text + n, sizeof(s->text) - (size_t)n, "\"}");
	r->value = s->text;
	r->value_len = (size_t)n;
}

static void check_against(const lt_rec_t *got, const spate_push_record_t *r, uint64_t i, uint64_t offset);

void lt_check(const lt_rec_t *got, uint64_t i, uint64_t offset)
{
	spate_push_record_t e;
	lt_make(i, LT_SLOTS - 1, &e);
	check_against(got, &e, i, offset);
}

void lt_check_text(const lt_rec_t *got, uint64_t i, uint64_t offset)
{
	spate_push_record_t e;
	lt_make_text(i, LT_SLOTS - 1, &e);
	check_against(got, &e, i, offset);
}

static void check_against(const lt_rec_t *got, const spate_push_record_t *r, uint64_t i, uint64_t offset)
{
	const spate_push_record_t e = *r;
	cr_assert_eq(got->offset, offset, "offset %llu, expected %llu", (unsigned long long)got->offset,
	             (unsigned long long)offset);
	cr_assert_eq(got->ts, e.timestamp_ms, "record %llu: timestamp", (unsigned long long)i);
	cr_assert(bytes_eq(got->key, got->key_len, e.key, e.key_len), "record %llu: key",
	          (unsigned long long)i);
	cr_assert(bytes_eq(got->value, got->value_len, e.value, e.value_len),
	          "record %llu: value (null %d/%d)", (unsigned long long)i, !got->value, !e.value);
	cr_assert_eq(got->hcnt, e.header_cnt, "record %llu: header count", (unsigned long long)i);
	for (size_t k = 0; k < e.header_cnt; k++) {
		cr_assert(
		    bytes_eq(got->hdrs[k].key, got->hdrs[k].key_len, e.headers[k].key, e.headers[k].key_len));
		cr_assert(bytes_eq(got->hdrs[k].value, got->hdrs[k].value_len, e.headers[k].value,
		                   e.headers[k].value_len),
		          "record %llu header %zu", (unsigned long long)i, k);
	}
}

/* ---- reading back -------------------------------------------------------------------- */

static sp_chunk_t *lt_alloc(void *opaque, sp_part_t *p, uint32_t n, uint32_t hdr_cap)
{
	(void)opaque;
	sp_chunk_t *c = calloc(1, sizeof(*c) + n * sizeof(spate_record_t) + hdr_cap * sizeof(spate_header_t));
	t_require(c);
	c->part = p;
	c->n = n;
	c->recs = (spate_record_t *)(c + 1);
	c->hdrs = (spate_header_t *)(c->recs + n);
	c->hdr_cap = hdr_cap;
	for (uint32_t i = 0; i < n; i++)
		c->recs[i].version = SPATE_RECORD_VERSION;
	return c;
}

static void lt_free(void *opaque, sp_chunk_t *c)
{
	(void)opaque;
	free(c);
}

void lt_ropts(sp_log_ropts_t *o)
{
	memset(o, 0, sizeof(*o));
	o->alloc = lt_alloc;
	o->free = lt_free;
}

static void *dup_or_null(const void *p, size_t n)
{
	if (!p)
		return NULL;
	void *d = malloc(n ? n : 1);
	memcpy(d, p, n);
	return d;
}

void lt_take(sp_chunk_t **c, int n, lt_recs_t *recs)
{
	lt_take_at_most(c, n, recs, SIZE_MAX);
}

void lt_take_at_most(sp_chunk_t **c, int n, lt_recs_t *recs, size_t max)
{
	for (int i = 0; i < n; i++) {
		uint32_t hused = 0;
		for (uint32_t k = 0; k < c[i]->n && recs->n < max; k++) {
			const spate_record_t *s = &c[i]->recs[k];
			if (recs->n == recs->cap) {
				recs->cap = recs->cap ? recs->cap * 2 : 1024;
				recs->v = realloc(recs->v, recs->cap * sizeof(lt_rec_t));
			}
			lt_rec_t *d = &recs->v[recs->n++];
			t_require(s->position.w[0] == 0);
			t_require(s->position.w[1] == 0);
			d->offset = s->position.w[2];
			d->ts = s->timestamp_ms;
			d->key = dup_or_null(s->key, s->key_len);
			d->key_len = s->key_len;
			d->value = dup_or_null(s->value, s->value_len);
			d->value_len = s->value_len;
			d->hcnt = s->header_cnt;
			d->hdrs = s->header_cnt ? calloc(s->header_cnt, sizeof(spate_header_t)) : NULL;
			if (s->header_cnt)
				t_require(s->headers == &c[i]->hdrs[hused],
				          "headers live in the chunk's hdrs");
			hused += (uint32_t)s->header_cnt;
			for (size_t h = 0; h < s->header_cnt; h++) {
				d->hdrs[h].key = dup_or_null(s->headers[h].key, s->headers[h].key_len);
				d->hdrs[h].key_len = s->headers[h].key_len;
				d->hdrs[h].value = dup_or_null(s->headers[h].value, s->headers[h].value_len);
				d->hdrs[h].value_len = s->headers[h].value_len;
			}
		}
		t_require(hused <= c[i]->hdr_cap);
		/* the records point into the chunk's buffer, or the decode arena that goes with it
		 * (compressed batches): no copy was made */
		const sp_log_dec_t *dec = c[i]->release == sp_log_pool_chunk_release && c[i]->buf
		                              ? sp_log_pool_dec(c[i]->release_opaque, c[i]->buf)
		                              : NULL;
		for (uint32_t k = 0; k < c[i]->n; k++) {
			const uint8_t *v = c[i]->recs[k].value;
			if (!v || !c[i]->recs[k].value_len)
				continue;
			bool in_buf =
			    v >= (const uint8_t *)c[i]->buf && v < (const uint8_t *)c[i]->buf + c[i]->bytes;
			bool in_dec = dec && dec->mem && v >= dec->mem && v < dec->mem + dec->used;
			t_require(in_buf || in_dec, "value points into the read buffer or its decode arena");
		}
		c[i]->release(c[i], c[i]->release_opaque);
		free(c[i]);
	}
}

void lt_recs_free(lt_recs_t *recs)
{
	for (size_t i = 0; i < recs->n; i++) {
		lt_rec_t *r = &recs->v[i];
		free(r->key);
		free(r->value);
		for (size_t h = 0; h < r->hcnt; h++) {
			free((void *)r->hdrs[h].key);
			free((void *)r->hdrs[h].value);
		}
		free(r->hdrs);
	}
	free(recs->v);
	memset(recs, 0, sizeof(*recs));
}

int lt_read(const char *dir, int part, uint64_t from, const sp_log_ropts_t *o, lt_recs_t *recs, char *errstr,
            size_t size)
{
	sp_log_reader_t *rd;
	int rc = sp_log_reader_open(dir, o, &rd, errstr, size);
	if (rc)
		return rc;
	sp_part_t p;
	memset(&p, 0, sizeof(p));
	uint64_t start, next;
	rc = sp_log_reader_bounds(rd, part, &start, &next, errstr, size);
	t_require(rc == SPATE_OK, "%s", errstr);
	for (int i = 0; i < sp_log_reader_partitions(rd); i++)
		sp_log_reader_set_end(rd, i, i == part && next > from, next ? next - 1 : 0);
	sp_log_reader_bind(rd, part, &p);
	if ((rc = sp_log_reader_seek(rd, part, from, errstr, size))) {
		sp_log_reader_close(rd);
		return rc;
	}
	while (!sp_log_reader_ended(rd)) {
		struct pollfd pf = {sp_log_reader_fd(rd), POLLIN, 0};
		int ready = poll(&pf, 1, LT_WAIT_MS);
		t_require(ready > 0, "the reader made no progress in %d ms", LT_WAIT_MS);
		sp_chunk_t *out[8];
		int n = sp_log_reader_poll(rd, out, 8, UINT64_MAX, errstr, size);
		if (n < 0) {
			rc = n;
			break;
		}
		lt_take(out, n, recs);
	}
	sp_log_reader_close(rd);
	return rc;
}

void lt_wopts(sp_log_wopts_t *o, uint64_t segment_bytes, size_t batch_bytes)
{
	sp_log_wopts_default(o);
	o->segment_bytes = segment_bytes;
	o->batch_bytes = batch_bytes;
	o->flush_ms = 3600000; /* tests flush explicitly */
	o->flush_records = 0;
}

void lt_seg(char *buf, size_t size, const char *dir, int part, uint64_t base)
{
	snprintf(buf, size, "%s/%d/%020llu.log", dir, part, (unsigned long long)base);
}

size_t lt_segments(const char *dir, int part)
{
	char pdir[4096];
	snprintf(pdir, sizeof(pdir), "%s/%d", dir, part);
	sp_log_seglist_t l = {0};
	cr_assert_eq(sp_log_seglist(pdir, &l, NULL, 0), SPATE_OK);
	size_t n = l.n;
	sp_log_seglist_free(&l);
	return n;
}

sp_log_reader_t *lt_open_at(const char *dir, const sp_log_ropts_t *o, sp_part_t *p, uint64_t from)
{
	char err[1024];
	sp_log_reader_t *rd;
	cr_assert_eq(sp_log_reader_open(dir, o, &rd, err, sizeof(err)), SPATE_OK, "%s", err);
	memset(p, 0, sizeof(*p));
	sp_log_reader_bind(rd, 0, p);
	cr_assert_eq(sp_log_reader_seek(rd, 0, from, err, sizeof(err)), SPATE_OK, "%s", err);
	return rd;
}

void lt_read_until(sp_log_reader_t *rd, lt_recs_t *recs, size_t until)
{
	char err[1024];
	while (recs->n < until) {
		struct pollfd pf = {sp_log_reader_fd(rd), POLLIN, 0};
		cr_assert_gt(poll(&pf, 1, LT_WAIT_MS), 0, "no progress at %zu of %zu records", recs->n,
		             until);
		sp_chunk_t *out[8];
		int n = sp_log_reader_poll(rd, out, 8, UINT64_MAX, err, sizeof(err));
		cr_assert_geq(n, 0, "%s", err);
		lt_take(out, n, recs);
	}
	cr_assert_eq(recs->n, until);
}
