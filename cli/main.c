/* main.c - the `spate` command: one verb per job, each with --help.
 *
 * The command is one user of libspate like any embedder; nothing in the library
 * includes cli/.
 */
#include "cmds.h"

#include <spate/spate.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f,
	        "spate %s - a stream processing engine\n"
	        "\n"
	        "usage: spate VERB [options]\n"
	        "\n"
	        "  run [CONFIG] [-X key=value]...        run a pipeline until the source ends or SIGTERM\n"
	        "  produce DIR [options]                  append records to the embedded log\n"
	        "  log create|ls|dump|verify|publish DIR  the embedded log\n"
	        "  bench (--log DIR | --kafka TOPIC) ...  produce and consume at once: rates, latency, CPU\n"
	        "  top [ADDR:PORT]                        a live view of a pipeline's metrics endpoint\n"
	        "  checkpoint show|reset STORE            what a checkpoint store holds\n"
	        "  dlq redrive DLQ_DIR --to CONFIG        replay dead letters into a pipeline\n"
	        "  config [--markdown]                    every configuration key, with its default\n"
	        "  version                                print the version\n"
	        "\n"
	        "Each verb takes --help. Configuration keys: `spate run --help`.\n",
	        spate_version_str());
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *v = argv[1];
	if (!strcmp(v, "--help") || !strcmp(v, "-h") || !strcmp(v, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(v, "version") || !strcmp(v, "--version")) {
		printf("spate %s\n", spate_version_str());
		return 0;
	}
	if (!strcmp(v, "run"))
		return spate_cmd_run(argc - 1, argv + 1);
	if (!strcmp(v, "config"))
		return spate_cmd_config(argc - 1, argv + 1);
	if (!strcmp(v, "log"))
		return spate_cmd_log(argc - 1, argv + 1);
	if (!strcmp(v, "produce"))
		return spate_cmd_produce(argc - 1, argv + 1);
	if (!strcmp(v, "dlq"))
		return spate_cmd_dlq(argc - 1, argv + 1);
	if (!strcmp(v, "bench"))
		return spate_cmd_bench(argc - 1, argv + 1);
	if (!strcmp(v, "top"))
		return spate_cmd_top(argc - 1, argv + 1);
	if (!strcmp(v, "checkpoint"))
		return spate_cmd_checkpoint(argc - 1, argv + 1);
	fprintf(stderr, "spate: unknown verb \"%s\"\n\n", v);
	usage(stderr);
	return 2;
}
