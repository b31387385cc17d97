#!/bin/bash
# kafka_consume.sh - issue 5's comparison on one mock cluster pinned to one core
# (taskset -c 0) and one topic of RECORDS records of 100 bytes in 128 partitions:
# steady-state records/s and consumer CPU seconds per million records (user + sys) of
#   spate kafka -> noop with checkpoints (store=kafka, a consumer group),
#   kcat -C -e -o beginning -q -X fetch.wait.max.ms=10,
#   rdkafka_performance -C -G (librdkafka's own benchmark, built at run time from
#   Debian's librdkafka-dev examples with benchmarks/rdperf_shim.h for its internal rd.h).
# Interleaved, median of RUNS. spate's rate is first to last record (its summary); kcat
# has no group join, so its wall time is its steady state; rdkafka_performance's timer
# starts at its first message.
# usage: benchmarks/kafka_consume.sh [SPATE] [MOCK_KAFKA] [RUNS] [RECORDS]
set -euo pipefail
spate=${1:-build/cli/spate}
mock=${2:-build/tests/tools/mock-kafka}
runs=${3:-3}
records=${4:-2000000}
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
taskset -c 0 "$mock" --brokers 1 --topic bench:128 --bootstrap-file "$dir/bs" </dev/null >/dev/null 2>&1 &
mock_pid=$!
for _ in $(seq 100); do [ -s "$dir/bs" ] && break; sleep 0.1; done
bs=$(cat "$dir/bs")
# spate produce --kafka spreads keyless records evenly (sticky.partitioning.linger.ms=0):
# with librdkafka's default sticky partitioner some partitions got over the mock's
# ~5 MiB and lost their oldest records
awk -v n="$records" 'BEGIN { v = sprintf("%0100d", 0); for (i = 0; i < n; i++) printf "%s\n", v }' |
	"$spate" produce --kafka bench -X kafka.bootstrap.servers="$bs"
have=$(kcat -C -b "$bs" -t bench -e -o beginning -q -f 'x\n' | wc -l)
if [ "$have" != "$records" ]; then
	echo "kafka_consume.sh: the topic holds $have records, not $records (mock retention?)" >&2
	exit 1
fi
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
tm() { /usr/bin/time -f "%e %U %S" -o "$dir/time" "$@"; }
cpu_per_m() { awk -v n="$records" '{printf "%.3f", ($2 + $3) / (n / 1e6)}' "$dir/time"; }
declare -A rate cpu
for i in $(seq 1 "$runs"); do
	tm "$spate" run -X source=kafka -X topics=bench -X group.id="g$i" -X store=kafka -X stop.at.end=true \
		-X handler=noop -X batch.size=1000 -X kafka.bootstrap.servers="$bs" -X kafka.session.timeout.ms=6000 \
		-X kafka.heartbeat.interval.ms=500 -X log.level=error >"$dir/out"
	rate[spate]="${rate[spate]:-} $(awk '$1=="records_per_s"{print $2}' "$dir/out")"
	cpu[spate]="${cpu[spate]:-} $(cpu_per_m)"
	tm kcat -C -b "$bs" -t bench -e -o beginning -q -X fetch.wait.max.ms=10 >/dev/null
	rate[kcat]="${rate[kcat]:-} $(awk -v n="$records" '{printf "%.0f", n / $1}' "$dir/time")"
	cpu[kcat]="${cpu[kcat]:-} $(cpu_per_m)"
	tm timeout 120 "$dir/rdkafka_performance" -C -G "p$i" -t bench -b "$bs" -o beginning -c "$records" -q \
		-X session.timeout.ms=6000 -X heartbeat.interval.ms=500 -X auto.offset.reset=earliest >"$dir/perf.out" 2>&1 || true
	rate[rdkafka_performance]="${rate[rdkafka_performance]:-} $(grep -o '[0-9]* msgs/s' "$dir/perf.out" | tail -1 | awk '{print $1}')"
	cpu[rdkafka_performance]="${cpu[rdkafka_performance]:-} $(cpu_per_m)"
	echo "run $i: spate ${rate[spate]##* } kcat ${rate[kcat]##* } rdkafka_performance ${rate[rdkafka_performance]##* }" >&2
done
echo "records=$records partitions=128 value=100B mock cluster pinned to core 0, runs=$runs"
for c in spate kcat rdkafka_performance; do
	echo "$c: median $(echo "${rate[$c]}" | median) records/s (runs:${rate[$c]}), median $(echo "${cpu[$c]}" | median) CPU s per million (runs:${cpu[$c]})"
done
