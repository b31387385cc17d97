/* cmd_dlq.c - `spate dlq redrive DLQ_DIR --to CONFIG [-X key=value]...`.
 *
 * Replays the records of a log DLQ into the pipeline CONFIG describes: the source becomes
 * log:DLQ_DIR in redrive mode (source.redrive=true: the spate.* headers the DLQ added are
 * dropped, so the handler sees the original key, value and headers, and each record's
 * timestamp is the redrive time, so max.record.age.ms counts from the redrive), and the
 * run stops at the DLQ's end. Progress is checkpointed in CONFIG's store under the DLQ's
 * own partition names (log/DLQNAME/P), so a redrive that stops resumes where it was.
 */
#include "cmds.h"
#include "sp_registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: spate dlq redrive DLQ_DIR --to CONFIG [-X key=value]...\n"
	           "\n"
	           "Replays the dead letters in the log DLQ_DIR into the pipeline of CONFIG (its\n"
	           "handler, store, retry keys and DLQ), with their original key, value and headers.\n"
	           "A redriven record's age counts from the redrive. Progress is checkpointed in\n"
	           "CONFIG's store, so running it again continues after what was redriven.\n");
}

static int set(spate_conf_t *c, const char *k, const char *v)
{
	char err[512];
	if (spate_conf_set(c, k, v, err, sizeof(err)) != SPATE_CONF_OK) {
		fprintf(stderr, "spate: dlq redrive: %s\n", err);
		return -1;
	}
	return 0;
}

int spate_cmd_dlq(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "redrive")) {
		fprintf(stderr, "spate: dlq: unknown command \"%s\" (redrive)\n", argv[1]);
		return 2;
	}
	const char *dlq = NULL, *config = NULL;
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--to") && i + 1 < argc) {
			config = argv[++i];
		} else if (!strcmp(argv[i], "-X") && i + 1 < argc) {
			i++; /* applied below, after the config file */
		} else if (argv[i][0] != '-' && !dlq) {
			dlq = argv[i];
		} else {
			fprintf(stderr, "spate: dlq redrive: unexpected argument \"%s\"\n\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (!dlq || !config) {
		usage(stderr);
		return 2;
	}
	spate_conf_t *c = spate_conf_new();
	if (!c || spate_cli_load_env(c) || spate_cli_load_config(c, config)) {
		spate_conf_destroy(c);
		return 1;
	}
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], "-X") && i + 1 < argc) {
			const char *kv = argv[++i], *eq = strchr(kv, '=');
			char key[256];
			if (!eq || (size_t)(eq - kv) >= sizeof(key)) {
				/* the argument is not shown: it may hold a secret */
				fprintf(stderr,
				        "spate: -X: expected key=value with a key of at most %zu bytes\n",
				        sizeof(key) - 1);
				spate_conf_destroy(c);
				return 1;
			}
			memcpy(key, kv, (size_t)(eq - kv));
			key[eq - kv] = 0;
			if (set(c, key, eq + 1)) {
				spate_conf_destroy(c);
				return 1;
			}
			spate_cli_warn_arg(key, eq + 1);
		}
	char src[4096];
	snprintf(src, sizeof(src), "log:%s", dlq);
	const char *target_dlq = sp_conf_str(c, "dlq");
	if (!strcmp(target_dlq, src)) {
		fprintf(stderr,
		        "spate: dlq redrive: dlq: the pipeline's DLQ is %s, the DLQ being redriven; "
		        "give it another DLQ (-X dlq=log:OTHER)\n",
		        dlq);
		spate_conf_destroy(c);
		return 1;
	}
	if (set(c, "source", src) || set(c, "source.redrive", "true") || set(c, "stop.at.end", "true")) {
		spate_conf_destroy(c);
		return 1;
	}
	return spate_cli_run_conf(c);
}
