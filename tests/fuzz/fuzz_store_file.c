/* fuzz_store_file.c - the file checkpoint store's text format (connectors/stores/file.c).
 *
 * Input: mode u8, then the file's bytes. The bytes go to PATH, or with mode & AS_TMP to
 * PATH.tmp alone (a first save cut short: the store reads that only when PATH is
 * missing). The store is opened the ways spate opens it: read-only (`spate checkpoint
 * show`) and, with mode & LOCKED, locked and writable (a pipeline), through its vtable
 * with store=file:PATH. The oracle: an open either succeeds or fails with the path in its
 * error; what a read-only open lists it also loads by name, each checkpoint formats and
 * parses back to itself; a writable open holds what the read-only one listed, and its
 * save (an empty save rewrites the file) is read back by a fresh open, entry for entry.
 */
#include "connectors/stores/file.h"
#include "fuzz.h"

#include <stdbool.h>

enum { AS_TMP = 1, LOCKED = 2 };

/* Most entries compared between two opens. */
#define MAX_SEEN 256

typedef struct seen {
	char *name[MAX_SEEN];
	sp_ckpt_t ckpt[MAX_SEEN];
	size_t n, total;
} seen_t;

static void note(void *arg, const sp_store_entry_t *ent)
{
	seen_t *s = arg;
	FUZZ_CHECK(ent->name && ent->name[0]);
	/* a position of 512 bits is up to 159 characters: 128 cut one short (the harness's own
	 * bug, found at 1.4 million executions, crash-c82c4c9d...) */
	char buf[SPATE_POSITION_MAX];
	sp_ckpt_t back;
	FUZZ_CHECK(sp_ckpt_parse(sp_ckpt_fmt(&ent->ckpt, buf, sizeof(buf)), &back) == 0);
	FUZZ_CHECK(back.beginning == ent->ckpt.beginning &&
	           (back.beginning || !memcmp(&back.after, &ent->ckpt.after, sizeof(back.after))));
	if (s->n < MAX_SEEN) {
		s->name[s->n] = strdup(ent->name);
		FUZZ_CHECK(s->name[s->n]);
		s->ckpt[s->n++] = ent->ckpt;
	}
	s->total++;
}

static void seen_free(seen_t *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->name[i]);
	s->n = s->total = 0;
}

static bool same_ckpt(const sp_ckpt_t *a, const sp_ckpt_t *b)
{
	return a->beginning == b->beginning &&
	       (a->beginning || !memcmp(&a->after, &b->after, sizeof(a->after)));
}

/* Open (read-only or locked) and list into *s. The open's result. */
static int open_list(const char *path, bool readonly, sp_store_t *st, seen_t *s)
{
	char err[1024] = "";
	*st = (sp_store_t){.ops = &sp_store_file, .arg = path};
	int rc = readonly ? sp_store_file.open_readonly(st, err, sizeof(err))
	                  : sp_store_file.open(st, err, sizeof(err));
	if (rc != SPATE_OK) {
		FUZZ_CHECK(strstr(err, path));
		return rc;
	}
	FUZZ_CHECK(sp_store_file.list(st, note, s, err, sizeof(err)) == SPATE_OK);
	for (size_t i = 0; i < s->n; i++) {
		sp_ckpt_t c;
		FUZZ_CHECK(sp_store_file.load(st, s->name[i], &c, err, sizeof(err)) == SPATE_OK);
		FUZZ_CHECK(same_ckpt(&c, &s->ckpt[i]));
	}
	return rc;
}

static void same_sets(const seen_t *a, const seen_t *b)
{
	FUZZ_CHECK(a->total == b->total && a->n == b->n);
	for (size_t i = 0; i < a->n; i++)
		FUZZ_CHECK(!strcmp(a->name[i], b->name[i]) && same_ckpt(&a->ckpt[i], &b->ckpt[i]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	char dir[512], path[600], tmp[700];
	snprintf(dir, sizeof(dir), "%s/store", fuzz_dir());
	mkdir(dir, 0700);
	fuzz_clear(dir);
	snprintf(path, sizeof(path), "%s/ckpt", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fuzz_write(mode & AS_TMP ? tmp : path, data + 1, size - 1);

	sp_store_t st;
	seen_t ro = {0};
	int rc = open_list(path, true, &st, &ro);
	if (rc == SPATE_OK)
		sp_store_file.close(&st);
	if (mode & LOCKED) {
		seen_t rw = {0}, again = {0};
		int rc2 = open_list(path, false, &st, &rw);
		FUZZ_CHECK((rc2 == SPATE_OK) == (rc == SPATE_OK));
		if (rc2 == SPATE_OK) {
			same_sets(&ro, &rw);
			char err[1024];
			FUZZ_CHECK(sp_store_file.save(&st, NULL, 0, err, sizeof(err)) == SPATE_OK);
			sp_store_file.close(&st);
			FUZZ_CHECK(open_list(path, true, &st, &again) == SPATE_OK);
			sp_store_file.close(&st);
			same_sets(&rw, &again);
		}
		seen_free(&rw);
		seen_free(&again);
	}
	seen_free(&ro);
	return 0;
}
