/* cmd_run.c - `spate run [CONFIG] [-X key=value]...` and `spate config`.
 *
 * A config file holds key=value lines with # comments; -X overrides it, in order (like
 * kcat and librdkafka). Every error names the key, and for a file also FILE:LINE.
 * SIGINT/SIGTERM ask the engine to drain and checkpoint; a second one stops at once.
 * At the end the summary is printed as `name value` lines (spate_summary_text: the names
 * and units of summary.json), then the handler's own counters.
 */
#include "cmds.h"
#include "sp_registry.h"

#include <ctype.h>
#include <stdbool.h>
#include <unistd.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static spate_engine_t *volatile running_engine;

static void on_signal(int sig)
{
	(void)sig;
	spate_engine_t *e = running_engine;
	if (e)
		spate_engine_stop(e); /* async-signal-safe */
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = 0;
	return s;
}

int spate_cli_load_config(spate_conf_t *conf, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "spate: %s: %s\n", path, strerror(errno));
		return -1;
	}
	char *line = NULL;
	size_t cap = 0;
	int lineno = 0, rc = 0;
	while (getline(&line, &cap, f) >= 0) {
		lineno++;
		char *s = trim(line);
		if (!*s || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			fprintf(stderr, "spate: %s:%d: expected key=value, got \"%s\"\n", path, lineno, s);
			rc = -1;
			break;
		}
		*eq = 0;
		char *key = trim(s), *val = trim(eq + 1);
		char err[512];
		if (spate_conf_set(conf, key, val, err, sizeof(err)) != SPATE_CONF_OK) {
			fprintf(stderr, "spate: %s:%d: %s\n", path, lineno, err);
			rc = -1;
			break;
		}
	}
	free(line);
	fclose(f);
	return rc;
}

static void print_keys(FILE *f)
{
	size_t n;
	const spate_conf_prop_t *p = spate_conf_properties(&n);
	for (size_t i = 0; i < n; i++) {
		char range[96] = "";
		if (!strcmp(p[i].type, "int") || !strcmp(p[i].type, "size"))
			snprintf(range, sizeof(range), " [%" PRId64 "..%" PRId64 "]", p[i].min, p[i].max);
		else if (p[i].allowed)
			snprintf(range, sizeof(range), " [%s]", p[i].allowed);
		fprintf(f, "  %-26s %s%s, default \"%s\"\n      %s\n", p[i].name, p[i].type, range, p[i].def,
		        p[i].doc);
	}
}

static void run_usage(FILE *f)
{
	fprintf(f, "usage: spate run [CONFIG] [-X key=value]... [--stats]\n"
	           "  --stats   one JSON line of stats per second on stderr (stats.interval.ms=1000)\n"
	           "\n"
	           "Runs a pipeline: CONFIG holds key=value lines (# comments); -X sets or overrides\n"
	           "a key. Keys starting with kafka. pass through to librdkafka.\n"
	           "\n"
	           "When it ends: a finite source ends the run once every record is DONE and\n"
	           "checkpointed (gen with gen.records > 0; push after spate_push_close). A log or a\n"
	           "Kafka topic is a stream: the run keeps tailing it unless stop.at.end=true, which\n"
	           "ends once every partition reaches the end it had at the start (kcat -e).\n"
	           "SIGINT/SIGTERM let the handler calls already running finish (up to\n"
	           "shutdown.timeout.ms), write the final checkpoint of what is DONE and exit 0;\n"
	           "records fetched but not yet handed to the handler are read again next run. A\n"
	           "second signal stops at once. The summary is printed as `name value` lines.\n"
	           "\n"
	           "Checkpoints: store=file:PATH, store=kafka, or store=none. Unset, source=log:DIR\n"
	           "keeps them in file:DIR/checkpoints/PIPELINE (PIPELINE is pipeline.name, by\n"
	           "default the handler key, e.g. fraud or sleep-200), source=kafka in its consumer\n"
	           "group; gen and push keep none.\n"
	           "\n"
	           "keys:\n");
	print_keys(f);
}

static int set_x(spate_conf_t *conf, const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (!eq || eq == kv) {
		fprintf(stderr, "spate: -X %s: expected key=value\n", kv);
		return -1;
	}
	char key[256];
	size_t kl = (size_t)(eq - kv) < sizeof(key) - 1 ? (size_t)(eq - kv) : sizeof(key) - 1;
	memcpy(key, kv, kl);
	key[kl] = 0;
	char err[512];
	if (spate_conf_set(conf, key, eq + 1, err, sizeof(err)) != SPATE_CONF_OK) {
		fprintf(stderr, "spate: -X %s: %s\n", kv, err);
		return -1;
	}
	return 0;
}

static void print_summary(const spate_summary_t *s)
{
	char buf[2048];
	spate_summary_text(s, buf, sizeof(buf));
	fputs(buf, stdout);
}

