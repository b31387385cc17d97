#!/bin/bash
# spin_scale.sh - CPU-bound scaling: gen -> spin:US (busy-loop per record) over 8 lanes
# with work (8 partitions), records/s with max.concurrency 1 and 2 (min = max, so the
# count is fixed), interleaved, median of N runs. On this 2-core machine the goal is a
# ratio of at least 1.6.
# usage: benchmarks/spin_scale.sh [SPATE] [RUNS] [RECORDS] [US]
set -euo pipefail
spate=${1:-build/cli/spate}
runs=${2:-5}
records=${3:-200000}
us=${4:-5}
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
declare -A rates
for i in $(seq 1 "$runs"); do
	for w in 1 2; do
		r=$("$spate" run -X source=gen -X gen.partitions=8 -X gen.records="$records" -X handler=spin:"$us" \
			-X max.concurrency="$w" -X min.concurrency="$w" -X stop.at.end=true |
			awk '$1=="records_per_s"{print $2}')
		rates[$w]="${rates[$w]:-} $r"
		echo "run $i workers $w: $r records/s" >&2
	done
done
m1=$(echo "${rates[1]}" | median)
m2=$(echo "${rates[2]}" | median)
echo "gen -> spin:$us records=$records partitions=8"
echo "workers=1 median_records_per_s=$m1 runs:${rates[1]}"
echo "workers=2 median_records_per_s=$m2 runs:${rates[2]}"
awk -v a="$m1" -v b="$m2" 'BEGIN{printf "ratio 2/1 = %.2f\n", b/a}'
