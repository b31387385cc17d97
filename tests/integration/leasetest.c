/* leasetest.c - the lease integration tests' shared helpers (leasetest.h). */
#include "tests/integration/leasetest.h"

#include "tests/common/util.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool lt_wait_for(bool (*cond)(void *), void *arg, int ms)
{
	int64_t until = t_now_ms() + ms;
	while (t_now_ms() < until) {
		if (cond(arg))
			return true;
		t_sleep_ms(100);
	}
	return cond(arg);
}

enum { LT_MAX_ACQ = 4096 };

struct acq {
	char part[128], owner[32];
	uint64_t counter;
	int64_t done;
};

int lt_check_audit(const char *dir, const char *const *whos, int n)
{
	static struct acq acqs[LT_MAX_ACQ];
	int na = 0;
	for (int k = 0; k < n; k++) {
		char path[400];
		snprintf(path, sizeof(path), "%s/%s.err", dir, whos[k]);
		char *buf = t_read_file(path, NULL);
		cr_assert(buf, "%s", path);
		for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n")) {
			struct acq a;
			if (na < LT_MAX_ACQ &&
			    sscanf(l,
			           "spate: debug: lease audit: acquire %127s owner=%31s counter=%" SCNu64
			           " done=%" SCNd64,
			           a.part, a.owner, &a.counter, &a.done) == 4)
				acqs[na++] = a;
		}
		free(buf);
	}
	cr_assert_gt(na, 0, "no acquire in the audit trail");
	int writes = 0;
	for (int k = 0; k < n; k++) {
		char path[400];
		snprintf(path, sizeof(path), "%s/%s.err", dir, whos[k]);
		char *buf = t_read_file(path, NULL);
		for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n")) {
			char part[128], owner[32], at[200], res[32];
			uint64_t ctr;
			int64_t sent;
			if (sscanf(l,
			           "spate: debug: lease audit: checkpoint %127s owner=%31s counter=%" SCNu64
			           " at=%199s sent=%" SCNd64 ": %31s",
			           part, owner, &ctr, at, &sent, res) != 6 ||
			    strcmp(res, "written"))
				continue;
			writes++;
			for (int j = 0; j < na; j++)
				cr_assert(!(!strcmp(acqs[j].part, part) && strcmp(acqs[j].owner, owner) &&
				            acqs[j].counter > ctr && acqs[j].done < sent),
				          "%s wrote a checkpoint of %s (counter %" PRIu64 ", sent at %" PRId64
				          ") after %s acquired it with counter %" PRIu64 " (at %" PRId64 ")",
				          owner, part, ctr, sent, acqs[j].owner, acqs[j].counter,
				          acqs[j].done);
		}
		free(buf);
	}
	return writes;
}