int spate_cli_run_conf(spate_conf_t *conf)
{
	int rc = 1;
	char err[512], jspath[4096] = "";
	size_t jslen = sizeof(jspath);
	spate_conf_get(conf, "summary.json", jspath, &jslen);
	spate_engine_t *e = spate_engine_new(conf, NULL, err, sizeof(err));
	if (!e) {
		fprintf(stderr, "spate: %s\n", err);
		goto out;
	}
	conf = NULL; /* the engine owns it */
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	running_engine = e;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	int erc = spate_engine_start(e, err, sizeof(err));
	bool ran = erc == SPATE_OK;
	if (ran)
		erc = spate_engine_run(e, err, sizeof(err));
	spate_summary_t s;
	spate_engine_summary(e, &s);
	if (erc != SPATE_OK)
		fprintf(stderr, "spate: %s (%s)\n", err, spate_err2name(erc));
	if (!ran) { /* the error says it all: no summary of zeros */
		fflush(stdout);
		running_engine = NULL;
		spate_engine_destroy(e);
		rc = 1;
		goto out;
	}
	print_summary(&s);
	spate_engine_report(e, stdout);
	const char *js = jspath;
	if (*js) {
		char buf[1024];
		spate_summary_json(&s, buf, sizeof(buf));
		FILE *f = fopen(js, "w");
		if (!f || fprintf(f, "%s\n", buf) < 0 || fclose(f)) {
			fprintf(stderr, "spate: summary.json: cannot write %s: %s\n", js, strerror(errno));
			if (erc == SPATE_OK)
				erc = SPATE_ERR_IO;
		}
	}
	fflush(stdout);
	running_engine = NULL;
	rc = erc == SPATE_OK ? 0 : 1;
	if (spate_engine_busy(e)) {
		/* a handler call outlived the stop: do not wait for it, the process ends here */
		fflush(stderr);
		_exit(rc);
	}
	spate_engine_destroy(e);
out:
	spate_conf_destroy(conf);
	return rc;
}

int spate_cmd_run(int argc, char **argv)
{
	spate_conf_t *conf = spate_conf_new();
	if (!conf)
		return 1;
	int rc = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			run_usage(stdout);
			spate_conf_destroy(conf);
			return 0;
		} else if (!strcmp(a, "--stats")) {
			if (set_x(conf, "stats.interval.ms=1000"))
				goto out;
		} else if (!strcmp(a, "-X")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "spate: -X needs key=value\n");
				goto out;
			}
			if (set_x(conf, argv[++i]))
				goto out;
		} else if (!strncmp(a, "-X", 2)) {
			if (set_x(conf, a + 2))
				goto out;
		} else if (a[0] == '-') {
			fprintf(stderr, "spate: run: unknown option \"%s\" (see spate run --help)\n", a);
			goto out;
		} else {
			/* the config file comes first so -X given before it still wins: load it,
			 * then re-apply every -X of the command line */
			spate_conf_t *fresh = spate_conf_new();
			if (!fresh || spate_cli_load_config(fresh, a)) {
				spate_conf_destroy(fresh);
				goto out;
			}
			for (int j = 1; j < argc; j++) {
				if (!strcmp(argv[j], "-X") && j + 1 < argc) {
					if (set_x(fresh, argv[++j])) {
						spate_conf_destroy(fresh);
						goto out;
					}
				} else if (!strcmp(argv[j], "--stats")) {
					if (set_x(fresh, "stats.interval.ms=1000")) {
						spate_conf_destroy(fresh);
						goto out;
					}
				} else if (!strncmp(argv[j], "-X", 2) && argv[j][2]) {
					if (set_x(fresh, argv[j] + 2)) {
						spate_conf_destroy(fresh);
						goto out;
					}
				}
			}
			spate_conf_destroy(conf);
			conf = fresh;
			/* skip the -X arguments already applied */
			for (int j = i + 1; j < argc; j++)
				if (!strcmp(argv[j], "-X"))
					j++;
				else if (strncmp(argv[j], "-X", 2) && strcmp(argv[j], "--stats") && argv[j][0] == '-') {
					fprintf(stderr, "spate: run: unknown option \"%s\"\n", argv[j]);
					goto out;
				} else if (argv[j][0] != '-') {
					fprintf(stderr, "spate: run: more than one CONFIG (\"%s\")\n", argv[j]);
					goto out;
				}
			break;
		}
	}
	rc = spate_cli_run_conf(conf);
	conf = NULL; /* consumed */
out:
	spate_conf_destroy(conf);
	return rc;
}

int spate_cmd_config(int argc, char **argv)
{
	bool md = argc > 1 && !strcmp(argv[1], "--markdown");
	if (argc > 1 && !md) {
		printf("usage: spate config [--markdown]\n  Prints every configuration key; --markdown writes docs/configuration.md's text.\n");
		return strcmp(argv[1], "--help") ? 2 : 0;
	}
	if (!md) {
		print_keys(stdout);
		return 0;
	}
	size_t n;
	const spate_conf_prop_t *p = spate_conf_properties(&n);
	printf("# Configuration reference\n\n"
	       "Generated from the property table in engine/conf.c by `spate config --markdown`;\n"
	       "a test checks that this file and the table agree. Set keys in a config file\n"
	       "(`key=value` lines, `#` comments), with `-X key=value`, or with `spate_conf_set()`.\n"
	       "Keys starting with `kafka.` pass through to librdkafka (docs/kafka.md). The Kinesis\n"
	       "connector's keys start with `kinesis.` (docs/kinesis.md).\n\n"
	       "| key | type | range / allowed | default | description |\n"
	       "|---|---|---|---|---|\n");
	for (size_t i = 0; i < n; i++) {
		char range[96] = "";
		if (!strcmp(p[i].type, "int") || !strcmp(p[i].type, "size"))
			snprintf(range, sizeof(range), "%" PRId64 " .. %" PRId64, p[i].min, p[i].max);
		else if (p[i].allowed)
			snprintf(range, sizeof(range), "%s", p[i].allowed);
		else if (!strcmp(p[i].type, "bool"))
			snprintf(range, sizeof(range), "true, false");
		char allowed[128];
		/* escape | for the table */
		size_t k = 0;
		for (const char *c = range; *c && k < sizeof(allowed) - 3; c++) {
			if (*c == '|') {
				allowed[k++] = ',';
				allowed[k++] = ' ';
			} else
				allowed[k++] = *c;
		}
		allowed[k] = 0;
		printf("| `%s` | %s | %s | `%s` | %s |\n", p[i].name, p[i].type, allowed, p[i].def, p[i].doc);
	}
	return 0;
}
