#!/bin/bash
# log_produce.sh - append throughput of the embedded log: `spate produce --gen bytes`
# into a fresh log, median records/s and MB/s of N runs for two fsync policies
# (flush.records=10000, the default, and flush.ms=0: fsync at every send of 1024
# records). The disk decides most of it: compare within one invocation only.
# usage: benchmarks/log_produce.sh [SPATE] [RUNS] [RECORDS] [VALUE_BYTES] [PARTITIONS]
set -euo pipefail
spate=${1:-build/cli/spate}
runs=${2:-3}
records=${3:-2000000}
value=${4:-100}
parts=${5:-4}
dir=$(mktemp -d /tmp/spate-bench-log-XXXXXX)
trap 'rm -rf "$dir"' EXIT
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
declare -A rates mbs
policies="default flush_every_send"
for i in $(seq 1 "$runs"); do
	for p in $policies; do
		rm -rf "$dir/log"
		extra=()
		[ "$p" = flush_every_send ] && extra=(-X flush.ms=0)
		t0=$(date +%s.%N)
		"$spate" produce "$dir/log" --partitions "$parts" --gen bytes --records "$records" \
			--value-bytes "$value" --keys 100000 "${extra[@]}" </dev/null
		t1=$(date +%s.%N)
		bytes=$(du -sb "$dir/log" | awk '{print $1}')
		r=$(awk -v n="$records" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", n/(b-a)}')
		m=$(awk -v n="$bytes" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", n/(b-a)/1e6}')
		rates[$p]="${rates[$p]:-} $r"
		mbs[$p]="${mbs[$p]:-} $m"
		echo "run $i $p: $r records/s, $m MB/s" >&2
	done
done
echo "log produce: records=$records value=${value}B partitions=$parts (segment files on $(df -T "$dir" | awk 'NR==2{print $2}'))"
for p in $policies; do
	echo "$p median_records_per_s=$(echo "${rates[$p]}" | median) median_MB_per_s=$(echo "${mbs[$p]}" | median) runs:${rates[$p]}"
done
