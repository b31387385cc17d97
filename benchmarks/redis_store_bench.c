/* redis_store_bench.c - checkpoint writes per second through a store with leases given
 * by URI: store=redis:// (each write one Lua script conditional on owner and counter) or
 * store=dynamodb:TABLE (each write one conditional UpdateItem).
 * usage: redis_store_bench URI SECONDS PARTITIONS
 * Saves PARTITIONS checkpoints per save() call, over and over for SECONDS, and prints
 * "writes_per_s N". benchmarks/redis_store.sh runs it next to redis-benchmark,
 * benchmarks/dynamodb_store.sh next to a plain UpdateItem loop against dynalite. */
#include "sp_registry.h"
#include "sp_spi.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s URI SECONDS PARTITIONS\n", argv[0]);
		return 2;
	}
	int secs = atoi(argv[2]), np = atoi(argv[3]);
	if (secs < 1 || np < 1 || np > 1024)
		return 2;
	sp_store_t st;
	char err[1400];
	if (sp_store_open_uri_ns(argv[1], "bench", NULL, false, &st, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	sp_store_entry_t *ents = calloc((size_t)np, sizeof(*ents));
	char(*names)[32] = calloc((size_t)np, 32);
	int *rcs = calloc((size_t)np, sizeof(int));
	for (int i = 0; i < np; i++) {
		snprintf(names[i], 32, "log/bench/%d", i);
		sp_lease_t got;
		if (st.ops->lease_acquire(&st, names[i], "bench", NULL, true, 3600000, &got, err,
		                          sizeof(err))) {
			/* a lease left by an earlier run: start over */
			st.ops->reset(&st, NULL, err, sizeof(err));
			st.ops->close(&st);
			fprintf(stderr, "stale namespace reset; run again\n");
			return 1;
		}
		ents[i] = (sp_store_entry_t){
		    .name = names[i], .owner = "bench", .counter = got.counter, .rc = &rcs[i]};
	}
	uint64_t writes = 0, pos = 0;
	int64_t t0 = sp_now_ms(), end = t0 + (int64_t)secs * 1000;
	while (sp_now_ms() < end) {
		pos++;
		for (int i = 0; i < np; i++)
			ents[i].ckpt = (sp_ckpt_t){.after = sp_pos(pos)};
		if (st.ops->save(&st, ents, (size_t)np, err, sizeof(err))) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		writes += (uint64_t)np;
	}
	double s = (double)(sp_now_ms() - t0) / 1000.0;
	printf("writes_per_s %.0f\n", (double)writes / s);
	st.ops->reset(&st, NULL, err, sizeof(err));
	st.ops->close(&st);
	free(ents);
	free(names);
	free(rcs);
	return 0;
}
