/* test_file_store.c - tests connectors/stores/file.c, the file checkpoint store.
 *
 * Round trips of many partitions (beginning, narrow and wide positions, names with the
 * bytes the format escapes); saves merge with what the store held; a save stopped at
 * each of its four steps leaves exactly the old or the new set, and a lone PATH.tmp
 * gives back exactly its complete lines; a PATH.tmp that is not a torn save (a failing
 * checksum line, a foreign file) is refused when it is all there is and ignored next to
 * a PATH; every single flipped byte and every truncation of a file is reported as
 * corrupt, naming the file and a line; the flock refuses a second open, while a
 * read-only open takes no lock, writes nothing and refuses to save; SPATE_FAULT_STORE
 * fails saves and then lets them through; reset removes one or all checkpoints and
 * renews the epoch. Values are asserted exactly.
 */
#include "connectors/stores/file.h"
#include "sp_registry.h"
#include "tests/common/util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <isa-l/crc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Partitions in the round-trip and fault tests: enough that half a file holds many
 * complete lines and many cut ones. */
#define MANY 1000

typedef struct fixture {
	char dir[64];
	char path[128];
	char tmp[160];
} fixture_t;

static void fixture_init(fixture_t *f)
{
	t_mkdtemp(f->dir, sizeof f->dir);
	snprintf(f->path, sizeof f->path, "%s/ckpt", f->dir);
	snprintf(f->tmp, sizeof f->tmp, "%s/ckpt.tmp", f->dir);
}

