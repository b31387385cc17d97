/* test_crash_loop.c - guarantees 1 and 2 (docs/semantics.md) under kill -9.
 *
 * A pipeline reads 1,000,000 records in 8 partitions of the embedded log; its handler
 * (handler=journal:PREFIX) appends every record's partition and position to a journal,
 * fdatasync'd once per batch before the batch counts as done. The test runs it, kills it
 * with SIGKILL at 20 random moments, restarts it after each kill, and lets the 21st run
 * finish. Each run k journals into its own files DIR/j<k>.<worker>.
 *
 * While a run is alive the test samples it every 0.5-3 ms. It reads DIR/ckpt while the
 * process runs (the store replaces it by rename, so a read must see one whole version),
 * then freezes the process with SIGSTOP, reads the store again and then what the
 * journals gained since the last sample. Every position at or before either checkpoint
 * must be in some journal (guarantee 1: a checkpoint never passes a record that is not
 * DONE; the running read came first, the frozen pair is one instant). After each kill
 * the store is read again (C_k, stable: the process is dead); every line the next run
 * journals must lie after C_k (guarantee 2: only records after the last checkpoint are
 * processed again; "beginning" lets everything repeat). At the end the journals together
 * must hold every record of every partition (at-least-once), no checkpoint may ever
 * have gone backwards, and the final run must have handled less than 10% of the stream
 * (checkpoints advanced between kills instead of restarting from the beginning).
 *
 * Kill moments, chosen on the frozen state so a fast machine cannot run past them:
 *  - most kills wait until the store passes a random target in the kill's slice of the
 *    stream (2%..92.5%; so 20 kills spread over it at any speed, plain or under
 *    sanitizers), then until the run has handled a random 0-20000 records more, so a
 *    kill lands at any phase of the checkpoint cycle (mid-batch, mid-save, between
 *    saves). The process is resumed and killed 0-300 us later, live, so a kill can also
 *    cut a journal write short (the last line of such a journal has no newline);
 *  - about 1 in 6 of the first 16 is an early kill, 0-30 ms after the process starts
 *    (while it opens, loads checkpoints, seeks, saves its first checkpoint);
 *  - any run with fewer than NEAR_END_RECORDS left is killed at once, so a run that
 *    must be killed never finishes by itself.
 * The pipeline runs at a lower priority than the sampler (nice 10), so on a small
 * machine the sampler wakes on time. Timing only picks kill moments: nothing asserts on
 * time.
 *
 * The seed is printed at the start and in every assertion message; SPATE_TEST_SEED=N
 * replays the same targets and delays (the process's own timing still varies).
 * SPATE_TEST_KEEP=1 keeps the temp directory (DIR/run<k>.err holds each run's log);
 * SPATE_TEST_TRACE=1 prints every frozen sample (handled records, checkpoint) to stderr.
 * The directory is made under $TMPDIR (default /tmp).
 */
#include "engine/engine.h"
#include "tests/common/util.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NPARTS  8
#define RECORDS 1000000
#define KILLS   20
#define RUNS    (KILLS + 1)
/* How long one run may take to reach its kill target (or, the last one, to finish)
 * before the test calls it stuck. Generous for sanitizer builds on a loaded machine. */
#define RUN_TIMEOUT_MS 90000
/* Kill at once when the run has fewer than this many records left, so a fast machine
 * cannot finish the stream between two samples of a run that must be killed. */
#define NEAR_END_RECORDS 30000

/* ---- state shared with the fini (cleanup also on failure) ---------------------------- */

static char g_dir[256];
static pid_t g_child = -1;
static unsigned long long g_seed;

static void cleanup(void)
{
	if (g_child > 0) {
		kill(g_child, SIGKILL);
		while (waitpid(g_child, NULL, 0) < 0 && errno == EINTR)
			;
		g_child = -1;
	}
	const char *keep = getenv("SPATE_TEST_KEEP");
	if (g_dir[0] && !(keep && *keep && strcmp(keep, "0")))
		t_rmrf(g_dir);
}

/* Every assertion names the seed. The message's arguments are evaluated only on failure
 * (some checks run once per journal line). */
