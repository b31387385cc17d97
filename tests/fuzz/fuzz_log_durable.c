/* fuzz_log_durable.c - the log's small text files: a partition's `durable` file and the
 * log's metadata file (connectors/log/segment.c).
 *
 * The input is written as DIR/0/durable and as DIR/spate-log.meta, then read with
 * sp_log_durable_read and sp_log_meta_read, as the reader, the writer and `spate log`
 * read them. The oracle: a durable file that reads back has next >= seg, and what
 * sp_log_durable_write writes of it reads back the same; a metadata file that reads back
 * says 1..SP_LOG_MAX_PARTITIONS partitions; errors name the file.
 */
#include "connectors/log/log.h"
#include "fuzz.h"

#include <fcntl.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char dir[512], pdir[600], path[700], err[512];
	snprintf(dir, sizeof(dir), "%s/log", fuzz_dir());
	snprintf(pdir, sizeof(pdir), "%s/0", dir);
	mkdir(dir, 0700);
	mkdir(pdir, 0700);

	snprintf(path, sizeof(path), "%s/%s", pdir, SP_LOG_DURABLE_NAME);
	fuzz_write(path, data, size);
	sp_log_durable_t d;
	err[0] = 0;
	int rc = sp_log_durable_read(pdir, &d, err, sizeof(err));
	FUZZ_CHECK(rc == SPATE_OK || (rc == SPATE_ERR_CORRUPT && strstr(err, path)));
	if (rc == SPATE_OK) {
		FUZZ_CHECK(d.next >= d.seg);
		int dfd = open(pdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		FUZZ_CHECK(dfd >= 0);
		FUZZ_CHECK(sp_log_durable_write(dfd, pdir, &d, err, sizeof(err)) == SPATE_OK);
		close(dfd);
		sp_log_durable_t d2;
		FUZZ_CHECK(sp_log_durable_read(pdir, &d2, err, sizeof(err)) == SPATE_OK);
		FUZZ_CHECK(d2.seg == d.seg && d2.len == d.len && d2.next == d.next);
	}

	snprintf(path, sizeof(path), "%s/%s", dir, SP_LOG_META_NAME);
	fuzz_write(path, data, size);
	int parts = 0;
	err[0] = 0;
	rc = sp_log_meta_read(dir, &parts, err, sizeof(err));
	FUZZ_CHECK(rc == SPATE_OK ? parts >= 1 && parts <= SP_LOG_MAX_PARTITIONS : strstr(err, path) != NULL);
	return 0;
}
