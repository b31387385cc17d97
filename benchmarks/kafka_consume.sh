#!/bin/bash
# kafka_consume.sh - issue 5's and issue 16's comparison on one mock cluster pinned to one
# core (taskset -c 0) and one topic of RECORDS records of 100 bytes in 128 partitions:
# steady-state records/s and consumer CPU seconds per million records (user + sys) of
#   spate kafka -> noop with its default settings (store=kafka, a consumer group,
#     stop.at.end; only the group's session and heartbeat are shortened, for all),
#   kcat -C -e -o beginning -q -X fetch.wait.max.ms=10,
#   rdkafka_performance -C -G (librdkafka's own benchmark, built at run time from
#   Debian's librdkafka-dev examples with benchmarks/rdperf_shim.h for its internal rd.h).
# Interleaved, median of RUNS and the range of the ratios. spate's rate is first to last
# record (its summary); kcat has no group join, so its wall time is its steady state;
# rdkafka_performance's timer starts at its first message.
# BROKERS: the mock cluster's brokers (1 or 3; the topic's partitions spread over them).
# LOADER: spate (`spate produce --kafka`, its big batches) or kcat (`kcat -P`, keyless
# with sticky.partitioning.linger.ms=0: smaller record batches, more of them to fetch).
# SPATE_B=PATH in the environment adds a second spate build to the alternation (A/B).
# usage: benchmarks/kafka_consume.sh [SPATE] [MOCK_KAFKA] [RUNS] [RECORDS] [BROKERS] [LOADER]
set -euo pipefail
spate=${1:-build/cli/spate}
mock=${2:-build/tests/tools/mock-kafka}
runs=${3:-5}
records=${4:-2000000}
brokers=${5:-1}
loader=${6:-spate}
dir=$(mktemp -d /tmp/spate-kbench-XXXXXX)
mock_pid=
trap '[ -n "$mock_pid" ] && kill $mock_pid 2>/dev/null; rm -rf "$dir"' EXIT
src=/usr/share/doc/librdkafka-dev/examples/rdkafka_performance.c
[ -f "$src" ] || src=$src.gz
mkdir -p "$dir/perf/src" "$dir/perf/inc"
if [[ $src == *.gz ]]; then zcat "$src" >"$dir/perf/rdkafka_performance.c"; else cp "$src" "$dir/perf/"; fi
shim=$(dirname "$0")/rdperf_shim.h
cp "$shim" "$dir/perf/src/rd.h"
cp "$shim" "$dir/perf/inc/rd.h"
: >"$dir/perf/inc/rdtime.h"
gcc -O2 -w -D_GNU_SOURCE -I "$dir/perf/inc" $(pkg-config --cflags rdkafka) -I /usr/include/librdkafka \
	"$dir/perf/rdkafka_performance.c" -o "$dir/rdkafka_performance" $(pkg-config --libs rdkafka)
taskset -c 0 "$mock" --brokers "$brokers" --topic bench:128 --bootstrap-file "$dir/bs" </dev/null >/dev/null 2>&1 &
mock_pid=$!
for _ in $(seq 100); do [ -s "$dir/bs" ] && break; sleep 0.1; done
bs=$(cat "$dir/bs")
lines() { awk -v n="$records" 'BEGIN { v = sprintf("%0100d", 0); for (i = 0; i < n; i++) printf "%s\n", v }'; }
# keyless records spread evenly (sticky.partitioning.linger.ms=0): with librdkafka's
# default sticky partitioner some partitions got over the mock's ~5 MiB and lost their
# oldest records
case $loader in
spate) lines | "$spate" produce --kafka bench -X kafka.bootstrap.servers="$bs" ;;
kcat) lines | kcat -P -b "$bs" -t bench -X sticky.partitioning.linger.ms=0 ;;
*) echo "kafka_consume.sh: LOADER is spate or kcat" >&2; exit 2 ;;
esac
have=$(kcat -C -b "$bs" -t bench -e -o beginning -q -f 'x\n' | wc -l)
if [ "$have" != "$records" ]; then
	echo "kafka_consume.sh: the topic holds $have records, not $records (mock retention?)" >&2
	exit 1
fi
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
range() { tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR==1{lo=$1} {hi=$1} END{printf "%s-%s", lo, hi}'; }
ratios() { paste <(echo "$1" | tr ' ' '\n' | grep -v '^$') <(echo "$2" | tr ' ' '\n' | grep -v '^$') |
	awk '{printf " %.3f", $1/$2}'; }
tm() { /usr/bin/time -f "%e %U %S" -o "$dir/time" "$@"; }
cpu_per_m() { awk -v n="$records" '{printf "%.3f", ($2 + $3) / (n / 1e6)}' "$dir/time"; }
declare -A rate cpu
names="spate"
[ -n "${SPATE_B:-}" ] && names="$names spate_b"
names="$names kcat rdkafka_performance"
run_spate() { # NAME BINARY GROUP
	tm "$2" run -X source=kafka -X topics=bench -X group.id="$3" -X store=kafka -X stop.at.end=true \
		-X handler=noop -X kafka.bootstrap.servers="$bs" -X kafka.session.timeout.ms=6000 \
		-X kafka.heartbeat.interval.ms=500 -X log.level=error >"$dir/out"
	rate[$1]="${rate[$1]:-} $(awk '$1=="records_per_s"{print $2}' "$dir/out")"
	cpu[$1]="${cpu[$1]:-} $(cpu_per_m)"
}
for i in $(seq 1 "$runs"); do
	run_spate spate "$spate" "g$i"
	[ -n "${SPATE_B:-}" ] && run_spate spate_b "$SPATE_B" "h$i"
	tm kcat -C -b "$bs" -t bench -e -o beginning -q -X fetch.wait.max.ms=10 >/dev/null
	rate[kcat]="${rate[kcat]:-} $(awk -v n="$records" '{printf "%.0f", n / $1}' "$dir/time")"
	cpu[kcat]="${cpu[kcat]:-} $(cpu_per_m)"
	tm timeout 120 "$dir/rdkafka_performance" -C -G "p$i" -t bench -b "$bs" -o beginning -c "$records" -q \
		-X session.timeout.ms=6000 -X heartbeat.interval.ms=500 -X auto.offset.reset=earliest >"$dir/perf.out" 2>&1 || true
	rate[rdkafka_performance]="${rate[rdkafka_performance]:-} $(grep -o '[0-9]* msgs/s' "$dir/perf.out" | tail -1 | awk '{print $1}')"
	cpu[rdkafka_performance]="${cpu[rdkafka_performance]:-} $(cpu_per_m)"
	line="run $i:"
	for c in $names; do line="$line $c ${rate[$c]##* } (${cpu[$c]##* } s/M)"; done
	echo "$line" >&2
done
echo "records=$records partitions=128 value=100B brokers=$brokers loader=$loader mock cluster pinned to core 0, runs=$runs"
for c in $names; do
	echo "$c: median $(echo "${rate[$c]}" | median) records/s (runs:${rate[$c]}), median $(echo "${cpu[$c]}" | median) CPU s per million (runs:${cpu[$c]})"
done
for c in $names; do
	[ "${c%_b}" = "$c" ] && [ "$c" != spate ] && continue
	rr=$(ratios "${rate[$c]}" "${rate[rdkafka_performance]}") rk=$(ratios "${cpu[$c]}" "${cpu[kcat]}")
	echo "$c/rdkafka_performance rate: median $(echo "$rr" | median) range $(echo "$rr" | range) (runs:$rr)"
	echo "$c/kcat CPU: median $(echo "$rk" | median) range $(echo "$rk" | range) (runs:$rk)"
done
