#!/bin/bash
# log_decode.sh - issue 14's decode stage: log -> noop with the decode on decode threads
# (log.decode.threads=-1, one per core, the default) against the engine thread
# (log.decode.threads=0, the path before the stage), with the defaults (batch.size 100) and
# batch.size 1000, with 2 workers and with 1, next to `cat` of the same segments; all
# interleaved in one invocation, medians of RUNS runs. Prints records/s, CPU seconds
# (user + sys, which a loaded machine does not change) and max RSS of each.
# Then (unless SPATE_BENCH_NO_WINDOW=1) records/s and max RSS against max.inflight.bytes.
# usage: benchmarks/log_decode.sh [SPATE] [RUNS] [RECORDS]
set -euo pipefail
spate=${1:-build/cli/spate}
runs=${2:-5}
records=${3:-16000000}
dir=${SPATE_BENCH_DIR:-$(mktemp -d /tmp/spate-bench-decode-XXXXXX)}
[ -n "${SPATE_BENCH_KEEP:-}" ] || trap 'rm -rf "$dir"' EXIT
if [ ! -d "$dir/log" ]; then
	"$spate" produce "$dir/log" --partitions 8 --gen bytes --records "$records" --value-bytes 100 \
		--keys 100000 -X flush.records=0 -X flush.ms=1000 </dev/null >/dev/null
fi
bytes=$(cat "$dir"/log/*/*.log | wc -c)
echo "log: $records records, $bytes bytes in $(ls "$dir"/log/*/*.log | wc -l) segments" >&2
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
# one run: prints "records/s cpu_s rss_kb"
one() {
	local t
	t=$(mktemp)
	local r
	r=$(/usr/bin/time -f "%U %S %M" -o "$t" "$spate" run -X source=log:"$dir/log" -X handler=noop \
		-X store=none -X stop.at.end=true -X log.level=error "$@" | awk '$1=="records_per_s"{print $2}')
	awk -v r="$r" '{printf "%s %.2f %s\n", r, $1 + $2, $3}' "$t"
	rm -f "$t"
}
names=(cat)
declare -A rate cpu rss
cases=(
	"engine-thread,batch100,2w|-X log.decode.threads=0 -X max.concurrency=2"
	"decode-stage,batch100,2w|-X max.concurrency=2"
	"engine-thread,batch1000,2w|-X log.decode.threads=0 -X batch.size=1000 -X max.concurrency=2"
	"decode-stage,batch1000,2w|-X batch.size=1000 -X max.concurrency=2"
	"decode-stage,batch1000,1w|-X batch.size=1000 -X max.concurrency=1"
	"decode-stage,batch100,1w|-X max.concurrency=1"
)
for i in $(seq 0 "$runs"); do
	t0=$(now); cat "$dir"/log/*/*.log >/dev/null; t1=$(now)
	c=$(awk -v r="$records" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", r/(b-a)}')
	line="run $i: cat $c"
	[ "$i" = 0 ] || rate[cat]="${rate[cat]:-} $c"
	for cs in "${cases[@]}"; do
		name=${cs%%|*}
		# shellcheck disable=SC2086
		read -r r u m <<<"$(one ${cs#*|})"
		line="$line | $name $r ${u}s ${m}KB"
		[ "$i" = 0 ] && continue # warm-up: fills the page cache
		rate[$name]="${rate[$name]:-} $r"; cpu[$name]="${cpu[$name]:-} $u"; rss[$name]="${rss[$name]:-} $m"
	done
	echo "$line" >&2
done
mc=$(echo "${rate[cat]}" | median)
echo "records=$records bytes=$bytes partitions=8 value=100B runs=$runs (medians)"
printf "%-30s %12s %8s %8s %10s\n" case records/s "x cat" "CPU s" "RSS MB"
printf "%-30s %12s %8s\n" cat "$mc" 1
for cs in "${cases[@]}"; do
	name=${cs%%|*}
	r=$(echo "${rate[$name]}" | median); u=$(echo "${cpu[$name]}" | median); m=$(echo "${rss[$name]}" | median)
	awk -v n="$name" -v r="$r" -v c="$mc" -v u="$u" -v m="$m" \
		'BEGIN{printf "%-30s %12d %8.3f %8.2f %10.0f\n", n, r, r/c, u, m/1024}'
done
[ -n "${SPATE_BENCH_NO_WINDOW:-}" ] && exit 0
echo "max.inflight.bytes (decode stage, defaults otherwise; medians of $runs, interleaved)"
declare -A wr wm
sizes=(16M 32M 64M 128M 256M 512M 1G)
for i in $(seq 1 "$runs"); do
	for s in "${sizes[@]}"; do
		read -r r u m <<<"$(one -X max.inflight.bytes="$s")"
		wr[$s]="${wr[$s]:-} $r"; wm[$s]="${wm[$s]:-} $m"
	done
done
for s in "${sizes[@]}"; do
	r=$(echo "${wr[$s]}" | median); m=$(echo "${wm[$s]}" | median)
	awk -v s="$s" -v r="$r" -v m="$m" 'BEGIN{printf "%-6s %12d records/s %8.0f MB max RSS\n", s, r, m/1024}'
done
