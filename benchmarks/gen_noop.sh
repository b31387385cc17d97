#!/bin/bash
# gen_noop.sh - steady-state records/s (first to last record) of gen -> noop with 1 and 2
# workers, interleaved, median of N runs each (the machine is shared and noisy: compare
# within one invocation only).
# usage: benchmarks/gen_noop.sh [SPATE] [RUNS] [RECORDS]
set -euo pipefail
spate=${1:-build/cli/spate}
runs=${2:-5}
records=${3:-20000000}
declare -A rates
for i in $(seq 1 "$runs"); do
	for w in 1 2; do
		r=$("$spate" run -X source=gen -X gen.kind=bytes -X gen.value.bytes=100 -X gen.records="$records" \
			-X gen.partitions=8 -X handler=noop -X batch.size=1000 -X max.concurrency="$w" -X min.concurrency="$w" \
			-X stop.at.end=true | awk '$1=="records_per_s"{print $2}')
		rates[$w]="${rates[$w]:-} $r"
		echo "run $i workers $w: $r records/s" >&2
	done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
m1=$(echo "${rates[1]}" | median)
m2=$(echo "${rates[2]}" | median)
echo "gen->noop records=$records partitions=8 batch.size=1000 value=100B"
echo "workers=1 median_records_per_s=$m1 runs:${rates[1]}"
echo "workers=2 median_records_per_s=$m2 runs:${rates[2]}"
awk -v a="$m1" -v b="$m2" 'BEGIN{printf "ratio 2/1 = %.2f\n", b/a}'
