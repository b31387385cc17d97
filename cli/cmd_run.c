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
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/stat.h>
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

/* Environment variables named ENV_KAFKA_PREFIX + NAME set kafka.name ('_' as '.',
 * lower case): SPATE_KAFKA_SASL_PASSWORD is kafka.sasl.password. A process's environment
 * is readable by its own user only (/proc/PID/environ), its command line by every user
 * (ps), so secrets given this way stay out of sight. */
#define ENV_KAFKA_PREFIX "SPATE_KAFKA_"

bool spate_cli_secret(const char *key, const char *val)
{
	static const char *const words[] = {"password", "secret", "token", ".pem", NULL};
	for (int i = 0; words[i]; i++)
		if (strstr(key, words[i]))
			return true;
	/* a URI with user:password@ (store=redis://user:PASSWORD@host:port) */
	const char *auth = val ? strstr(val, "://") : NULL, *at = auth ? strrchr(auth + 3, '@') : NULL;
	const char *colon = auth ? strchr(auth + 3, ':') : NULL;
	return at && colon && colon < at;
}

int spate_cli_load_env(spate_conf_t *conf)
{
	extern char **environ;
	size_t pl = strlen(ENV_KAFKA_PREFIX);
	for (char **e = environ; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		if (strncmp(*e, ENV_KAFKA_PREFIX, pl) || !eq || eq == *e + pl)
			continue;
		char key[256] = "kafka.";
		size_t k = strlen(key);
		for (const char *p = *e + pl; p < eq && k < sizeof(key) - 1; p++)
			key[k++] = *p == '_' ? '.' : (char)tolower((unsigned char)*p);
		key[k] = 0;
		char err[512];
		if (spate_conf_set(conf, key, eq + 1, err, sizeof(err)) != SPATE_CONF_OK) {
			fprintf(stderr, "spate: environment %.*s: %s\n", (int)(eq - *e), *e, err);
			return -1;
		}
	}
	return 0;
}

void spate_cli_warn_arg(const char *key, const char *val)
{
	if (spate_cli_secret(key, val))
		fprintf(stderr,
		        "spate: warning: -X %s: a secret on the command line is shown to every user by ps; "
		        "give it in CONFIG (chmod 600) or in the environment (`spate run --help`)\n",
		        key);
}

int spate_cli_load_config(spate_conf_t *conf, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "spate: %s: %s\n", path, strerror(errno));
		return -1;
	}
	struct stat st;
	bool shared = fstat(fileno(f), &st) == 0 && (st.st_mode & 077);
	char secret_key[256] = "";
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
			/* the line is not shown: it may be a secret that lost its key */
			fprintf(stderr, "spate: %s:%d: expected key=value (a line without '=')\n", path,
			        lineno);
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
		if (shared && !secret_key[0] && spate_cli_secret(key, val))
			snprintf(secret_key, sizeof(secret_key), "%s", key);
	}
	free(line);
	fclose(f);
	if (rc == 0 && secret_key[0])
		fprintf(stderr,
		        "spate: warning: %s holds a secret (%s) and other users may read it (mode %04o); "
		        "chmod 600 %s\n",
		        path, secret_key, (unsigned)(st.st_mode & 07777), path);
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
	           "Secrets (kafka.sasl.password, a store URI's user:password@) stay out of ps when\n"
	           "given in CONFIG (chmod 600: spate warns when others may read a CONFIG holding\n"
	           "one) or in the environment: SPATE_KAFKA_NAME sets kafka.name ('_' as '.', lower\n"
	           "case), e.g. SPATE_KAFKA_SASL_PASSWORD. A secret given with -X is shown to every\n"
	           "user by ps (spate warns).\n"
	           "Secret values are never printed, in errors, logs, stats or the summary.\n"
	           "\n"
	           "keys:\n");
	print_keys(f);
}

int spate_cli_opt_x(spate_conf_t *conf, int argc, char **argv, int *i)
{
	const char *a = argv[*i];
	if (strncmp(a, "-X", 2))
		return 1;
	if (a[2])
		return spate_cli_set_x(conf, a + 2);
	if (*i + 1 >= argc) {
		fprintf(stderr, "spate: -X needs key=value\n");
		return -1;
	}
	return spate_cli_set_x(conf, argv[++*i]);
}

int spate_cli_set_x(spate_conf_t *conf, const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (!eq || eq == kv) {
		/* not shown: an argument without its key may still be a secret */
		fprintf(stderr, "spate: -X: expected key=value (an argument without a key and '=')\n");
		return -1;
	}
	char key[256];
	size_t kl = (size_t)(eq - kv) < sizeof(key) - 1 ? (size_t)(eq - kv) : sizeof(key) - 1;
	memcpy(key, kv, kl);
	key[kl] = 0;
	char err[512];
	if (spate_conf_set(conf, key, eq + 1, err, sizeof(err)) != SPATE_CONF_OK) {
		/* err names the key and shows the value without a URI's password; kv is not
		 * repeated, since a value may be a secret */
		fprintf(stderr, "spate: -X: %s\n", err);
		return -1;
	}
	spate_cli_warn_arg(key, eq + 1);
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
		int fd = open(js, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, SP_FILE_MODE);
		FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
		if (!f && fd >= 0)
			close(fd);
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
	bool help = false;
	for (int i = 1; i < argc; i++)
		help |= !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
	if (!help && spate_cli_load_env(conf))
		goto out;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			run_usage(stdout);
			spate_conf_destroy(conf);
			return 0;
		} else if (!strcmp(a, "--stats")) {
			if (spate_cli_set_x(conf, "stats.interval.ms=1000"))
				goto out;
		} else if (!strncmp(a, "-X", 2)) {
			if (spate_cli_opt_x(conf, argc, argv, &i))
				goto out;
		} else if (a[0] == '-') {
			fprintf(stderr, "spate: run: unknown option \"%s\" (see spate run --help)\n", a);
			goto out;
		} else {
			/* the config file comes first so -X given before it still wins: load it,
			 * then re-apply every -X of the command line */
			spate_conf_t *fresh = spate_conf_new();
			if (!fresh || spate_cli_load_env(fresh) || spate_cli_load_config(fresh, a)) {
				spate_conf_destroy(fresh);
				goto out;
			}
			for (int j = 1; j < argc; j++) {
				if (!strcmp(argv[j], "-X") && j + 1 < argc) {
					if (spate_cli_set_x(fresh, argv[++j])) {
						spate_conf_destroy(fresh);
						goto out;
					}
				} else if (!strcmp(argv[j], "--stats")) {
					if (spate_cli_set_x(fresh, "stats.interval.ms=1000")) {
						spate_conf_destroy(fresh);
						goto out;
					}
				} else if (!strncmp(argv[j], "-X", 2) && argv[j][2]) {
					if (spate_cli_set_x(fresh, argv[j] + 2)) {
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
				else if (strncmp(argv[j], "-X", 2) && strcmp(argv[j], "--stats") &&
				         argv[j][0] == '-') {
					fprintf(stderr, "spate: run: unknown option \"%s\"\n", argv[j]);
					goto out;
				} else if (argv[j][0] != '-') {
					fprintf(stderr, "spate: run: more than one CONFIG (\"%s\")\n",
					        argv[j]);
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
		printf("usage: spate config [--markdown]\n  Prints every configuration key; --markdown "
		       "writes docs/configuration.md's text.\n");
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
