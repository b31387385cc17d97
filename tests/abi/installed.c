/* installed.c - a program built against the installed libspate (tests/abi/test_abi.c).
 *
 * The test installs the library into a temporary tree, compiles this file with the flags
 * `pkg-config --cflags --libs spate` gives, and runs it. It prints the file the dynamic
 * linker loaded libspate from (which must be the installed one), the version, and the
 * records a pipeline of RECORDS generated records handed to its handler.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <spate/spate.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* records the pipeline generates (source=gen) */
#define RECORDS "10000"

static atomic_ulong handled;

static int handle(void *opaque, void *worker_ctx, spate_batch_t *batch)
{
	(void)opaque;
	(void)worker_ctx;
	atomic_fetch_add(&handled, (unsigned long)spate_batch_count(batch));
	return SPATE_HANDLER_OK;
}

int main(void)
{
	Dl_info info;
	if (!dladdr((void *)spate_version, &info) || !info.dli_fname)
		return 3;
	printf("library %s\n", info.dli_fname);
	printf("version %s %s\n", spate_version_str(),
	       spate_version() == SPATE_VERSION ? "matches" : "differs");
	char err[512];
	spate_conf_t *conf = spate_conf_new();
	const char *kv[] = {"source", "gen", "gen.records", RECORDS, "gen.partitions", "2", NULL};
	for (int i = 0; kv[i]; i += 2)
		if (spate_conf_set(conf, kv[i], kv[i + 1], err, sizeof(err)) != SPATE_CONF_OK) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .name = "count", .handle = handle};
	spate_engine_t *e = spate_engine_new(conf, &h, err, sizeof(err));
	if (!e) {
		spate_conf_destroy(conf);
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	int rc = spate_engine_start(e, err, sizeof(err));
	if (rc == SPATE_OK)
		rc = spate_engine_run(e, err, sizeof(err));
	if (rc != SPATE_OK)
		fprintf(stderr, "%s: %s\n", spate_err2name(rc), err);
	spate_engine_destroy(e);
	printf("handled %lu\n", (unsigned long)atomic_load(&handled));
	return rc == SPATE_OK ? 0 : 1;
}
