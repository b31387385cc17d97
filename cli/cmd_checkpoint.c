/* cmd_checkpoint.c - `spate checkpoint show|reset STORE`: what a checkpoint store holds.
 *
 * STORE is a store URI as the "store" key takes it (file:/var/lib/spate/ckpt). `show`
 * prints one `partition checkpoint` line per partition, sorted by partition name, so
 * scripts and tests can diff it. It opens the store read-only (the store's
 * open_readonly: no lock, nothing written), so it can watch the checkpoints of a running
 * pipeline; a store without a read-only mode is opened like the engine opens it. `reset`
 * removes one partition's checkpoint (--partition NAME) or all of them; the next run
 * then starts those partitions at starting.position. It opens the store like the engine
 * does, so a store in use by a running pipeline (the file store's lock) is refused
 * rather than changed under it.
 *
 * Exit codes: 0 done, 1 the store failed (the message names it), 2 bad usage.
 */
#include "cmds.h"
#include "sp_registry.h"

#include <spate/spate.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exit codes of the verb. */
#define EXIT_DONE   0
#define EXIT_FAILED 1
#define EXIT_USAGE  2

static void usage(FILE *f)
{
	fprintf(f, "usage: spate checkpoint show STORE [--pipeline NAME] [-X key=value ...]\n"
	           "       spate checkpoint reset STORE [--partition NAME] [--pipeline NAME] [-X key=value ...]\n"
	           "\n"
	           "  show    print `partition checkpoint` lines, sorted by partition; reads the\n"
	           "          store without locking it, so it works while a pipeline runs\n"
	           "  reset   remove the checkpoint of partition NAME, or of every partition;\n"
	           "          the next run starts them at starting.position. Refused while a\n"
	           "          running pipeline uses the store: stop the pipeline first\n"
	           "\n"
	           "STORE is a store URI as the \"store\" key takes it, e.g. file:/var/lib/spate/ckpt.\n"
	           "--pipeline NAME: in a store shared by pipelines (redis://...), the checkpoints of\n"
	           "pipeline NAME (its pipeline.name); default \"pipeline\".\n"
	           "-X key=value: the store's keys, as `spate run` takes them (redis.tls.ca,\n"
	           "redis.timeout.ms, dynamodb.region, ...).\n"
	           "A checkpoint is \"beginning\" (nothing done yet) or the last position done.\n");
}

/* One entry list() reported, copied: its name is only valid during the callback. */
typedef struct shown {
	char *name;
	sp_ckpt_t ckpt;
} shown_t;

typedef struct collected {
	shown_t *ents;
	size_t n, cap;
	bool oom;
} collected_t;

static void collect(void *arg, const sp_store_entry_t *ent)
{
	collected_t *c = arg;
	if (c->oom)
		return;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		shown_t *e = realloc(c->ents, cap * sizeof *e);
		if (!e) {
			c->oom = true;
			return;
		}
		c->ents = e;
		c->cap = cap;
	}
	char *name = strdup(ent->name);
	if (!name) {
		c->oom = true;
		return;
	}
	c->ents[c->n].name = name;
	c->ents[c->n++].ckpt = ent->ckpt;
}

static int shown_cmp(const void *a, const void *b)
{
	return strcmp(((const shown_t *)a)->name, ((const shown_t *)b)->name);
}

static int show(sp_store_t *st, const char *uri)
{
	char err[512];
	collected_t c = {0};
	int rc = EXIT_DONE;
	if (!st->ops->list) {
		fprintf(stderr, "spate: store %s cannot list its checkpoints\n", uri);
		return EXIT_FAILED;
	}
	int r = st->ops->list(st, collect, &c, err, sizeof err);
	if (r != SPATE_OK) {
		fprintf(stderr, "spate: %s\n", err);
		rc = EXIT_FAILED;
	} else if (c.oom) {
		fprintf(stderr, "spate: checkpoint show %s: out of memory\n", uri);
		rc = EXIT_FAILED;
	} else {
		/* stores list in their own order; sort so the output can be diffed */
		if (c.n)
			qsort(c.ents, c.n, sizeof *c.ents, shown_cmp);
		for (size_t i = 0; i < c.n; i++) {
			char ctext[SPATE_POSITION_MAX];
			printf("%s %s\n", c.ents[i].name, sp_ckpt_fmt(&c.ents[i].ckpt, ctext, sizeof ctext));
		}
		if (fflush(stdout) != 0) {
			perror("spate: checkpoint show: stdout");
			rc = EXIT_FAILED;
		}
	}
	for (size_t i = 0; i < c.n; i++)
		free(c.ents[i].name);
	free(c.ents);
	return rc;
}

