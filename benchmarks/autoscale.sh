#!/bin/bash
# autoscale.sh - the autoscaler's timing, which tests/engine/test_autoscale.c checks only
# as behaviour (it scales up, it goes back to min.concurrency):
#  - scale up: gen 300000 records, handler=sleep:2 per batch, max.concurrency=16: when the
#    decision log first shows 12 or more workers, and the handler calls per ms against
#    max.concurrency=1 (gen 100000);
#  - scale down: a burst of 20000 records into an embedded log read with min.concurrency=0,
#    scale.down.idle.ms=300: the time from the burst's last record handled to zero
#    workers, from stats lines every 50 ms (so +-50 ms).
# usage: benchmarks/autoscale.sh [SPATE] [RUNS]   (medians of RUNS runs, default 3)
set -euo pipefail
spate=${1:-build/cli/spate}
runs=${2:-3}
dir=$(mktemp -d /tmp/spate-autoscale-XXXXXX)
trap 'rm -rf "$dir"' EXIT
field() { sed -n "s/^$1 //p" "$2" | head -1; }
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
for r in $(seq "$runs"); do
	"$spate" run -X source=gen -X gen.partitions=16 -X gen.records=300000 -X handler=sleep:2 \
		-X max.concurrency=16 -X stop.at.end=true -X log.level=debug >"$dir/o16" 2>"$dir/e16"
	"$spate" run -X source=gen -X gen.partitions=16 -X gen.records=100000 -X handler=sleep:2 \
		-X max.concurrency=1 -X stop.at.end=true >"$dir/o1" 2>/dev/null
	sed -n -E 's/.*autoscale: t=([0-9]+)ms workers [0-9]+ -> ([0-9]+).*/\1 \2/p' "$dir/e16" |
		awk '$2 >= 12 {print $1; exit}' >>"$dir/reach"
	awk -v b16="$(field batches "$dir/o16")" -v s16="$(field first_to_last_s "$dir/o16")" \
		-v b1="$(field batches "$dir/o1")" -v s1="$(field first_to_last_s "$dir/o1")" \
		'BEGIN {printf "%.2f\n", (b16 / s16) / (b1 / s1)}' >>"$dir/ratio"

	rm -rf "$dir/log" "$dir/stats"
	"$spate" log create "$dir/log" --partitions 4 >/dev/null
	"$spate" run -X source=log:"$dir/log" -X handler=sleep:1 -X batch.size=10 -X min.concurrency=0 \
		-X max.concurrency=8 -X scale.down.idle.ms=300 -X stats.interval.ms=50 \
		-X stats.file="$dir/stats" -X log.level=error >/dev/null &
	pid=$!
	sleep 1
	seq 20000 | sed 's/^/k /' | "$spate" produce "$dir/log" --key-separator ' '
	for _ in $(seq 600); do
		grep -q '"records":20000,' "$dir/stats" 2>/dev/null &&
			tail -1 "$dir/stats" | grep -q '"workers_active":0,' && break
		sleep 0.1
	done
	kill -TERM $pid
	wait $pid || true
	sed -e 's/[{}"]//g' -e 's/,/ /g' "$dir/stats" | awk '{
		for (i = 1; i <= NF; i++) { split($i, kv, ":"); v[kv[1]] = kv[2] }
		if (done == "" && v["records"] >= 20000) done = v["t_ms"]
		if (done != "" && v["workers_active"] == 0) { print v["t_ms"] - done; exit }
	}' >>"$dir/down"
done
echo "autoscale: reached 12 workers after $(median <"$dir/reach") ms (median of $runs; the decision log's t)"
echo "autoscale: handler calls/ms, max.concurrency 16 over 1: $(median <"$dir/ratio")x"
echo "autoscale: scale down to 0 after the last record: $(median <"$dir/down") ms (scale.down.idle.ms=300, stats every 50 ms)"