static void fixture_fini(fixture_t *f)
{
	t_rmrf(f->dir);
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* Open the file store at path; returns the spate_err_t, errstr in err. */
static int try_open(sp_store_t *st, const char *path, char *err, size_t size)
{
	memset(st, 0, sizeof *st);
	st->ops = &sp_store_file;
	st->arg = path;
	err[0] = '\0';
	return sp_store_file.open(st, err, size);
}

/* The same through open_readonly. */
static int try_open_ro(sp_store_t *st, const char *path, char *err, size_t size)
{
	memset(st, 0, sizeof *st);
	st->ops = &sp_store_file;
	st->arg = path;
	err[0] = '\0';
	cr_assert_not_null(sp_store_file.open_readonly, "the file store offers a read-only open");
	return sp_store_file.open_readonly(st, err, size);
}

static void must_open_ro(sp_store_t *st, const char *path)
{
	char err[512];
	int r = try_open_ro(st, path, err, sizeof err);
	cr_assert_eq(r, SPATE_OK, "open_readonly %s: %d %s", path, r, err);
}

static void must_open(sp_store_t *st, const char *path)
{
	char err[512];
	int r = try_open(st, path, err, sizeof err);
	cr_assert_eq(r, SPATE_OK, "open %s: %d %s", path, r, err);
}

static void must_save(sp_store_t *st, const sp_store_entry_t *ents, size_t n)
{
	char err[512] = "";
	int r = st->ops->save(st, ents, n, err, sizeof err);
	cr_assert_eq(r, SPATE_OK, "save: %d %s", r, err);
}

static sp_ckpt_t ck_at(uint64_t off)
{
	sp_ckpt_t c = {false, sp_pos(off)};
	return c;
}

static sp_ckpt_t ck_wide(uint64_t a, uint64_t b, uint64_t c)
{
	sp_ckpt_t k = {false, {.w = {a, b, c}}};
	return k;
}

static sp_ckpt_t ck_beginning(void)
{
	sp_ckpt_t c = {true, {.w = {0, 0, 0}}};
	return c;
}

static void assert_ckpt(sp_store_t *st, const char *name, sp_ckpt_t want)
{
	char err[512] = "";
	sp_ckpt_t got;
	memset(&got, 0xA5, sizeof got);
	int r = st->ops->load(st, name, &got, err, sizeof err);
	cr_assert_eq(r, SPATE_OK, "load %s: %d %s", name, r, err);
	cr_assert_eq(got.beginning, want.beginning, "%s: beginning %d, want %d", name, got.beginning,
	             want.beginning);
	if (!want.beginning)
		for (int w = 0; w < 3; w++)
			cr_assert_eq(got.after.w[w], want.after.w[w],
			             "%s: word %d is %" PRIu64 ", want %" PRIu64, name, w, got.after.w[w],
			             want.after.w[w]);
}

static void assert_absent(sp_store_t *st, const char *name)
{
	char err[512] = "";
	sp_ckpt_t got;
	cr_assert_eq(st->ops->load(st, name, &got, err, sizeof err), SPATE_ERR_NOT_FOUND,
	             "%s should have no checkpoint", name);
}

/* A checkpoint set: names owned here. */
typedef struct set {
	sp_store_entry_t *e;
	size_t n;
} set_t;

static void set_free(set_t *s)
{
	for (size_t i = 0; i < s->n; i++)
		free((char *)s->e[i].name);
	free(s->e);
}

static int ent_cmp(const void *a, const void *b)
{
	return strcmp(((const sp_store_entry_t *)a)->name, ((const sp_store_entry_t *)b)->name);
}

/* n partitions whose checkpoints depend on gen (so an old and a new set differ in every
 * value): beginning, narrow positions up to UINT64_MAX, and wide positions. Sorted by
 * name when sorted is set, else in a scrambled order. */
static set_t make_set(size_t n, uint64_t gen, bool sorted)
{
	set_t s = {calloc(n, sizeof *s.e), n};
	for (size_t i = 0; i < n; i++) {
		char *name;
		size_t j = sorted ? i : (i * 7919) % n; /* 7919 is prime, so this permutes */
		cr_assert(asprintf(&name, "kafka/topic-%zu/%zu", j % 13, j) > 0);
		s.e[i].name = name;
		if (j % 11 == 0)
			s.e[i].ckpt = ck_beginning();
		else if (j % 5 == 0)
			s.e[i].ckpt = ck_wide(j + gen, UINT64_MAX - j, (j * 0x9E3779B97F4A7C15ULL) ^ gen);
		else if (j % 17 == 0)
			s.e[i].ckpt = ck_at(UINT64_MAX - j - gen);
		else
			s.e[i].ckpt = ck_at(j * 1000003ULL + gen);
	}
	if (sorted)
		qsort(s.e, n, sizeof *s.e, ent_cmp);
	return s;
}

static void assert_set(sp_store_t *st, const set_t *s)
{
	for (size_t i = 0; i < s->n; i++)
		assert_ckpt(st, s->e[i].name, s->e[i].ckpt);
}

/* list() as an array of names, to check the count and order. */
typedef struct listed {
	char **names;
	size_t n;
} listed_t;

static void on_list(void *arg, const sp_store_entry_t *ent)
{
	listed_t *l = arg;
	l->names = realloc(l->names, (l->n + 1) * sizeof *l->names);
	l->names[l->n++] = strdup(ent->name);
}

static size_t list_count(sp_store_t *st, bool check_sorted)
{
	char err[512] = "";
	listed_t l = {0};
	cr_assert_eq(st->ops->list(st, on_list, &l, err, sizeof err), SPATE_OK, "list: %s", err);
	for (size_t i = 1; check_sorted && i < l.n; i++)
		cr_assert_lt(strcmp(l.names[i - 1], l.names[i]), 0, "list out of order at %zu", i);
	for (size_t i = 0; i < l.n; i++)
		free(l.names[i]);
	free(l.names);
	return l.n;
}

static void write_bytes(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

/* ---- round trips and merging ----------------------------------------------------- */

Test(file_store, round_trip_many_partitions)
{
	fixture_t f;
	fixture_init(&f);
	set_t s = make_set(MANY, 0, false);
	/* the extremes, and names holding every byte the format escapes */
	const sp_store_entry_t extra[] = {
	    {.name = "gen/x/0", .ckpt = {false, {.w = {0, 0, 0}}}},
	    {.name = "gen/x/1", .ckpt = {false, {.w = {0, 0, UINT64_MAX}}}},
	    {.name = "kinesis/s/shardId-000", .ckpt = {false, {.w = {UINT64_MAX, UINT64_MAX, UINT64_MAX}}}},
	    {.name = "kinesis/s/shardId-001", .ckpt = {false, {.w = {1, 0, 0}}}},
	    {.name = "log/with\ttab\nnewline\r/3", .ckpt = {false, {.w = {0, 0, 7}}}},
	    {.name = "#log/100%/#2", .ckpt = {true, {.w = {0, 0, 0}}}},
	    {.name = "log/space and \x7f\x01 and caf\xc3\xa9/4", .ckpt = {false, {.w = {0, 0, 42}}}},
	};
	sp_store_t st;
	must_open(&st, f.path);
	cr_assert_eq(list_count(&st, true), 0);
	must_save(&st, s.e, s.n);
	must_save(&st, extra, sizeof extra / sizeof extra[0]);
	assert_set(&st, &s); /* memory */
	st.ops->close(&st);

	must_open(&st, f.path); /* the file */
	assert_set(&st, &s);
	for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
		assert_ckpt(&st, extra[i].name, extra[i].ckpt);
	assert_absent(&st, "kafka/topic-0/1000000");
	assert_absent(&st, "log/with");
	cr_assert_eq(list_count(&st, true), MANY + sizeof extra / sizeof extra[0]);
	st.ops->close(&st);
	cr_assert(!exists(f.tmp), "a completed save leaves no tmp file");
	set_free(&s);
	fixture_fini(&f);
}

Test(file_store, save_merges_with_earlier_entries)
{
	fixture_t f;
	fixture_init(&f);
	sp_store_t st;
	must_open(&st, f.path);
	const sp_store_entry_t first[] = {
	    {.name = "a/t/0", .ckpt = ck_at(10)}, {.name = "a/t/1", .ckpt = ck_at(20)}, {.name = "a/t/2", .ckpt = ck_beginning()}};
	const sp_store_entry_t second[] = {{.name = "a/t/1", .ckpt = ck_at(25)},
	                                   {.name = "a/t/3", .ckpt = ck_at(5)},
	                                   {.name = "a/t/3", .ckpt = ck_at(6)}, /* the later of two wins */
	                                   {.name = "a/t/2", .ckpt = ck_at(1)}};
	must_save(&st, first, 3);
	must_save(&st, second, 4);
	must_save(&st, NULL, 0); /* an empty save keeps everything */
	for (int pass = 0; pass < 2; pass++) {
		assert_ckpt(&st, "a/t/0", ck_at(10));
		assert_ckpt(&st, "a/t/1", ck_at(25));
		assert_ckpt(&st, "a/t/2", ck_at(1));
		assert_ckpt(&st, "a/t/3", ck_at(6));
		cr_assert_eq(list_count(&st, true), 4);
		st.ops->close(&st);
		must_open(&st, f.path);
	}
	st.ops->close(&st);
	fixture_fini(&f);
}

Test(file_store, missing_file_is_an_empty_store_until_saved)
{
	fixture_t f;
	fixture_init(&f);
	sp_store_t st;
	must_open(&st, f.path);
	assert_absent(&st, "a/t/0");
	cr_assert_eq(list_count(&st, false), 0);
	st.ops->close(&st);
	cr_assert(!exists(f.path), "open alone writes no checkpoint file");
	fixture_fini(&f);
}

Test(file_store, opens_through_the_registry_uri)
{
	fixture_t f;
	fixture_init(&f);
	char uri[200], err[512] = "";
	snprintf(uri, sizeof uri, "file:%s", f.path);
	sp_store_t st;
	cr_assert_eq(sp_store_open_uri(uri, &st, err, sizeof err), SPATE_OK, "%s", err);
	cr_assert_eq(st.ops, &sp_store_file);
	const sp_store_entry_t e = {.name = "p/t/0", .ckpt = ck_at(3)};
	must_save(&st, &e, 1);
	st.ops->close(&st);
	must_open(&st, f.path);
	assert_ckpt(&st, "p/t/0", ck_at(3));
	st.ops->close(&st);

	cr_assert_eq(try_open(&st, "", err, sizeof err), SPATE_ERR_INVALID);
	cr_assert(strstr(err, "file:PATH"), "%s", err);
	fixture_fini(&f);
}

/* The format docs/stores.md describes, written by hand: it loads. */
static void write_v1(const char *path, unsigned version, const char *body)
{
	char *text;
	cr_assert(asprintf(&text, "spate-checkpoints %u epoch=00000000deadbeef created=1700000000000\n%s",
	                   version, body) > 0);
	unsigned crc = crc32_iscsi((unsigned char *)text, (int)strlen(text), 0xFFFFFFFF) ^ 0xFFFFFFFF;
	size_t n = 0;
	for (const char *p = body; *p; p++)
		n += *p == '\n';
	char *full;
	cr_assert(asprintf(&full, "%s#end entries=%zu crc32c=%08x\n", text, n, crc) > 0);
	write_bytes(path, full, strlen(full));
	free(text);
	free(full);
}

Test(file_store, reads_the_documented_format)
{
	fixture_t f;
	fixture_init(&f);
	write_v1(f.path, 1,
	         "kafka/orders/0\t12345\nkafka/orders/1\tbeginning\n"
	         "kinesis/s/sh%251\t1:0000000000000002:0000000000000003\n");
	sp_store_t st;
	must_open(&st, f.path);
	assert_ckpt(&st, "kafka/orders/0", ck_at(12345));
	assert_ckpt(&st, "kafka/orders/1", ck_beginning());
	assert_ckpt(&st, "kinesis/s/sh%1", ck_wide(1, 2, 3));
	cr_assert_eq(sp_store_file_epoch(&st), 0xdeadbeefULL);
	cr_assert_eq(list_count(&st, true), 3);
	st.ops->close(&st);
	fixture_fini(&f);
}

Test(file_store, newer_format_version_is_unsupported)
{
	fixture_t f;
	fixture_init(&f);
	write_v1(f.path, 2, "kafka/orders/0\t12345\n");
	sp_store_t st;
	char err[512];
	cr_assert_eq(try_open(&st, f.path, err, sizeof err), SPATE_ERR_UNSUPPORTED, "%s", err);
	cr_assert(strstr(err, f.path) && strstr(err, "line 1:") && strstr(err, "version 2"), "%s", err);
	fixture_fini(&f);
}

/* ---- crashes between the steps of a save ------------------------------------------ */

/* Save `old` completely, then stop a save of `new` after step; reopen and return the
 * store as a restarted process sees it. */
static void crash_during_save(fixture_t *f, const set_t *old, const set_t *upd, int step, sp_store_t *st)
{
	char err[512] = "";
	must_open(st, f->path);
	if (old)
		must_save(st, old->e, old->n);
	int r = sp_store_file_save_fault(st, upd->e, upd->n, step, err, sizeof err);
	cr_assert_eq(r, SPATE_ERR_STORE, "step %d: %d %s", step, r, err);
	cr_assert(strstr(err, "fault injected after step"), "%s", err);
	st->ops->close(st); /* the process dies: nothing more is written */
	must_open(st, f->path);
}

/* old: MANY partitions; new: every one of them moved on, and MANY/2 more. */
static void fault_with_old_file(int step, bool expect_new)
{
	fixture_t f;
	fixture_init(&f);
	set_t old = make_set(MANY, 0, false), upd = make_set(MANY + MANY / 2, 77, false);
	sp_store_t st;
	crash_during_save(&f, &old, &upd, step, &st);
	if (expect_new) {
		assert_set(&st, &upd);
		cr_assert_eq(list_count(&st, true), MANY + MANY / 2);
	} else {
		assert_set(&st, &old);
		cr_assert_eq(list_count(&st, true), MANY);
		for (size_t j = MANY; j < MANY + MANY / 2; j++) {
			char name[64];
			snprintf(name, sizeof name, "kafka/topic-%zu/%zu", j % 13, j);
			assert_absent(&st, name);
		}
	}
	/* and the store works on from there */
	const sp_store_entry_t next = {.name = "kafka/topic-0/0", .ckpt = ck_at(999)};
	must_save(&st, &next, 1);
	st.ops->close(&st);
	must_open(&st, f.path);
	assert_ckpt(&st, "kafka/topic-0/0", ck_at(999));
	cr_assert_eq(list_count(&st, true), expect_new ? MANY + MANY / 2 : MANY);
	st.ops->close(&st);
	cr_assert(!exists(f.tmp));
	set_free(&old);
	set_free(&upd);
	fixture_fini(&f);
}

Test(file_store_fault, step1_partial_tmp_keeps_old_set)
{
	fault_with_old_file(SP_FILE_FAULT_PARTIAL_WRITE, false);
}

Test(file_store_fault, step2_unsynced_tmp_keeps_old_set)
{
	fault_with_old_file(SP_FILE_FAULT_BEFORE_FSYNC, false);
}

Test(file_store_fault, step3_before_rename_keeps_old_set)
{
	fault_with_old_file(SP_FILE_FAULT_BEFORE_RENAME, false);
}

Test(file_store_fault, step4_after_rename_has_new_set)
{
	fault_with_old_file(SP_FILE_FAULT_BEFORE_DIRSYNC, true);
}

/* No PATH yet, so the tmp file is all there is: what it holds completely is loaded. */
Test(file_store_fault, first_save_torn_loads_complete_lines_of_tmp)
{
	fixture_t f;
	fixture_init(&f);
	set_t upd = make_set(MANY, 5, true);
	sp_store_t st;
	crash_during_save(&f, NULL, &upd, SP_FILE_FAULT_PARTIAL_WRITE, &st);
	cr_assert(!exists(f.path) && exists(f.tmp));
	/* the complete lines of the torn tmp: every newline ends one; the first is the header */
	size_t len, lines = 0;
	char *buf = t_read_file(f.tmp, &len);
	cr_assert(buf);
	for (size_t i = 0; i < len; i++)
		lines += buf[i] == '\n';
	free(buf);
	size_t k = lines - 1;
	cr_assert(k > MANY / 4 && k < MANY, "half a file holds %zu of %d entries", k, MANY);
	for (size_t i = 0; i < upd.n; i++) {
		if (i < k)
			assert_ckpt(&st, upd.e[i].name, upd.e[i].ckpt);
		else
			assert_absent(&st, upd.e[i].name);
	}
	cr_assert_eq(list_count(&st, true), k);
	/* the next save writes PATH, and the store is whole again */
	must_save(&st, upd.e, upd.n);
	st.ops->close(&st);
	cr_assert(exists(f.path) && !exists(f.tmp));
	must_open(&st, f.path);
	assert_set(&st, &upd);
	st.ops->close(&st);
	set_free(&upd);
	fixture_fini(&f);
}

static void first_save_complete_tmp(int step)
{
	fixture_t f;
	fixture_init(&f);
	set_t upd = make_set(MANY, 9, false);
	sp_store_t st;
	crash_during_save(&f, NULL, &upd, step, &st);
	assert_set(&st, &upd);
	cr_assert_eq(list_count(&st, true), MANY);
	st.ops->close(&st);
	set_free(&upd);
	fixture_fini(&f);
}

Test(file_store_fault, first_save_unsynced_tmp_loads_it_whole)
{
	first_save_complete_tmp(SP_FILE_FAULT_BEFORE_FSYNC);
}

Test(file_store_fault, first_save_before_rename_loads_tmp_whole)
{
	first_save_complete_tmp(SP_FILE_FAULT_BEFORE_RENAME);
}

Test(file_store_fault, first_save_after_rename_has_new_set)
{
	first_save_complete_tmp(SP_FILE_FAULT_BEFORE_DIRSYNC);
}

Test(file_store_fault, bad_step_is_invalid)
{
	fixture_t f;
	fixture_init(&f);
	sp_store_t st;
	char err[512];
	must_open(&st, f.path);
	cr_assert_eq(sp_store_file_save_fault(&st, NULL, 0, 5, err, sizeof err), SPATE_ERR_INVALID);
	st.ops->close(&st);
	fixture_fini(&f);
}

/* ---- corruption -------------------------------------------------------------------- */

/* Write a small store, return its bytes. */
static char *small_file(fixture_t *f, size_t *len)
{
	sp_store_t st;
	const sp_store_entry_t e[] = {{.name = "kafka/o/0", .ckpt = ck_at(12)},
	                              {.name = "kafka/o/1", .ckpt = ck_beginning()},
	                              {.name = "kinesis/s/a", .ckpt = ck_wide(9, 8, 7)},
	                              {.name = "log/l/0", .ckpt = ck_at(UINT64_MAX)}};
	must_open(&st, f->path);
	must_save(&st, e, 4);
	st.ops->close(&st);
	char *buf = t_read_file(f->path, len);
	cr_assert(buf && *len > 0);
	return buf;
}

static void assert_corrupt(const char *path, const char *what)
{
	sp_store_t st;
	char err[512];
	int r = try_open(&st, path, err, sizeof err);
	if (r == SPATE_OK)
		st.ops->close(&st);
	cr_assert_eq(r, SPATE_ERR_CORRUPT, "%s: open returned %d (%s)", what, r, err);
	char want[200];
	snprintf(want, sizeof want, "checkpoint file %s line ", path);
	cr_assert(strstr(err, want), "%s: message does not name file and line: %s", what, err);
}

Test(file_store_corrupt, every_flipped_byte_is_detected)
{
	fixture_t f;
	fixture_init(&f);
	size_t len;
	char *good = small_file(&f, &len);
	char *bad = malloc(len);
	static const unsigned char flips[] = {0x01, 0x20, 0x80};
	for (size_t i = 0; i < len; i++) {
		for (size_t k = 0; k < sizeof flips; k++) {
			char what[64];
			memcpy(bad, good, len);
			bad[i] = (char)(bad[i] ^ flips[k]);
			write_bytes(f.path, bad, len);
			snprintf(what, sizeof what, "byte %zu ^ 0x%02x", i, flips[k]);
			assert_corrupt(f.path, what);
		}
	}
	free(bad);
	free(good);
	fixture_fini(&f);
}

Test(file_store_corrupt, every_truncation_is_detected)
{
	fixture_t f;
	fixture_init(&f);
	size_t len;
	char *good = small_file(&f, &len);
	for (size_t cut = 0; cut < len; cut++) {
		char what[64];
		write_bytes(f.path, good, cut);
		snprintf(what, sizeof what, "truncated to %zu of %zu bytes", cut, len);
		assert_corrupt(f.path, what);
	}
	free(good);
	fixture_fini(&f);
}

Test(file_store_corrupt, messages_name_the_line)
{
	fixture_t f;
	fixture_init(&f);
	size_t len;
	char *good = small_file(&f, &len);
	char *bad = malloc(len + 16), want[200], err[512];
	sp_store_t st;

	/* a digit changed in an entry: the line still parses, the checksum (line 6) fails */
	char *p = strstr(good, "kafka/o/0\t12\n");
	cr_assert(p);
	memcpy(bad, good, len);
	bad[p - good + 11] = '3';
	write_bytes(f.path, bad, len);
	cr_assert_eq(try_open(&st, f.path, err, sizeof err), SPATE_ERR_CORRUPT);
	snprintf(want, sizeof want, "checkpoint file %s line 6: checksum mismatch", f.path);
	cr_assert(strstr(err, want), "%s", err);

	/* the tab of line 3 gone: that line is named */
	p = strstr(good, "kafka/o/1\tbeginning\n");
	cr_assert(p);
	memcpy(bad, good, len);
	bad[p - good + 9] = ' ';
	write_bytes(f.path, bad, len);
	cr_assert_eq(try_open(&st, f.path, err, sizeof err), SPATE_ERR_CORRUPT);
	snprintf(want, sizeof want, "checkpoint file %s line 3: no tab", f.path);
	cr_assert(strstr(err, want), "%s", err);

	/* cut after line 2: the checksum line (line 3 now) is missing */
	p = strstr(good, "kafka/o/1");
	write_bytes(f.path, good, (size_t)(p - good));
	cr_assert_eq(try_open(&st, f.path, err, sizeof err), SPATE_ERR_CORRUPT);
	snprintf(want, sizeof want, "checkpoint file %s line 3: truncated", f.path);
	cr_assert(strstr(err, want), "%s", err);

	/* a line appended after the checksum line */
	memcpy(bad, good, len);
	memcpy(bad + len, "x\t1\n", 4);
	write_bytes(f.path, bad, len + 4);
	cr_assert_eq(try_open(&st, f.path, err, sizeof err), SPATE_ERR_CORRUPT);
	snprintf(want, sizeof want, "checkpoint file %s line 7: data after the checksum line", f.path);
	cr_assert(strstr(err, want), "%s", err);

	free(bad);
	free(good);
	fixture_fini(&f);
}

Test(file_store_corrupt, corrupt_file_is_not_overwritten)
{
	fixture_t f;
	fixture_init(&f);
	write_bytes(f.path, "garbage\n", 8);
	assert_corrupt(f.path, "garbage");
	size_t len;
	char *buf = t_read_file(f.path, &len);
	cr_assert(buf && len == 8 && memcmp(buf, "garbage\n", 8) == 0, "the file was changed");
	free(buf);
	fixture_fini(&f);
}

/* ---- the lock ------------------------------------------------------------------------ */

Test(file_store_lock, second_open_is_refused)
{
	fixture_t f;
	fixture_init(&f);
	sp_store_t a, b;
	char err[512];
	must_open(&a, f.path);
	cr_assert_eq(try_open(&b, f.path, err, sizeof err), SPATE_ERR_BUSY, "%s", err);
	cr_assert(strstr(err, f.path), "%s", err);

	/* and from another process */
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		sp_store_t c;
		char e2[512];
		_exit(try_open(&c, f.path, e2, sizeof e2) == SPATE_ERR_BUSY ? 0 : 1);
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the other process got the lock");

	a.ops->close(&a);
	must_open(&b, f.path); /* free again once closed */
	b.ops->close(&b);
	fixture_fini(&f);
}

/* ---- SPATE_FAULT_STORE ------------------------------------------------------------------ */

Test(file_store_env, fail_n_fails_then_recovers)
{
	fixture_t f;
	fixture_init(&f);
	sp_store_t st;
	char err[512];
	const sp_store_entry_t v1 = {.name = "p/t/0", .ckpt = ck_at(1)}, v2 = {.name = "p/t/0", .ckpt = ck_at(2)}, v3 = {.name = "p/t/0", .ckpt = ck_at(3)},
	                       other = {.name = "p/t/1", .ckpt = ck_at(9)};
	must_open(&st, f.path);
	must_save(&st, &v1, 1);
	st.ops->close(&st);

	setenv("SPATE_FAULT_STORE", "fail:2", 1);
	must_open(&st, f.path);
	unsetenv("SPATE_FAULT_STORE"); /* read at open: no effect from here on */
	cr_assert_eq(st.ops->save(&st, &v2, 1, err, sizeof err), SPATE_ERR_STORE);
	cr_assert(strstr(err, "SPATE_FAULT_STORE") && strstr(err, f.path), "%s", err);
	cr_assert_eq(st.ops->save(&st, &other, 1, err, sizeof err), SPATE_ERR_STORE);
	assert_ckpt(&st, "p/t/0", ck_at(1)); /* a failed save changes nothing */
	assert_absent(&st, "p/t/1");
	must_save(&st, &v3, 1); /* the third save goes through */
	st.ops->close(&st);

	must_open(&st, f.path);
	assert_ckpt(&st, "p/t/0", ck_at(3));
	assert_absent(&st, "p/t/1");
	must_save(&st, &other, 1);
	assert_ckpt(&st, "p/t/1", ck_at(9));
	st.ops->close(&st);
	fixture_fini(&f);
}

Test(file_store_env, fail_fails_every_save_of_that_instance_only)
{
	fixture_t f;
	fixture_init(&f);
	char other_path[200], err[512];
	snprintf(other_path, sizeof other_path, "%s/other", f.dir);
	const sp_store_entry_t v = {.name = "p/t/0", .ckpt = ck_at(5)};
	sp_store_t ok, failing;
	must_open(&ok, other_path); /* opened before the switch: unaffected */
	setenv("SPATE_FAULT_STORE", "fail", 1);
	must_open(&failing, f.path);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(failing.ops->save(&failing, &v, 1, err, sizeof err), SPATE_ERR_STORE);
	must_save(&ok, &v, 1);
	failing.ops->close(&failing);
	ok.ops->close(&ok);
	cr_assert(!exists(f.path), "no save of the failing store reached the disk");
	unsetenv("SPATE_FAULT_STORE");
	fixture_fini(&f);
}

Test(file_store_env, bad_value_is_refused_at_open)
{
	fixture_t f;
	fixture_init(&f);
	sp_store_t st;
	char err[512];
	setenv("SPATE_FAULT_STORE", "fail:x", 1);
	cr_assert_eq(try_open(&st, f.path, err, sizeof err), SPATE_ERR_INVALID);
	cr_assert(strstr(err, "SPATE_FAULT_STORE=fail:x"), "%s", err);
	unsetenv("SPATE_FAULT_STORE");
	fixture_fini(&f);
}

/* ---- reset and the epoch ------------------------------------------------------------ */

Test(file_store, reset_one_and_all)
{
	fixture_t f;
	fixture_init(&f);
	sp_store_t st;
	char err[512];
	const sp_store_entry_t e[] = {{.name = "p/t/0", .ckpt = ck_at(1)}, {.name = "p/t/1", .ckpt = ck_at(2)}, {.name = "p/t/2", .ckpt = ck_at(3)}};
	must_open(&st, f.path);
	must_save(&st, e, 3);
	uint64_t epoch = sp_store_file_epoch(&st);
	cr_assert_neq(epoch, 0);
	st.ops->close(&st);

	must_open(&st, f.path);
	cr_assert_eq(sp_store_file_epoch(&st), epoch, "the epoch survives a reopen");
	cr_assert_eq(st.ops->reset(&st, "p/t/1", err, sizeof err), SPATE_OK, "%s", err);
	cr_assert_eq(st.ops->reset(&st, "p/t/1", err, sizeof err), SPATE_ERR_NOT_FOUND);
	cr_assert(strstr(err, "p/t/1"), "%s", err);
	st.ops->close(&st);

	must_open(&st, f.path);
	assert_ckpt(&st, "p/t/0", ck_at(1));
	assert_absent(&st, "p/t/1");
	assert_ckpt(&st, "p/t/2", ck_at(3));
	cr_assert_eq(sp_store_file_epoch(&st), epoch, "a save or a reset of one keeps the epoch");
	cr_assert_eq(st.ops->reset(&st, NULL, err, sizeof err), SPATE_OK, "%s", err);
	uint64_t epoch2 = sp_store_file_epoch(&st);
	cr_assert_neq(epoch2, epoch, "reset of all renews the epoch");
	st.ops->close(&st);

	must_open(&st, f.path);
	cr_assert_eq(list_count(&st, false), 0);
	cr_assert_eq(sp_store_file_epoch(&st), epoch2);
	st.ops->close(&st);
	cr_assert(exists(f.path), "reset writes an empty store rather than deleting the file");
	fixture_fini(&f);
}

/* ---- PATH.tmp that is no torn save -------------------------------------------------- */

/* A whole checkpoint file at path with the digit of its first entry changed after the
 * checksum was computed: it parses line by line, only its checksum line fails. */
static void write_bad_crc(const char *path)
{
	write_v1(path, 1, "kafka/orders/0\t12345\nkafka/orders/1\tbeginning\n");
	size_t len;
	char *buf = t_read_file(path, &len);
	char *p = strstr(buf, "\t12345\n");
	cr_assert(p);
	p[1] = '9'; /* 92345: a checkpoint far ahead of what was DONE */
	write_bytes(path, buf, len);
	free(buf);
}

/* No PATH, and PATH.tmp is complete but fails its checksum: that is damage, not a save a
 * crash cut short, and using it could skip records. Both opens refuse it, naming it and
 * its checksum line, and leave it as it is. */
Test(file_store_tmp, bad_checksum_tmp_alone_is_refused)
{
	fixture_t f;
	fixture_init(&f);
	write_bad_crc(f.tmp);
	size_t len0;
	char *before = t_read_file(f.tmp, &len0);
	char want[256], err[512];
	snprintf(want, sizeof want, "checkpoint file %s line 4: checksum mismatch", f.tmp);
	sp_store_t st;
	int r = try_open(&st, f.path, err, sizeof err);
	if (r == SPATE_OK)
		st.ops->close(&st);
	cr_assert_eq(r, SPATE_ERR_CORRUPT, "open returned %d: %s", r, err);
	cr_assert(strstr(err, want) && strstr(err, "nothing of it is loaded"), "%s", err);
	r = try_open_ro(&st, f.path, err, sizeof err);
	if (r == SPATE_OK)
		st.ops->close(&st);
	cr_assert_eq(r, SPATE_ERR_CORRUPT, "open_readonly returned %d: %s", r, err);
	cr_assert(strstr(err, want), "%s", err);
	size_t len1;
	char *after = t_read_file(f.tmp, &len1);
	cr_assert(after && len1 == len0 && !memcmp(before, after, len0), "PATH.tmp was changed");
	cr_assert(!exists(f.path));
	free(before);
	free(after);
	fixture_fini(&f);
}

/* No PATH, and PATH.tmp is some other file: refused at line 1, not taken for an empty
 * store (which would restart every partition) nor overwritten. */
Test(file_store_tmp, foreign_tmp_alone_is_refused)
{
	fixture_t f;
	fixture_init(&f);
	write_bytes(f.tmp, "hello\nworld\n", 12);
	char want[256], err[512];
	snprintf(want, sizeof want, "checkpoint file %s line 1: not a spate checkpoint file", f.tmp);
	sp_store_t st;
	int r = try_open(&st, f.path, err, sizeof err);
	if (r == SPATE_OK)
		st.ops->close(&st);
	cr_assert_eq(r, SPATE_ERR_CORRUPT, "open returned %d: %s", r, err);
	cr_assert(strstr(err, want), "%s", err);
	size_t len;
	char *buf = t_read_file(f.tmp, &len);
	cr_assert(buf && len == 12 && !memcmp(buf, "hello\nworld\n", 12), "PATH.tmp was changed");
	free(buf);
	fixture_fini(&f);
}

/* Next to a good PATH, a PATH.tmp with a failing checksum is ignored by both opens. */
Test(file_store_tmp, bad_checksum_tmp_next_to_good_path_is_ignored)
{
	fixture_t f;
	fixture_init(&f);
	const sp_store_entry_t e[] = {{.name = "kafka/orders/0", .ckpt = ck_at(7)}, {.name = "kafka/orders/2", .ckpt = ck_beginning()}};
	sp_store_t st;
	must_open(&st, f.path);
	must_save(&st, e, 2);
	st.ops->close(&st);
	write_bad_crc(f.tmp);
	for (int ro = 0; ro < 2; ro++) {
		if (ro)
			must_open_ro(&st, f.path);
		else
			must_open(&st, f.path);
		assert_ckpt(&st, "kafka/orders/0", ck_at(7));
		assert_ckpt(&st, "kafka/orders/2", ck_beginning());
		assert_absent(&st, "kafka/orders/1");
		cr_assert_eq(list_count(&st, true), 2);
		st.ops->close(&st);
	}
	fixture_fini(&f);
}

/* ---- the read-only open ------------------------------------------------------------- */

/* While a locked instance (a running pipeline) holds the store, a read-only open reads
 * the last saved set without waiting, sees later saves when opened again, and can
 * neither save nor reset. */
Test(file_store_readonly, reads_a_locked_store_and_cannot_write)
{
	fixture_t f;
	fixture_init(&f);
	set_t s1 = make_set(MANY, 1, false), s2 = make_set(MANY, 2, false);
	sp_store_t owner, ro;
	char err[512];
	must_open(&owner, f.path);
	must_save(&owner, s1.e, s1.n);
	must_open_ro(&ro, f.path);
	assert_set(&ro, &s1);
	cr_assert_eq(list_count(&ro, true), MANY);
	must_save(&owner, s2.e, s2.n);
	assert_set(&ro, &s1); /* a snapshot of one complete state */
	ro.ops->close(&ro);
	must_open_ro(&ro, f.path);
	assert_set(&ro, &s2);
	cr_assert_eq(sp_store_file_epoch(&ro), sp_store_file_epoch(&owner));

	const sp_store_entry_t e = {.name = "kafka/topic-0/0", .ckpt = ck_at(1)};
	cr_assert_eq(ro.ops->save(&ro, &e, 1, err, sizeof err), SPATE_ERR_INVALID);
	cr_assert(strstr(err, f.path) && strstr(err, "read-only"), "%s", err);
	cr_assert_eq(ro.ops->reset(&ro, NULL, err, sizeof err), SPATE_ERR_INVALID);
	cr_assert(strstr(err, f.path) && strstr(err, "read-only"), "%s", err);
	ro.ops->close(&ro);
	owner.ops->close(&owner);

	must_open(&owner, f.path); /* nothing was changed by the read-only instance */
	assert_set(&owner, &s2);
	owner.ops->close(&owner);
	set_free(&s1);
	set_free(&s2);
	fixture_fini(&f);
}

/* A read-only look at a store that has no file yet is empty and creates nothing, not
 * even the lock file; in a directory that does not exist it fails, naming it. */
Test(file_store_readonly, writes_nothing)
{
	fixture_t f;
	fixture_init(&f);
	char lock[200], missing[200], err[512];
	snprintf(lock, sizeof lock, "%s.lock", f.path);
	snprintf(missing, sizeof missing, "%s/nodir/ckpt", f.dir);
	sp_store_t st;
	must_open_ro(&st, f.path);
	cr_assert_eq(list_count(&st, false), 0);
	cr_assert_eq(sp_store_file_epoch(&st), 0);
	st.ops->close(&st);
	cr_assert(!exists(f.path) && !exists(f.tmp) && !exists(lock), "a read-only open created a file");
	cr_assert_eq(try_open_ro(&st, missing, err, sizeof err), SPATE_ERR_IO, "%s", err);
	cr_assert(strstr(err, missing) && strstr(err, "directory"), "%s", err);
	fixture_fini(&f);
}

/* With no PATH, a read-only open uses PATH.tmp as the locked open does: whole, or the
 * complete lines of a torn one. */
Test(file_store_readonly, reads_tmp_like_open)
{
	fixture_t f;
	fixture_init(&f);
	set_t upd = make_set(MANY, 5, true);
	sp_store_t st;
	char err[512];
	must_open(&st, f.path);
	cr_assert_eq(
	    sp_store_file_save_fault(&st, upd.e, upd.n, SP_FILE_FAULT_PARTIAL_WRITE, err, sizeof err),
	    SPATE_ERR_STORE, "%s", err);
	st.ops->close(&st);
	cr_assert(!exists(f.path) && exists(f.tmp));
	must_open(&st, f.path);
	size_t k = list_count(&st, true);
	st.ops->close(&st);
	cr_assert(k > 0 && k < MANY, "the torn tmp holds %zu of %d entries", k, MANY);
	must_open_ro(&st, f.path);
	cr_assert_eq(list_count(&st, true), k);
	for (size_t i = 0; i < upd.n; i++) {
		if (i < k)
			assert_ckpt(&st, upd.e[i].name, upd.e[i].ckpt);
		else
			assert_absent(&st, upd.e[i].name);
	}
	st.ops->close(&st);

	must_open(&st, f.path);
	cr_assert_eq(
	    sp_store_file_save_fault(&st, upd.e, upd.n, SP_FILE_FAULT_BEFORE_RENAME, err, sizeof err),
	    SPATE_ERR_STORE, "%s", err);
	st.ops->close(&st);
	must_open_ro(&st, f.path);
	assert_set(&st, &upd);
	cr_assert_eq(list_count(&st, true), MANY);
	st.ops->close(&st);
	set_free(&upd);
	fixture_fini(&f);
}

/* ---- a file removed or replaced while the store is open ----------------------------- */

/* The store's file is removed while the store holds its lock (a person, a cleanup job):
 * the next save is SPATE_ERR_STORE_LOST naming the file, and writes nothing (it would
 * otherwise put back a file nobody can tell from the lost one). */
Test(file_store_lost, a_file_removed_while_open_is_lost)
{
	fixture_t f;
	fixture_init(&f);
	sp_store_t st;
	must_open(&st, f.path);
	sp_store_entry_t e = {.name = "log/orders/0", .ckpt = ck_at(10)};
	must_save(&st, &e, 1);
	e.ckpt = ck_at(20);
	must_save(&st, &e, 1); /* its own saves never look like a loss */
	cr_assert_eq(unlink(f.path), 0);
	char err[1024] = "", want[256];
	e.ckpt = ck_at(30);
	int r = st.ops->save(&st, &e, 1, err, sizeof err);
	cr_assert_eq(r, SPATE_ERR_STORE_LOST, "save returned %d: %s", r, err);
	snprintf(want, sizeof want, "file store %s lost its data: the file is gone", f.path);
	cr_assert(strstr(err, want), "want \"%s\" in: %s", want, err);
	cr_assert(!exists(f.path) && !exists(f.tmp), "the lost file was written again");
	st.ops->close(&st);
	fixture_fini(&f);
}

/* Another store's file (another epoch) is moved over the store's file: the next save is
 * SPATE_ERR_STORE_LOST naming both epochs' holder, and the file is left as it is. A file
 * that appears where there was none (the store never saved) is refused the same way. */
Test(file_store_lost, a_file_replaced_under_another_epoch_is_lost)
{
	fixture_t f, g;
	fixture_init(&f);
	fixture_init(&g);
	sp_store_t st, other;
	must_open(&st, f.path);
	sp_store_entry_t e = {.name = "log/orders/0", .ckpt = ck_at(10)};
	must_save(&st, &e, 1);
	must_open(&other, g.path);
	uint64_t mine = sp_store_file_epoch(&st), theirs = sp_store_file_epoch(&other);
	cr_assert_neq(mine, theirs);
	e.ckpt = ck_at(5);
	must_save(&other, &e, 1);
	other.ops->close(&other);
	size_t len0;
	char *replacement = t_read_file(g.path, &len0);
	cr_assert_eq(rename(g.path, f.path), 0);
	char err[1024] = "", want[256];
	e.ckpt = ck_at(30);
	int r = st.ops->save(&st, &e, 1, err, sizeof err);
	cr_assert_eq(r, SPATE_ERR_STORE_LOST, "save returned %d: %s", r, err);
	snprintf(want, sizeof want,
	         "file store %s lost its data: it was replaced by a file with epoch %016" PRIx64, f.path,
	         theirs);
	cr_assert(strstr(err, want), "want \"%s\" in: %s", want, err);
	snprintf(want, sizeof want, "(epoch %016" PRIx64 " when this process opened it)", mine);
	cr_assert(strstr(err, want), "want \"%s\" in: %s", want, err);
	size_t len1;
	char *now = t_read_file(f.path, &len1);
	cr_assert(now && len1 == len0 && !memcmp(now, replacement, len0), "the replacement was overwritten");
	free(now);
	st.ops->close(&st);
	/* a store that never saved: a file that appears at its path was not written by it */
	cr_assert_eq(unlink(f.path), 0);
	must_open(&st, f.path);
	write_bytes(f.path, replacement, len0);
	r = st.ops->save(&st, &e, 1, err, sizeof err);
	cr_assert_eq(r, SPATE_ERR_STORE_LOST, "save returned %d: %s", r, err);
	cr_assert(strstr(err, "a file this process did not write appeared with epoch"), "%s", err);
	st.ops->close(&st);
	/* reopened, the store takes the file it finds as its own and saves to it */
	must_open(&st, f.path);
	must_save(&st, &e, 1);
	assert_ckpt(&st, "log/orders/0", ck_at(30));
	cr_assert_eq(sp_store_file_epoch(&st), theirs);
	st.ops->close(&st);
	free(replacement);
	fixture_fini(&f);
	fixture_fini(&g);
}

/* A reset of every checkpoint renews the epoch: the store's own reset is no loss, and
 * neither is a first save after a lone PATH.tmp was loaded (PATH did not exist yet). */
Test(file_store_lost, its_own_reset_and_first_save_are_no_loss)
{
	fixture_t f;
	fixture_init(&f);
	sp_store_t st;
	must_open(&st, f.path);
	sp_store_entry_t e = {.name = "log/orders/0", .ckpt = ck_at(10)};
	must_save(&st, &e, 1);
	uint64_t before = sp_store_file_epoch(&st);
	char err[512] = "";
	cr_assert_eq(st.ops->reset(&st, NULL, err, sizeof err), SPATE_OK, "%s", err);
	cr_assert_neq(sp_store_file_epoch(&st), before);
	must_save(&st, &e, 1);
	/* a complete save not renamed: the reopen loads PATH.tmp, its first save writes PATH */
	e.ckpt = ck_at(11);
	cr_assert_eq(sp_store_file_save_fault(&st, &e, 1, SP_FILE_FAULT_BEFORE_RENAME, err, sizeof err),
	             SPATE_ERR_STORE, "%s", err);
	st.ops->close(&st);
	cr_assert_eq(unlink(f.path), 0);
	must_open(&st, f.path);
	assert_ckpt(&st, "log/orders/0", ck_at(11));
	e.ckpt = ck_at(12);
	must_save(&st, &e, 1);
	st.ops->close(&st);
	fixture_fini(&f);
}