#define CHECK(cond, fmt, ...)                                                                                \
	do {                                                                                                 \
		if (!(cond))                                                                                 \
			cr_assert_fail("seed %llu (rerun: SPATE_TEST_SEED=%llu): " fmt, g_seed, g_seed,      \
			               ##__VA_ARGS__);                                                       \
	} while (0)

/* ---- PRNG (splitmix64) ----------------------------------------------------------------- */

static uint64_t g_rng;

static uint64_t rnd(void)
{
	uint64_t z = (g_rng += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* uniform in [0, 1) */
static double rnd01(void)
{
	return (double)(rnd() >> 11) / 9007199254740992.0;
}

static void sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- the log's record counts ----------------------------------------------------------- */

static int64_t g_count[NPARTS]; /* records per partition (positions 0..count-1) */

static void read_counts(const char *logdir)
{
	char *const argv[] = {(char *)t_spate_cli(), "log", "ls", (char *)logdir, NULL};
	char *out = NULL, *err = NULL;
	int rc = t_run(argv, &out, &err);
	CHECK(rc == 0, "spate log ls %s: exit %d: %s", logdir, rc, err ? err : "");
	int64_t total = 0;
	for (int p = 0; p < NPARTS; p++) {
		char pat[64];
		snprintf(pat, sizeof(pat), "partition %d: durable up to offset ", p);
		const char *s = strstr(out, pat);
		CHECK(s != NULL, "spate log ls: no line for partition %d in:\n%s", p, out);
		g_count[p] = strtoll(s + strlen(pat), NULL, 10);
		CHECK(g_count[p] > 0, "spate log ls: partition %d is empty", p);
		total += g_count[p];
	}
	CHECK(total == RECORDS, "the log holds %" PRId64 " records, produced %d", total, RECORDS);
	free(out);
	free(err);
}

/* ---- the checkpoint store, read directly ------------------------------------------------ */

typedef struct ckpt {
	int64_t after[NPARTS]; /* last DONE position; -1 for beginning or no entry */
} ckpt_t;

static int64_t ckpt_progress(const ckpt_t *c)
{
	int64_t s = 0;
	for (int p = 0; p < NPARTS; p++)
		s += c->after[p] + 1;
	return s;
}

/* Read DIR/ckpt into *c. False when the file does not exist yet (no save so far). A file
 * that exists must be whole and well-formed: saves replace it by rename. */
static bool g_store_seen; /* the file existed once: from then on it must always exist */

static bool read_ckpt(const char *path, ckpt_t *c)
{
	for (int p = 0; p < NPARTS; p++)
		c->after[p] = -1;
	size_t len;
	char *buf = t_read_file(path, &len);
	if (!buf) {
		CHECK(!g_store_seen, "%s vanished: saves must replace it by rename, never remove it", path);
		return false;
	}
	g_store_seen = true;
	char *save = NULL, *line = strtok_r(buf, "\n", &save);
	CHECK(line && !strncmp(line, "spate-checkpoints 1 ", 20), "%s: bad header line in:\n%s", path,
	      line ? line : "(empty file)");
	int entries = 0;
	bool end = false;
	while ((line = strtok_r(NULL, "\n", &save))) {
		CHECK(!end, "%s: a line after the #end line: %s", path, line);
		if (!strncmp(line, "#end ", 5)) {
			int n = -1;
			CHECK(sscanf(line, "#end entries=%d", &n) == 1 && n == entries,
			      "%s: end line \"%s\" does not match %d entries", path, line, entries);
			end = true;
			continue;
		}
		int p = -1, used = 0;
		CHECK(sscanf(line, "log/log/%d\t%n", &p, &used) == 1 && used > 0 && p >= 0 && p < NPARTS,
		      "%s: unexpected entry \"%s\"", path, line);
		const char *v = line + used;
		if (!strcmp(v, "beginning")) {
			c->after[p] = -1;
		} else {
			char *e = NULL;
			errno = 0;
			long long x = strtoll(v, &e, 10);
			CHECK(!errno && e != v && !*e && x >= 0, "%s: bad checkpoint \"%s\"", path, line);
			CHECK(x < g_count[p],
			      "%s: checkpoint of log/log/%d is %lld, past the log's last position %" PRId64,
			      path, p, x, g_count[p] - 1);
			c->after[p] = x;
		}
		entries++;
	}
	CHECK(end, "%s: no #end line: a torn checkpoint file (saves must replace it whole)", path);
	free(buf);
	return true;
}

/* ---- the journals, parsed incrementally ------------------------------------------------ */

typedef struct jfile {
	char name[64]; /* j<run>.<worker> */
	int run;
	off_t off;      /* bytes consumed up to the last complete line */
	char part[128]; /* an incomplete last line */
	size_t plen;
} jfile_t;

static jfile_t g_jf[512];
static int g_njf;
static uint8_t *g_seen[NPARTS];       /* bit per position: in some journal */
static int64_t g_contig[NPARTS];      /* positions 0..contig-1 are all in the journals */
static int64_t g_floor[RUNS][NPARTS]; /* run r may only journal positions > floor (C_{r-1}) */
static int64_t g_lines[RUNS];         /* lines journaled per run */
static int64_t g_dups;                /* lines for positions already seen */
static int g_torn;                    /* runs whose journal ends in a cut line */
static char *g_rbuf;                  /* read buffer */
#define RBUF (1 << 20)

static void journal_bad_line(const jfile_t *f, const char *s, size_t n)
{
	char tmp[160];
	size_t cl = n < sizeof(tmp) - 1 ? n : sizeof(tmp) - 1;
	memcpy(tmp, s, cl);
	tmp[cl] = 0;
	CHECK(0, "%s/%s: malformed journal line \"%s\"", g_dir, f->name, tmp);
}

/* Digits s[*i..] up to the byte stop; -1 when there are none, or anything else. */
static int64_t parse_digits(const char *s, size_t n, size_t *i, char stop)
{
	int64_t v = 0;
	size_t j = *i;
	while (j < n && s[j] >= '0' && s[j] <= '9' && j - *i < 18)
		v = v * 10 + (s[j++] - '0');
	if (j == *i || (stop ? j >= n || s[j] != stop : j != n))
		return -1;
	*i = j + (stop ? 1 : 0);
	return v;
}

/* One line "log/log/<partition> <position>" (without its newline). By hand: a sample
 * must keep up with a journal that grows by a few million lines a second. */
static void journal_line(const jfile_t *f, const char *s, size_t n)
{
	size_t i = 8;
	if (n < 8 || memcmp(s, "log/log/", 8))
		journal_bad_line(f, s, n);
	int64_t p = parse_digits(s, n, &i, ' ');
	int64_t pos = p < 0 ? -1 : parse_digits(s, n, &i, 0);
	if (p < 0 || p >= NPARTS || pos < 0)
		journal_bad_line(f, s, n);
	CHECK(pos < g_count[p], "%s/%s: log/log/%d position %" PRId64 " is past the log's end %" PRId64,
	      g_dir, f->name, (int)p, pos, g_count[p]);
	if (pos <= g_floor[f->run][p])
		CHECK(0,
		      "run %d handled log/log/%d position %" PRId64 ", but the run before it was killed with "
		      "checkpoint %" PRId64
		      " for that partition: a restart may only repeat records after the "
		      "last checkpoint (guarantee 2)",
		      f->run, (int)p, pos, g_floor[f->run][p]);
	g_lines[f->run]++;
	uint8_t bit = (uint8_t)(1u << (pos & 7));
	if (g_seen[p][pos >> 3] & bit)
		g_dups++;
	g_seen[p][pos >> 3] |= bit;
}

/* Read what f gained since the last call; whole lines only (a batch is one write(), but a
 * reader may see part of it, and a kill may cut it). */
static void journal_pull(jfile_t *f)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/%s", g_dir, f->name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	for (;;) {
		ssize_t n = pread(fd, g_rbuf, RBUF, f->off + (off_t)f->plen);
		CHECK(n >= 0, "read %s: %s", path, strerror(errno));
		if (n == 0)
			break;
		const char *s = g_rbuf, *end = g_rbuf + n;
		while (s < end) {
			const char *nl = memchr(s, '\n', (size_t)(end - s));
			if (!nl) {
				size_t rest = (size_t)(end - s);
				CHECK(f->plen + rest < sizeof(f->part),
				      "%s: a journal line longer than %zu bytes", path, sizeof(f->part));
				memcpy(f->part + f->plen, s, rest);
				f->plen += rest;
				break;
			}
			if (f->plen) {
				size_t k = (size_t)(nl - s);
				CHECK(f->plen + k < sizeof(f->part),
				      "%s: a journal line longer than %zu bytes", path, sizeof(f->part));
				memcpy(f->part + f->plen, s, k);
				journal_line(f, f->part, f->plen + k);
				f->off += (off_t)(f->plen + k + 1);
				f->plen = 0;
			} else {
				journal_line(f, s, (size_t)(nl - s));
				f->off += (off_t)(nl - s + 1);
			}
			s = nl + 1;
		}
	}
	close(fd);
}

/* Find run's journal files not seen yet (workers open them as they start). */
static void journal_discover(int run)
{
	char pfx[32];
	int pl = snprintf(pfx, sizeof(pfx), "j%d.", run);
	DIR *d = opendir(g_dir);
	CHECK(d != NULL, "opendir %s: %s", g_dir, strerror(errno));
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, pfx, (size_t)pl))
			continue;
		const char *w = de->d_name + pl;
		if (!*w || strspn(w, "0123456789") != strlen(w))
			continue;
		bool known = false;
		for (int i = 0; i < g_njf && !known; i++)
			known = !strcmp(g_jf[i].name, de->d_name);
		if (known)
			continue;
		CHECK(g_njf < (int)(sizeof(g_jf) / sizeof(g_jf[0])), "too many journal files");
		jfile_t *f = &g_jf[g_njf++];
		memset(f, 0, sizeof(*f));
		size_t nl = strlen(de->d_name);
		CHECK(nl < sizeof(f->name), "journal file name %s too long", de->d_name);
		memcpy(f->name, de->d_name, nl + 1);
		f->run = run;
	}
	closedir(d);
}

