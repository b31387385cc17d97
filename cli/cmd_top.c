/* cmd_top.c - `spate top [ADDR:PORT]`: a live terminal view of a running pipeline.
 *
 * It scrapes the pipeline's metrics endpoint (metrics.listen, docs/metrics.md) every
 * --interval seconds over a plain HTTP/1.0 GET and draws one screen: the pipeline,
 * records/s, workers, backlog, errors and throttles per second, in-flight records,
 * latency percentiles over the last interval (from the histograms' bucket deltas), and
 * one line per partition (offset lag, iterator age, records/s, in flight), the partitions
 * furthest behind first, as many as the terminal has rows. --once prints one view (two
 * scrapes an interval apart) without clearing the screen.
 */
#include "cmds.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* A scrape may take this long before it counts as failed. */
#define TOP_TIMEOUT_MS 5000
/* The histogram buckets top reads at most (the endpoint exposes 32). */
#define TOP_BUCKETS 64
/* Partitions shown at most when the terminal's size is unknown. */
#define TOP_ROWS_DEFAULT 24

static const char usage_text[] =
    "usage: spate top [ADDR:PORT] [--interval S] [--once]\n"
    "\n"
    "A live view of a pipeline that serves metrics (metrics.listen=ADDR:PORT; default\n"
    "127.0.0.1:9464): rates, workers, backlog, errors, latency, and per partition its\n"
    "offset lag, iterator age and rate. q or Ctrl-C quits.\n"
    "\n"
    "  --interval S   seconds between scrapes (default 1)\n"
    "  --once         print one view (two scrapes S apart) and exit\n";

typedef struct part {
	char name[256];
	double lag, age, done, inflight;
} part_t;

typedef struct scrape {
	double t; /* monotonic seconds */
	char info[512];
	double records, invocations, errors, throttles, workers, workers_max, waiting, inflight, lag, age;
	bool has_lag;
	double le[TOP_BUCKETS], cum[TOP_BUCKETS]; /* latency_seconds{timestamp,done} */
	int nb;
	part_t *p;
	size_t np, cap;
} scrape_t;

static volatile sig_atomic_t top_stop;