static int reset(sp_store_t *st, const char *uri, const char *partition)
{
	char err[512];
	if (!st->ops->reset) {
		fprintf(stderr, "spate: store %s cannot reset checkpoints\n", uri);
		return EXIT_FAILED;
	}
	int r = st->ops->reset(st, partition, err, sizeof err);
	if (r != SPATE_OK) {
		fprintf(stderr, "spate: %s\n", err);
		return EXIT_FAILED;
	}
	if (partition)
		printf("reset the checkpoint of %s in %s\n", partition, uri);
	else
		printf("reset every checkpoint in %s\n", uri);
	return EXIT_DONE;
}

static int checkpoint(int argc, char **argv, spate_conf_t *conf)
{
	const char *sub = NULL, *uri = NULL, *partition = NULL, *pipeline = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return EXIT_DONE;
		} else if (!strncmp(a, "-X", 2)) {
			if (spate_cli_opt_x(conf, argc, argv, &i))
				return EXIT_USAGE;
		} else if (!strcmp(a, "--pipeline")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "spate: checkpoint: %s needs a pipeline name\n", a);
				return EXIT_USAGE;
			}
			pipeline = argv[++i];
		} else if (!strcmp(a, "--partition") || !strcmp(a, "-p")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "spate: checkpoint: %s needs a partition name\n", a);
				return EXIT_USAGE;
			}
			partition = argv[++i];
		} else if (!strncmp(a, "--partition=", 12)) {
			partition = a + 12;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "spate: checkpoint: unknown option \"%s\"\n\n", a);
			usage(stderr);
			return EXIT_USAGE;
		} else if (!sub) {
			sub = a;
		} else if (!uri) {
			uri = a;
		} else {
			fprintf(stderr, "spate: checkpoint: unexpected argument \"%s\"\n\n", a);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	bool is_show = sub && !strcmp(sub, "show"), is_reset = sub && !strcmp(sub, "reset");
	if (!is_show && !is_reset) {
		if (sub)
			fprintf(stderr, "spate: checkpoint: unknown action \"%s\"\n\n", sub);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!uri) {
		fprintf(stderr, "spate: checkpoint %s: which store? (e.g. file:/path/ckpt)\n\n", sub);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (partition && (is_show || !*partition)) {
		fprintf(stderr, "spate: checkpoint %s: --partition %s\n", sub,
		        is_show ? "is only for reset" : "needs a partition name");
		return EXIT_USAGE;
	}
	sp_store_t st;
	char err[512];
	/* show only looks, so it takes no lock a running pipeline holds or needs; reset
	 * changes checkpoints and must hold the store as the engine does */
	int r = sp_store_open_uri_ns(uri, pipeline, conf, is_show, &st, err, sizeof err);
	if (r == SPATE_ERR_BUSY && is_reset) {
		fprintf(stderr,
		        "spate: checkpoint reset refused: %s; reset never changes checkpoints under a "
		        "running pipeline: stop it first (`spate checkpoint show` works while it runs)\n",
		        err);
		return EXIT_FAILED;
	}
	if (r != SPATE_OK) {
		fprintf(stderr, "spate: %s\n", err);
		return EXIT_FAILED;
	}
	int rc = is_show ? show(&st, uri) : reset(&st, uri, partition);
	st.ops->close(&st);
	return rc;
}

int spate_cmd_checkpoint(int argc, char **argv)
{
	spate_conf_t *conf = spate_conf_new();
	if (!conf) {
		fprintf(stderr, "spate: checkpoint: out of memory\n");
		return EXIT_FAILED;
	}
	int rc = checkpoint(argc, argv, conf);
	spate_conf_destroy(conf);
	return rc;
}