/* Bring the journals of the current run up to date and advance the contiguous prefixes.
 * (Earlier runs are dead: their files were read to the end after their kill.) */
static void journal_update(int run)
{
	journal_discover(run);
	for (int i = 0; i < g_njf; i++)
		if (g_jf[i].run == run)
			journal_pull(&g_jf[i]);
	for (int p = 0; p < NPARTS; p++)
		while (g_contig[p] < g_count[p] && (g_seen[p][g_contig[p] >> 3] & (1u << (g_contig[p] & 7))))
			g_contig[p]++;
}

/* ---- checks that tie the store to the journals ------------------------------------------ */

static ckpt_t g_last; /* the latest checkpoint seen: never goes backwards */

static void check_ckpt(const ckpt_t *c, int run, const char *when)
{
	for (int p = 0; p < NPARTS; p++) {
		CHECK(c->after[p] >= g_last.after[p],
		      "run %d, %s: the checkpoint of log/log/%d went back from %" PRId64 " to %" PRId64, run,
		      when, p, g_last.after[p], c->after[p]);
		CHECK(c->after[p] < g_contig[p],
		      "run %d, %s: the store says log/log/%d is done up to %" PRId64 ", but position %" PRId64
		      " is in no journal: a checkpoint passed a record that was not handled (guarantee 1)",
		      run, when, p, c->after[p], g_contig[p]);
	}
	g_last = *c;
}

