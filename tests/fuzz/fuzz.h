/* fuzz.h - what the libFuzzer harnesses of tests/fuzz share.
 *
 * Each harness is one C file with LLVMFuzzerTestOneInput (built by the fuzz build,
 * -Dfuzz=true; docs/testing.md). The parsers of files are reached the way spate reaches
 * them, through a path: fuzz_dir() is a private scratch directory (on tmpfs when there is
 * one), made once per process and removed at its exit, and fuzz_write() puts the input
 * there as a file. FUZZ_CHECK is the harnesses' oracle: a broken property aborts with
 * the line, so libFuzzer keeps the input as a crash like any sanitizer finding.
 */
#ifndef SPATE_TESTS_FUZZ_FUZZ_H
#define SPATE_TESTS_FUZZ_FUZZ_H

#include <dirent.h>
#include <sanitizer/common_interface_defs.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Printed through the sanitizers' report (a "SUMMARY:" line), which reaches the terminal
 * also when libFuzzer's -close_fd_mask closed stderr. */
#define FUZZ_CHECK(cond)                                                                                     \
	do {                                                                                                 \
		if (!(cond)) {                                                                               \
			char msg_[512];                                                                      \
			snprintf(msg_, sizeof(msg_), "fuzz property failed at %s:%d: %s", __FILE__,          \
			         __LINE__, #cond);                                                           \
			__sanitizer_report_error_summary(msg_);                                              \
			abort();                                                                             \
		}                                                                                            \
	} while (0)

static char fuzz_dir_path[256];

/* Remove what the harness left in its scratch directory (files and one level of folders). */
static void fuzz_dir_remove(void)
{
	DIR *d = opendir(fuzz_dir_path);
	struct dirent *de;
	char p[512];
	while (d && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", fuzz_dir_path, de->d_name);
		if (unlink(p) < 0) {
			DIR *sub = opendir(p);
			struct dirent *se;
			char q[1024];
			while (sub && (se = readdir(sub)))
				if (strcmp(se->d_name, ".") && strcmp(se->d_name, "..")) {
					snprintf(q, sizeof(q), "%s/%s", p, se->d_name);
					unlink(q);
				}
			if (sub)
				closedir(sub);
			rmdir(p);
		}
	}
	if (d)
		closedir(d);
	rmdir(fuzz_dir_path);
}

/* Remove the files in dir (not its folders): a harness starts each input from the same
 * state, whatever the last one left. */
static inline void fuzz_clear(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char p[1024];
	while (d && (de = readdir(d)))
		if (de->d_type != DT_DIR) {
			snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
			unlink(p);
		}
	if (d)
		closedir(d);
}

/* The scratch directory, made at the first call. */
static inline const char *fuzz_dir(void)
{
	if (fuzz_dir_path[0])
		return fuzz_dir_path;
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(fuzz_dir_path, sizeof(fuzz_dir_path), "%s/spate-fuzz.XXXXXX", base);
	if (!mkdtemp(fuzz_dir_path)) {
		perror("fuzz: mkdtemp");
		abort();
	}
	atexit(fuzz_dir_remove);
	return fuzz_dir_path;
}

/* Write len bytes at path (replacing it). Aborts when it cannot: that is no finding. */
static inline void fuzz_write(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (len && write(fd, buf, len) != (ssize_t)len) || close(fd) < 0) {
		perror(path);
		abort();
	}
}

#endif /* SPATE_TESTS_FUZZ_FUZZ_H */
