#!/bin/bash
# push_durable.sh - durable pushes (spate_push into the embedded log with log.push=true,
# each call returning once its records are fdatasync'd) from 1, 4 and 16 threads, one
# 100-byte record per call, against `spate produce --gen bytes` into a log on the same
# disk (flush.records=10000, the default; and flush.ms=0: an fsync per send of 1024
# records). Prints the median of RUNS runs of each, p50/p99 of the push call, and the
# ratios to produce, all from this one invocation (the disk and the machine's load decide
# most of it: compare within one invocation only). docs/embedding.md has the figures.
# usage: benchmarks/push_durable.sh [PUSH_DURABLE] [SPATE] [RUNS] [SECONDS] [PRODUCE_RECORDS]
set -euo pipefail
bench=${1:-build/benchmarks/push_durable}
spate=${2:-build/cli/spate}
runs=${3:-5}
secs=${4:-3}
records=${5:-1000000}
value=100
parts=4
dir=$(mktemp -d "${TMPDIR:-/tmp}/spate-bench-push-XXXXXX")
trap 'rm -rf "$dir"' EXIT
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
field() { awk -v f="$1" '{for (i = 1; i < NF; i++) if ($i == f) print $(i + 1)}'; }
declare -A rate p50 p99 prod
threads="1 4 16"
# runs interleaved (1, 4, 16, produce, produce flush.ms=0; again), so a burst of load on
# the shared machine hits every configuration alike
for r in $(seq 1 "$runs"); do
	for t in $threads; do
		rm -rf "$dir/log"
		line=$("$bench" "$dir/log" "$t" "$secs" "$value" "$parts" 1)
		echo "run $r threads $t: $line" >&2
		rate[$t]="${rate[$t]:-} $(echo "$line" | field records_per_s)"
		p50[$t]="${p50[$t]:-} $(echo "$line" | field p50_us)"
		p99[$t]="${p99[$t]:-} $(echo "$line" | field p99_us)"
	done
	for p in default flush_ms_0; do
		rm -rf "$dir/log"
		extra=()
		[ "$p" = flush_ms_0 ] && extra=(-X flush.ms=0)
		t0=$(date +%s.%N)
		"$spate" produce "$dir/log" --partitions "$parts" --gen bytes --records "$records" \
			--value-bytes "$value" --keys 100000 "${extra[@]}" </dev/null >/dev/null
		t1=$(date +%s.%N)
		x=$(awk -v n="$records" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", n/(b-a)}')
		echo "run $r produce $p: $x records/s" >&2
		prod[$p]="${prod[$p]:-} $x"
	done
done
fs=$(df -T "$dir" | awk 'NR==2{print $2}')
echo "push durable: ${value}B records, 1 per call, $parts partitions (thread t -> t % $parts), ${secs}s per run, $runs runs, $fs on $(df "$dir" | awk 'NR==2{print $1}')"
pd=$(echo "${prod[default]}" | median)
pf=$(echo "${prod[flush_ms_0]}" | median)
echo "produce default median_records_per_s=$pd runs:${prod[default]}"
echo "produce flush.ms=0 median_records_per_s=$pf runs:${prod[flush_ms_0]}"
for t in $threads; do
	m=$(echo "${rate[$t]}" | median)
	echo "threads $t median_records_per_s=$m median_p50_us=$(echo "${p50[$t]}" | median)" \
		"median_p99_us=$(echo "${p99[$t]}" | median)" \
		"vs_produce=$(awk -v a="$m" -v b="$pd" 'BEGIN{printf "%.4f", a/b}')" \
		"vs_produce_flush_ms_0=$(awk -v a="$m" -v b="$pf" 'BEGIN{printf "%.4f", a/b}')" \
		"runs:${rate[$t]} p99s:${p99[$t]}"
done