/* ---- running spate ------------------------------------------------------------------------ */

static pid_t spawn_run(int k)
{
	char a_src[320], a_store[320], a_handler[320], out[320], err[320];
	snprintf(a_src, sizeof(a_src), "source=log:%s/log", g_dir);
	snprintf(a_store, sizeof(a_store), "store=file:%s/ckpt", g_dir);
	snprintf(a_handler, sizeof(a_handler), "handler=journal:%s/j%d", g_dir, k);
	snprintf(out, sizeof(out), "%s/run%d.out", g_dir, k);
	snprintf(err, sizeof(err), "%s/run%d.err", g_dir, k);
	char *const argv[] = {(char *)t_spate_cli(), "run", "-X", a_src, "-X", a_store, "-X", a_handler, "-X",
	                      "stop.at.end=true",
	                      /* checkpoints every 50 ms, or after 10000 DONE records, whichever comes
	                       * first: the count keeps the distance between the journals and the
	                       * store small also on machines where the stream flies */
	                      "-X", "checkpoint.interval.ms=50", "-X", "checkpoint.records=10000", "-X",
	                      "batch.size=200", "-X", "max.inflight.records=20000", "-X", "max.concurrency=2",
	                      "-X", "parallelization.factor=4", NULL};
	/* Below the sampler in priority (nice 10): on a small machine the pipeline can take
	 * every core, and a sampler that wakes late lets a run go much further than its kill
	 * target. (Only scheduling: the pipeline runs the same code.) */
	pid_t pid = t_spawn(argv, out, err, 10);
	CHECK(pid >= 0, "fork: %s", strerror(errno));
	return pid;
}

