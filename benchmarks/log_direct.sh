#!/bin/bash
# log_direct.sh - cold reads: `spate run` log -> noop with log.read.direct=true (O_DIRECT
# into aligned buffers) against the page-cache path on the same uncached log, and `cat` of
# the segments, each after `echo 3 > /proc/sys/vm/drop_caches` (root; benchmarks only,
# never a test). Interleaved, median of RUNS each. Prints records/s and CPU seconds.
# usage: benchmarks/log_direct.sh [SPATE] [RUNS] [RECORDS]
set -euo pipefail
spate=${1:-build/cli/spate}
runs=${2:-3}
records=${3:-8000000}
dir=${SPATE_BENCH_DIR:-$(mktemp -d /var/tmp/spate-bench-direct-XXXXXX)}
[ -n "${SPATE_BENCH_KEEP:-}" ] || trap 'rm -rf "$dir"' EXIT
[ -d "$dir/log" ] || "$spate" produce "$dir/log" --partitions 8 --gen bytes --records "$records" \
	--value-bytes 100 --keys 100000 -X flush.records=0 -X flush.ms=1000 </dev/null >/dev/null
bytes=$(cat "$dir"/log/*/*.log | wc -c)
echo "log: $records records, $bytes bytes" >&2
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }
declare -A rate cpu
for i in $(seq 1 "$runs"); do
	cold
	t0=$(date +%s.%N); cat "$dir"/log/*/*.log >/dev/null; t1=$(date +%s.%N)
	rate[cat]="${rate[cat]:-} $(awk -v r="$records" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", r/(b-a)}')"
	for mode in false true; do
		cold
		out=$( { /usr/bin/time -f "CPU %U %S" "$spate" run -X source=log:"$dir/log" -X handler=noop -X store=none \
			-X stop.at.end=true -X log.level=error -X log.read.direct=$mode | grep records_per_s; } 2>&1)
		r=$(echo "$out" | awk '$1=="records_per_s"{print $2}')
		c=$(echo "$out" | awk '$1=="CPU"{print $2+$3}')
		rate[$mode]="${rate[$mode]:-} $r"; cpu[$mode]="${cpu[$mode]:-} $c"
		echo "run $i direct=$mode: $r records/s, $c CPU s" >&2
	done
done
echo "records=$records bytes=$bytes runs=$runs (caches dropped before each run)"
echo "cat (cold):                    median $(echo "${rate[cat]}" | median) records/s (runs:${rate[cat]})"
echo "page cache path (cold):        median $(echo "${rate[false]}" | median) records/s, CPU $(echo "${cpu[false]}" | median) s (runs:${rate[false]})"
echo "log.read.direct=true (cold):   median $(echo "${rate[true]}" | median) records/s, CPU $(echo "${cpu[true]}" | median) s (runs:${rate[true]})"
