#!/bin/bash
# kafka_latency.sh - end-to-end latency at half load on mock-kafka (issue 16): one mock
# cluster (--brokers 1) with 16-partition topics; the maximum rate from
# `spate bench --kafka m1 --records 300000` (the lower of its steady produce and consume
# rates), then RUNS runs of `spate bench --kafka mN --rate MAX/2 --duration 10`, each on a
# new topic, printing their latency lines. `spate bench` warms up first (--warmup), so the
# group join is not in the percentiles. All runs use the shortened session and heartbeat
# of the other Kafka benchmarks; EXTRA (environment) adds -X keys to every run, e.g.
# EXTRA="-X kafka.fetch.wait.max.ms=10" (the mock broker answers an empty Fetch only after
# the full wait, 500 ms by default, even when records arrive meanwhile).
# usage: benchmarks/kafka_latency.sh [SPATE] [MOCK_KAFKA] [RUNS]
set -euo pipefail
spate=${1:-build/cli/spate}
mock=${2:-build/tests/tools/mock-kafka}
runs=${3:-3}
dir=$(mktemp -d /tmp/spate-klat-XXXXXX)
mock_pid=
trap '[ -n "$mock_pid" ] && kill $mock_pid 2>/dev/null; rm -rf "$dir"' EXIT
topics=()
for i in $(seq 1 $((runs + 1))); do topics+=(--topic "m$i:16"); done
"$mock" --brokers 1 "${topics[@]}" --bootstrap-file "$dir/bs" >"$dir/mock.out" 2>&1 &
mock_pid=$!
for _ in $(seq 100); do [ -s "$dir/bs" ] && break; sleep 0.1; done
bs=$(cat "$dir/bs")
common=(-X kafka.bootstrap.servers="$bs" -X kafka.session.timeout.ms=6000
	-X kafka.heartbeat.interval.ms=500)
# shellcheck disable=SC2086
"$spate" bench --kafka m1 --records 300000 "${common[@]}" ${EXTRA:-} --json "$dir/max.json" >"$dir/max.out" 2>&1
max=$(python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(int(min(j['produce_records_per_s'], j['consume_records_per_s'])))" "$dir/max.json")
echo "max: $max records/s (${EXTRA:-defaults}); runs at $((max / 2)) records/s, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq 2 $((runs + 1))); do
	# shellcheck disable=SC2086
	"$spate" bench --kafka "m$i" --rate $((max / 2)) --duration 10 "${common[@]}" ${EXTRA:-} >"$dir/run.out" 2>&1
	grep -E '^latency' "$dir/run.out" | sed "s/^/run $((i - 1)): /"
done