static char *run_stderr(int k)
{
	char path[320];
	snprintf(path, sizeof(path), "%s/run%d.err", g_dir, k);
	char *s = t_read_file(path, NULL);
	if (!s)
		return strdup("(no stderr)");
	size_t n = strlen(s);
	if (n > 1500) /* the end says why */
		memmove(s, s + n - 1500, 1501);
	return s;
}

static void describe_exit(int st, char *buf, size_t size)
{
	if (WIFEXITED(st))
		snprintf(buf, size, "exit %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, size, "signal %d", WTERMSIG(st));
	else
		snprintf(buf, size, "status 0x%x", st);
}

/* ---- the test ------------------------------------------------------------------------------ */

Test(integration, crash_loop, .fini = cleanup, .timeout = 280)
{
	int64_t t0 = sp_now_ms();
	const char *env_seed = getenv("SPATE_TEST_SEED");
	if (env_seed && *env_seed)
		g_seed = strtoull(env_seed, NULL, 10);
	else
		g_seed = (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 20);
	g_rng = g_seed;
	const char *tr = getenv("SPATE_TEST_TRACE");
	bool trace = tr && *tr && strcmp(tr, "0");
	cr_log_info("crash_loop: seed %llu (rerun with SPATE_TEST_SEED=%llu)", g_seed, g_seed);

	const char *tmp = getenv("TMPDIR");
	snprintf(g_dir, sizeof(g_dir), "%s/spate-crash-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	CHECK(mkdtemp(g_dir) != NULL, "mkdtemp %s: %s", g_dir, strerror(errno));

	/* 1,000,000 records in 8 partitions */
	char logdir[320], ckpath[320];
	snprintf(logdir, sizeof(logdir), "%s/log", g_dir);
	snprintf(ckpath, sizeof(ckpath), "%s/ckpt", g_dir);
	{
		char recs[32];
		snprintf(recs, sizeof(recs), "%d", RECORDS);
		char *const argv[] = {(char *)t_spate_cli(),
		                      "produce",
		                      logdir,
		                      "--partitions",
		                      "8",
		                      "--gen",
		                      "bytes",
		                      "--records",
		                      recs,
		                      "--value-bytes",
		                      "100",
		                      "--keys",
		                      "100000",
		                      NULL};
		char *err = NULL;
		int rc = t_run(argv, NULL, &err);
		CHECK(rc == 0, "spate produce: exit %d: %s", rc, err ? err : "");
		free(err);
	}
	read_counts(logdir);
	for (int p = 0; p < NPARTS; p++) {
		g_seen[p] = calloc((size_t)(g_count[p] + 7) / 8, 1);
		CHECK(g_seen[p] != NULL, "out of memory");
		g_last.after[p] = -1;
		g_floor[0][p] = -1;
	}
	g_rbuf = malloc(RBUF);
	CHECK(g_rbuf != NULL, "out of memory");

	/* The kills. Kill k aims at a random point in its slice of the stream, judged by the
	 * checkpoint store; the last slice starts at 90.5%, so the final run has at most 9.5%
	 * left. About 1 in 6 of the first 16 kills is an early one instead. */
	int early_kills = 0, advanced = 0, near_end_kills = 0;
	int64_t samples = 0, prev_progress = 0, max_lag = 0;
	for (int k = 0; k < RUNS; k++) {
		bool final = k == KILLS;
		bool early = !final && k < 16 && rnd01() < 1.0 / 6;
		double lo = 0.02 + 0.0466 * k; /* k = 19: 0.905 .. 0.925 */
		int64_t target = (int64_t)((lo + 0.02 * rnd01()) * RECORDS);
		if (target <= prev_progress)
			target = prev_progress + 1000; /* the previous kill came late: still advance */
		/* how far past the target (in records this run handles) the kill comes: any phase
		 * of the checkpoint cycle (saves come every 10000 records or 50 ms) */
		int64_t extra_recs = (int64_t)(rnd01() * 20000);
		int64_t early_ms = (int64_t)(rnd01() * 30); /* an early kill: this long after start */
		int64_t pause_us_lo = 500, pause_us_span = 2500;

		int64_t start = sp_now_ms(), armed_at = -1;
		g_child = spawn_run(k);
		int st = 0;
		bool exited = false, near_kill = false;
		for (;;) {
			sleep_us(pause_us_lo + (long)(rnd01() * (double)pause_us_span));
			/* A sample. The store is read while the process runs (a read must always see a
			 * whole file), then the process is frozen with SIGSTOP and the store and the
			 * journals are read again: the checkpoint read first can only be behind what
			 * the journals hold afterwards, and the frozen pair is one instant. Freezing
			 * also means the kill decision below is made on the process's exact state, so
			 * a fast machine cannot run past the end of the stream meanwhile. */
			ckpt_t live, frozen;
			bool have_live = read_ckpt(ckpath, &live);
			kill(g_child, SIGSTOP);
			pid_t w;
			while ((w = waitpid(g_child, &st, WUNTRACED)) < 0 && errno == EINTR)
				;
			CHECK(w == g_child, "waitpid: %s", strerror(errno));
			if (!WIFSTOPPED(st)) {
				exited = true;
				g_child = -1;
				break;
			}
			bool have = read_ckpt(ckpath, &frozen);
			journal_update(k);
			samples++;
			char when[64];
			if (have_live) {
				snprintf(when, sizeof(when), "sample %" PRId64 " (read while running)",
				         samples);
				check_ckpt(&live, k, when);
			}
			if (have) {
				snprintf(when, sizeof(when), "sample %" PRId64 " (process stopped)", samples);
				check_ckpt(&frozen, k, when);
				int64_t lag = prev_progress + g_lines[k] - ckpt_progress(&frozen);
				if (trace)
					fprintf(stderr,
					        "crash_loop: run %d t=%" PRId64 "ms handled=%" PRId64
					        " ckpt=%" PRId64 "\n",
					        k, sp_now_ms() - start, prev_progress + g_lines[k],
					        ckpt_progress(&frozen));
				if (lag > max_lag)
					max_lag = lag;
			}
			if (final)
				CHECK(sp_now_ms() - start < RUN_TIMEOUT_MS,
				      "the final run did not finish in %d ms; stderr:\n%s", RUN_TIMEOUT_MS,
				      run_stderr(k));
			else
				CHECK(sp_now_ms() - start < RUN_TIMEOUT_MS,
				      "run %d did not reach its kill target %" PRId64
				      " in %d ms (checkpoint progress %" PRId64 "); stderr:\n%s",
				      k, target, RUN_TIMEOUT_MS, have ? ckpt_progress(&frozen) : 0,
				      run_stderr(k));
			/* this run's progress: where it started plus what it journaled (one line per
			 * record: nothing fails, so a run handles each record once) */
			int64_t handled = prev_progress + g_lines[k];
			if (!final && !early && armed_at < 0 && have && ckpt_progress(&frozen) >= target)
				armed_at = handled;
			bool due = early ? sp_now_ms() - start >= early_ms
			                 : armed_at >= 0 && handled - armed_at >= extra_recs;
			bool near_end = RECORDS - handled < NEAR_END_RECORDS;
			kill(g_child, SIGCONT);
			if (!final && (due || near_end)) {
				near_kill = !due && !early;
				near_end_kills += near_kill;
				/* let it run a moment, so the kill does not always find every thread where
				 * SIGSTOP left it (a write cut short is one thing only a live kill can do) */
				sleep_us((long)(rnd01() * 300));
				kill(g_child, SIGKILL);
				while ((w = waitpid(g_child, &st, 0)) < 0 && errno == EINTR)
					;
				g_child = -1;
				break;
			}
		}

		char how[64];
		describe_exit(st, how, sizeof(how));
		if (final) {
			CHECK(exited && WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "the final run (after %d kills) ended with %s; stderr:\n%s", KILLS, how,
			      run_stderr(k));
		} else {
			CHECK(!exited,
			      "run %d ended by itself (%s) before its kill (target %" PRId64
			      " records checkpointed, %s kill); stderr:\n%s",
			      k, how, target, early ? "early" : "targeted", run_stderr(k));
			CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "run %d: expected SIGKILL, got %s",
			      k, how);
		}

		/* The process is gone: its journals and the store are final. */
		journal_update(k);
		for (int i = 0; i < g_njf; i++)
			if (g_jf[i].run == k && g_jf[i].plen) {
				CHECK(!final, "the final run's journal %s ends in a cut line", g_jf[i].name);
				g_torn++;
			}
		ckpt_t c;
		read_ckpt(ckpath, &c); /* missing: every kill so far came before the first save */
		char when[64];
		snprintf(when, sizeof(when), final ? "at the end" : "after its kill");
		check_ckpt(&c, k, when);
		int64_t progress = ckpt_progress(&c);
		if (!final) {
			if (progress > prev_progress)
				advanced++;
			if (early)
				early_kills++;
			else if (!near_kill)
				CHECK(progress >= target,
				      "run %d was killed once the store said %" PRId64
				      " records were done, but "
				      "after the kill it says %" PRId64,
				      k, target, progress);
			for (int p = 0; p < NPARTS; p++)
				g_floor[k + 1][p] = c.after[p];
		} else {
			for (int p = 0; p < NPARTS; p++)
				CHECK(c.after[p] == g_count[p] - 1,
				      "after the final run the checkpoint of log/log/%d is %" PRId64
				      ", not its last "
				      "position %" PRId64,
				      p, c.after[p], g_count[p] - 1);
		}
		cr_log_info("crash_loop: run %2d %-8s after %5" PRId64 " ms: journaled %7" PRId64
		            ", checkpoint %7" PRId64 " (%.1f%%)",
		            k,
		            final   ? "finished"
		            : early ? "early"
		                    : "killed",
		            sp_now_ms() - start, g_lines[k], progress, 100.0 * (double)progress / RECORDS);
		prev_progress = progress;
	}

	/* at-least-once: every record of every partition is in some journal */
	for (int p = 0; p < NPARTS; p++)
		CHECK(g_contig[p] == g_count[p],
		      "log/log/%d position %" PRId64 " (of %" PRId64 ") was never handled (guarantee 1)", p,
		      g_contig[p], g_count[p]);
	/* checkpoints advanced between kills, so the last run had little left */
	CHECK(g_lines[KILLS] < RECORDS / 10,
	      "the final run handled %" PRId64 " records, not less than 10%% of %d: checkpoints did not "
	      "advance between kills",
	      g_lines[KILLS], RECORDS);
	CHECK(advanced >= KILLS - early_kills - near_end_kills,
	      "only %d of %d kills found the checkpoint advanced (%d early, %d near the end)", advanced,
	      KILLS, early_kills, near_end_kills);

	cr_log_info(
	    "crash_loop: seed %llu: %d kills (%d early, %d near the end, %d advanced the checkpoint), "
	    "%" PRId64 " samples, journals ahead of the store by up to %" PRId64 " records, %" PRId64
	    " duplicates, %d cut journal lines, final run %" PRId64 " records, %" PRId64 " ms",
	    g_seed, KILLS, early_kills, near_end_kills, advanced, samples, max_lag, g_dups, g_torn,
	    g_lines[KILLS], sp_now_ms() - t0);
	for (int p = 0; p < NPARTS; p++)
		free(g_seen[p]);
	free(g_rbuf);
}
