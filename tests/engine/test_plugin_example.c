/* test_plugin_example.c - the minimal source of docs/plugins.md
 * (examples/plugin/counter_source.c), compiled like a plugin (only the public header and
 * engine/spi on its include path), runs in an engine: every number is handled once, in
 * order per key, the run ends by itself (a finite source), and a second run resumes
 * after the checkpoints (it handles nothing). The page shows the file as it is. */
#include <spate/spate.h>

#include "sp_spi.h"

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/common/engine.h"
#include "tests/common/util.h"

extern const sp_source_ops_t counter_source;

typedef struct seen {
	_Atomic uint32_t count[2][1000];
	int64_t last[2][10]; /* per partition and key: the last number handled */
	_Atomic int disorder;
} seen_t;

static int handle(void *opaque, void *ctx, spate_batch_t *b)
{
	seen_t *s = opaque;
	const spate_record_t *const *r = spate_batch_records(b);
	for (size_t i = 0; i < spate_batch_count(b); i++) {
		int p = r[i]->partition->partition;
		long v = strtol(r[i]->value, NULL, 10);
		int key = ((const char *)r[i]->key)[1] - '0';
		atomic_fetch_add(&s->count[p][v], 1);
		if (v <= s->last[p][key])
			atomic_fetch_add(&s->disorder, 1);
		s->last[p][key] = v;
	}
	return SPATE_HANDLER_OK;
}

static uint64_t run(seen_t *s, const char *store)
{
	const char *kv[] = {"store", store, "parallelization.factor", "4", "log.level", "warn", NULL};
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .name = "count", .handle = handle, .opaque = s};
	t_run_t r = t_engine_run(&(t_engine_opts_t){.conf = kv, .handler = &h, .source = &counter_source});
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	return r.sum.records;
}

Test(plugin_example, the_counter_source_runs_ends_and_resumes, .timeout = 60)
{
	char dir[256], store[300];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(store, sizeof(store), "file:%s/ckpt", dir);
	seen_t *s = calloc(1, sizeof(*s));
	for (int p = 0; p < 2; p++)
		for (int k = 0; k < 10; k++)
			s->last[p][k] = -1;
	cr_assert_eq(run(s, store), 2000);
	for (int p = 0; p < 2; p++)
		for (int v = 0; v < 1000; v++)
			cr_assert_eq(atomic_load(&s->count[p][v]), 1, "partition %d number %d handled %u times", p, v,
			             atomic_load(&s->count[p][v]));
	cr_assert_eq(atomic_load(&s->disorder), 0);
	cr_assert_eq(run(s, store), 0, "the second run did not resume after the checkpoints");
	free(s);
	t_rmrf(dir);
}

Test(plugin_example, docs_plugins_md_shows_the_file_as_it_is)
{
	char path[1024];
	const char *src = getenv("SPATE_SOURCE_DIR");
	snprintf(path, sizeof(path), "%s/examples/plugin/counter_source.c", src ? src : ".");
	char *code = t_read_file(path, NULL);
	cr_assert_not_null(code, "%s", path);
	snprintf(path, sizeof(path), "%s/docs/plugins.md", src ? src : ".");
	char *doc = t_read_file(path, NULL);
	cr_assert_not_null(doc, "%s", path);
	cr_assert(strstr(doc, code), "docs/plugins.md does not show examples/plugin/counter_source.c as it is");
	free(code);
	free(doc);
}
