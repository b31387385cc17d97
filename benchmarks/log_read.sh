#!/bin/bash
# log_read.sh - read throughput of the embedded log as a source: `spate run` with
# source=log:DIR, handler=noop, stop.at.end=true over a log made once with
# `spate produce --gen bytes`, median records/s (first to last record) of N runs, with
# io_uring and with the pread fallback (SPATE_LOG_NO_URING=1), interleaved. The log is
# in the page cache after the first run: this measures the reader and the engine, not
# the disk. Compare within one invocation only.
# usage: benchmarks/log_read.sh [SPATE] [RUNS] [RECORDS] [VALUE_BYTES] [PARTITIONS]
set -euo pipefail
spate=${1:-build/cli/spate}
runs=${2:-5}
records=${3:-10000000}
value=${4:-100}
parts=${5:-8}
dir=$(mktemp -d /tmp/spate-bench-log-XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$spate" produce "$dir/log" --partitions "$parts" --gen bytes --records "$records" \
	--value-bytes "$value" --keys 100000 </dev/null
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
declare -A rates
for i in $(seq 0 "$runs"); do
	for mode in uring pread; do
		env=()
		[ "$mode" = pread ] && env=(SPATE_LOG_NO_URING=1)
		r=$(env "${env[@]}" "$spate" run -X source=log:"$dir/log" -X handler=noop -X store=none -X batch.size=1000 \
			-X max.concurrency=2 -X stop.at.end=true -X log.level=error |
			awk '$1=="records_per_s"{print $2}')
		[ "$i" = 0 ] && continue # warm-up: fills the page cache
		rates[$mode]="${rates[$mode]:-} $r"
		echo "run $i $mode: $r records/s" >&2
	done
done
echo "log -> noop: records=$records value=${value}B partitions=$parts batch.size=1000 workers=2"
for mode in uring pread; do
	echo "$mode median_records_per_s=$(echo "${rates[$mode]}" | median) runs:${rates[$mode]}"
done
