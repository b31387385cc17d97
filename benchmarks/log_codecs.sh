#!/bin/bash
# log_codecs.sh - the embedded log's codecs on the fraud demo stream: bytes on disk of
# `spate produce DIR --gen fraud --records N -X compression=C` for every codec against
# none (Kafka's default level of each), and the read rate of the lz4 and zstd logs
# against the uncompressed one: `spate run -X source=log:DIR -X handler=noop
# -X stop.at.end=true -X store=none`, records/s (first to last record) as the summary
# says, the median of RUNS runs, the three logs interleaved run by run after one warm-up
# run each (the logs are in the page cache: this measures decompression, parsing and the
# engine, not the disk). Also `spate log verify` per log, once (wall time). Compare
# within one invocation only.
# usage: benchmarks/log_codecs.sh [SPATE] [RUNS] [RECORDS]
set -euo pipefail
spate=${1:-build/cli/spate}
runs=${2:-5}
records=${3:-1000000}
dir=$(mktemp -d /tmp/spate-bench-codecs-XXXXXX)
trap 'rm -rf "$dir"' EXIT
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
now_ms() { date +%s%3N; }
declare -A bytes ms
for c in none gzip snappy lz4 zstd; do
	t0=$(now_ms)
	"$spate" produce "$dir/$c" --gen fraud --records "$records" -X compression="$c" </dev/null
	ms[$c]=$(($(now_ms) - t0))
	bytes[$c]=$(find "$dir/$c" -name '*.log' -printf '%s\n' | awk '{s+=$1} END{print s}')
done
echo "fraud stream: records=$records partitions=8 (spate produce --gen fraud; Kafka's default levels)"
for c in none gzip snappy lz4 zstd; do
	awk -v c="$c" -v b="${bytes[$c]}" -v n="${bytes[none]}" -v t="${ms[$c]}" \
		'BEGIN{printf "%-7s bytes=%d ratio=%.2f produce_ms=%d\n", c, b, n / b, t}'
done
# CPU seconds (user + sys) of each run too: on a shared machine the wall-clock rate
# follows the load, the CPU a run takes much less
declare -A rates cpu
TIMEFORMAT='%U %S'
for i in $(seq 0 "$runs"); do
	for c in none lz4 zstd; do
		{ t=$( { time "$spate" run -X source=log:"$dir/$c" -X handler=noop -X stop.at.end=true \
			-X store=none -X log.level=error >"$dir/out"; } 2>&1); } 2>/dev/null
		r=$(awk '$1=="records_per_s"{print $2}' "$dir/out")
		[ "$i" = 0 ] && continue # warm-up: fills the page cache
		s=$(echo "$t" | awk '{printf "%.2f", $1 + $2}')
		rates[$c]="${rates[$c]:-} $r"
		cpu[$c]="${cpu[$c]:-} $s"
		echo "run $i $c: $r records/s, $s s CPU" >&2
	done
done
echo "log -> noop (defaults: batch.size=100, max.concurrency=2), median of $runs interleaved runs;" \
	"load average $(cut -d' ' -f1-3 /proc/loadavg)"
for c in none lz4 zstd; do
	m=$(echo "${rates[$c]}" | median)
	n=$(echo "${rates[none]}" | median)
	awk -v c="$c" -v m="$m" -v n="$n" -v r="${rates[$c]}" -v s="$(echo "${cpu[$c]}" | median)" \
		-v sr="${cpu[$c]}" 'BEGIN{printf "%-5s median_records_per_s=%d vs_none=%.2f runs:%s; median_cpu_s=%s runs:%s\n", c, m, m / n, r, s, sr}'
done
for c in none lz4 zstd; do
	t0=$(now_ms)
	"$spate" log verify "$dir/$c" >/dev/null
	echo "verify $c: $(($(now_ms) - t0)) ms"
done