static void on_signal(int sig)
{
	(void)sig;
	top_stop = 1;
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* GET /metrics from host:port into a malloc'd body; NULL with err set. */
static char *http_get(const char *host, const char *port, char *err, size_t sz)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		snprintf(err, sz, "%s:%s: %s", host, port, gai_strerror(rc));
		return NULL;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		snprintf(err, sz, "cannot connect to %s:%s: %s (is metrics.listen set?)", host, port,
		         strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return NULL;
	}
	freeaddrinfo(ai);
	char req[512];
	int n = snprintf(req, sizeof(req), "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", host);
	if (write(fd, req, (size_t)n) != n) {
		snprintf(err, sz, "%s:%s: write: %s", host, port, strerror(errno));
		close(fd);
		return NULL;
	}
	size_t len = 0, cap = 1 << 16;
	char *buf = malloc(cap);
	for (; buf;) {
		struct pollfd pf = {fd, POLLIN, 0};
		if (poll(&pf, 1, TOP_TIMEOUT_MS) <= 0) {
			snprintf(err, sz, "%s:%s: no answer within %d ms", host, port, TOP_TIMEOUT_MS);
			free(buf);
			buf = NULL;
			break;
		}
		if (len + 1 >= cap) {
			char *nb = realloc(buf, cap *= 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
		}
		ssize_t k = read(fd, buf + len, cap - len - 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	close(fd);
	if (!buf)
		return NULL;
	buf[len] = 0;
	char *body = strstr(buf, "\r\n\r\n");
	if (strncmp(buf, "HTTP/1.", 7) || !body || !strstr(buf, " 200 ")) {
		snprintf(err, sz, "%s:%s: not a metrics endpoint (%.40s)", host, port, buf);
		free(buf);
		return NULL;
	}
	memmove(buf, body + 4, len - (size_t)(body + 4 - buf) + 1);
	return buf;
}

/* The value of label `name` in a line's {...}, into out. */
static bool label(const char *line, const char *name, char *out, size_t sz)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "%s=\"", name);
	const char *p = strstr(line, pat);
	if (!p)
		return false;
	p += strlen(pat);
	size_t k = 0;
	for (; *p && *p != '"' && k + 1 < sz; p++) {
		if (*p == '\\' && p[1])
			p++;
		out[k++] = *p;
	}
	out[k] = 0;
	return true;
}

static part_t *part_of(scrape_t *s, const char *name)
{
	for (size_t i = 0; i < s->np; i++)
		if (!strcmp(s->p[i].name, name))
			return &s->p[i];
	if (s->np == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		part_t *np = realloc(s->p, cap * sizeof(*np));
		if (!np)
			return NULL;
		s->p = np;
		s->cap = cap;
	}
	part_t *p = &s->p[s->np++];
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	return p;
}

static bool is(const char *line, const char *name)
{
	size_t n = strlen(name);
	return !strncmp(line, name, n) && (line[n] == ' ' || line[n] == '{');
}

static void parse(scrape_t *s, char *text)
{
	for (char *save, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (*line == '#')
			continue;
		const char *sp = strrchr(line, ' ');
		if (!sp)
			continue;
		double v = strtod(sp + 1, NULL);
		char lab[256];
		if (is(line, "spate_info")) {
			char pl[128] = "", src[64] = "", h[128] = "", ver[32] = "";
			label(line, "pipeline", pl, sizeof(pl));
			label(line, "source", src, sizeof(src));
			label(line, "handler", h, sizeof(h));
			label(line, "version", ver, sizeof(ver));
			snprintf(s->info, sizeof(s->info), "%s: %s -> %s (spate %s)", pl, src, h, ver);
		} else if (is(line, "spate_records_total"))
			s->records = v;
		else if (is(line, "spate_invocations_total"))
			s->invocations = v;
		else if (is(line, "spate_errors_total"))
			s->errors = v;
		else if (is(line, "spate_throttles_total"))
			s->throttles = v;
		else if (is(line, "spate_concurrent_executions"))
			s->workers = v;
		else if (is(line, "spate_workers_max"))
			s->workers_max = v;
		else if (is(line, "spate_lanes_waiting"))
			s->waiting = v;
		else if (is(line, "spate_inflight_records"))
			s->inflight = v;
		else if (is(line, "spate_offset_lag"))
			s->lag = v, s->has_lag = true;
		else if (is(line, "spate_iterator_age_seconds"))
			s->age = v;
		else if (is(line, "spate_latency_seconds_bucket") &&
		         strstr(line, "from=\"timestamp\",to=\"done\"") && s->nb < TOP_BUCKETS &&
		         label(line, "le", lab, sizeof(lab))) {
			s->le[s->nb] = strcmp(lab, "+Inf") ? strtod(lab, NULL) : INFINITY;
			s->cum[s->nb++] = v;
		} else if (label(line, "partition", lab, sizeof(lab))) {
			part_t *p = part_of(s, lab);
			if (!p)
				continue;
			if (is(line, "spate_partition_offset_lag"))
				p->lag = v + 1; /* 0: unknown */
			else if (is(line, "spate_partition_iterator_age_seconds"))
				p->age = v;
			else if (is(line, "spate_partition_records_total"))
				p->done = v;
			else if (is(line, "spate_partition_inflight_records"))
				p->inflight = v;
		}
	}
}

/* The q-quantile of the latency recorded between a and b (upper bucket edge), in ms;
 * -1 when nothing was recorded. */
static double quantile_ms(const scrape_t *a, const scrape_t *b, double q)
{
	if (a->nb != b->nb || !b->nb)
		return -1;
	double total = b->cum[b->nb - 1] - a->cum[a->nb - 1];
	if (total <= 0)
		return -1;
	for (int i = 0; i < b->nb; i++)
		if (b->cum[i] - a->cum[i] >= total * q)
			return isinf(b->le[i]) ? INFINITY : b->le[i] * 1000;
	return INFINITY;
}

static int cmp_lag(const void *x, const void *y)
{
	const part_t *a = x, *b = y;
	if (a->lag != b->lag)
		return a->lag < b->lag ? 1 : -1;
	if (a->age != b->age)
		return a->age < b->age ? 1 : -1;
	return strcmp(a->name, b->name);
}

static double part_rate(const scrape_t *a, const part_t *p, double dt)
{
	for (size_t i = 0; i < a->np; i++)
		if (!strcmp(a->p[i].name, p->name))
			return dt > 0 ? (p->done - a->p[i].done) / dt : 0;
	return 0;
}

static void draw(const scrape_t *a, const scrape_t *b, const char *where, bool clear)
{
	double dt = b->t - a->t;
	struct winsize ws;
	int rows = ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_row ? ws.ws_row : TOP_ROWS_DEFAULT;
	if (clear)
		fputs("\033[H\033[2J", stdout);
	printf("%s  %s\n", b->info, where);
	printf("records/s %.0f   invocations/s %.0f   errors/s %.1f   throttles/s %.1f\n",
	       dt > 0 ? (b->records - a->records) / dt : 0,
	       dt > 0 ? (b->invocations - a->invocations) / dt : 0, dt > 0 ? (b->errors - a->errors) / dt : 0,
	       dt > 0 ? (b->throttles - a->throttles) / dt : 0);
	printf("workers %.0f/%.0f   lanes waiting %.0f   in flight %.0f   lag %s%.0f   iterator age %.3f s\n",
	       b->workers, b->workers_max, b->waiting, b->inflight, b->has_lag ? "" : "?",
	       b->has_lag ? b->lag : 0, b->age);
	double p50 = quantile_ms(a, b, 0.5), p99 = quantile_ms(a, b, 0.99), p999 = quantile_ms(a, b, 0.999);
	if (p50 < 0)
		printf("latency (timestamp -> done, last %.1f s): no records\n", dt);
	else
		printf("latency (timestamp -> done, last %.1f s): p50 <= %.3f ms  p99 <= %.3f ms  p99.9 <= "
		       "%.3f ms\n",
		       dt, p50, p99, p999);
	printf("\n%-40s %12s %12s %12s %10s\n", "PARTITION", "LAG", "AGE s", "RECORDS/s", "IN FLIGHT");
	part_t *sorted = malloc(b->np * sizeof(*sorted));
	if (!sorted)
		return;
	memcpy(sorted, b->p, b->np * sizeof(*sorted));
	qsort(sorted, b->np, sizeof(*sorted), cmp_lag);
	size_t show = rows > 8 ? (size_t)rows - 8 : 1;
	for (size_t i = 0; i < b->np && i < show; i++) {
		const part_t *p = &sorted[i];
		char lag[32];
		if (p->lag > 0)
			snprintf(lag, sizeof(lag), "%.0f", p->lag - 1);
		else
			snprintf(lag, sizeof(lag), "?");
		printf("%-40s %12s %12.3f %12.0f %10.0f\n", p->name, lag, p->age, part_rate(a, p, dt),
		       p->inflight);
	}
	if (b->np > show)
		printf("... %zu more partitions\n", b->np - show);
	free(sorted);
	fflush(stdout);
}

static int take(scrape_t *s, const char *host, const char *port)
{
	char err[512];
	char *body = http_get(host, port, err, sizeof(err));
	if (!body) {
		fprintf(stderr, "spate top: %s\n", err);
		return -1;
	}
	s->t = mono_s();
	parse(s, body);
	free(body);
	return 0;
}

static void scrape_reset(scrape_t *s)
{
	part_t *p = s->p;
	size_t cap = s->cap;
	memset(s, 0, sizeof(*s));
	s->p = p;
	s->cap = cap;
}

/* Wait up to sec seconds; true when q was typed (only on a terminal). */
static bool wait_or_quit(double sec)
{
	struct pollfd pf = {0, POLLIN, 0};
	bool tty = isatty(0);
	int n = poll(&pf, tty ? 1 : 0, (int)(sec * 1000));
	if (n > 0 && tty) {
		char c;
		if (read(0, &c, 1) == 1 && (c == 'q' || c == 'Q'))
			return true;
	}
	return false;
}

int spate_cmd_top(int argc, char **argv)
{
	const char *addr = "127.0.0.1:9464";
	double interval = 1;
	bool once = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(usage_text, stdout);
			return 0;
		} else if (!strcmp(argv[i], "--once"))
			once = true;
		else if (!strcmp(argv[i], "--interval") && i + 1 < argc) {
			char *end;
			interval = strtod(argv[++i], &end);
			if (*end || !(interval >= 0.1 && interval <= 3600)) {
				fprintf(stderr, "spate top: --interval: \"%s\" is not 0.1 to 3600 seconds\n",
				        argv[i]);
				return 2;
			}
		} else if (argv[i][0] != '-')
			addr = argv[i];
		else {
			fprintf(stderr, "spate top: unknown option \"%s\" (see --help)\n", argv[i]);
			return 2;
		}
	}
	char host[256];
	const char *colon = strrchr(addr, ':');
	if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof(host) || !colon[1]) {
		fprintf(stderr, "spate top: \"%s\" is not ADDR:PORT\n", addr);
		return 2;
	}
	size_t hl = (size_t)(colon - addr);
	if (addr[0] == '[' && addr[hl - 1] == ']')
		memcpy(host, addr + 1, hl -= 2);
	else
		memcpy(host, addr, hl);
	host[hl] = 0;
	const char *port = colon + 1;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* q quits without Enter: the terminal's line mode is off while top runs */
	struct termios saved;
	bool raw = !once && isatty(0) && tcgetattr(0, &saved) == 0;
	if (raw) {
		struct termios t = saved;
		t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		tcsetattr(0, TCSANOW, &t);
	}
	scrape_t s[2];
	memset(s, 0, sizeof(s));
	int cur = 0, rc = 0;
	if (take(&s[cur], host, port))
		rc = 1;
	while (!rc && !top_stop) {
		if (wait_or_quit(interval))
			break;
		if (top_stop)
			break;
		scrape_reset(&s[cur ^ 1]);
		if (take(&s[cur ^ 1], host, port)) {
			rc = 1;
			break;
		}
		cur ^= 1;
		draw(&s[cur ^ 1], &s[cur], addr, !once && isatty(1));
		if (once)
			break;
	}
	if (raw)
		tcsetattr(0, TCSANOW, &saved);
	free(s[0].p);
	free(s[1].p);
	return rc;
}
