#!/bin/bash
# log_latency.sh - where the log's end-to-end latency goes: `spate bench --log` at a fixed
# open-loop rate, on a disk folder and on tmpfs (/dev/shm: fdatasync returns at once),
# with the writer's flush.ms=1 and flush.ms=0, interleaved, RUNS times each; and the
# disk's own fdatasync latency (200 x 10 kB appends, each fdatasync'd) as the floor.
# Prints, per configuration, the medians over the runs of timestamp->done p50/p99 and
# arrival->done p50/p99 (ms).
# usage: benchmarks/log_latency.sh [SPATE] [RUNS] [RATE] [DISK_DIR]
set -euo pipefail
spate=${1:-build/cli/spate}
runs=${2:-5}
rate=${3:-100000}
disk=${4:-/var/tmp}
ddir=$(mktemp -d "$disk/spate-bench-lat-XXXXXX")
sdir=$(mktemp -d /dev/shm/spate-bench-lat-XXXXXX)
trap 'rm -rf "$ddir" "$sdir"' EXIT

python3 - "$ddir/fsync.probe" <<'EOF'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
ts = []
for _ in range(200):
    os.write(fd, b"x" * 10000)
    t = time.perf_counter(); os.fdatasync(fd); ts.append((time.perf_counter() - t) * 1000)
ts.sort()
print("fdatasync of a 10 kB append on %s: p50 %.2f p90 %.2f p99 %.2f max %.2f ms"
      % (os.path.dirname(sys.argv[1]), ts[100], ts[180], ts[198], ts[-1]))
EOF

declare -A res
for i in $(seq 1 "$runs"); do
	for where in disk tmpfs; do
		for fl in 1 0; do
			base=$ddir; [ $where = tmpfs ] && base=$sdir
			rm -rf "$base/log" "$base/r.json"
			"$spate" bench --log "$base/log" --rate "$rate" --duration 3 -X flush.ms=$fl \
				--json "$base/r.json" >/dev/null 2>&1 </dev/null
			v=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); d=j["latency_done"]; a=j["arrival_done"]; print(d["p50_ms"], d["p99_ms"], a["p50_ms"], a["p99_ms"])' "$base/r.json")
			res[$where/$fl]="${res[$where/$fl]:-}$v;"
		done
	done
done
printf "%-22s %14s %14s %14s %14s\n" "log on, flush.ms" "ts->done p50" "ts->done p99" "arr->done p50" "arr->done p99"
for k in disk/1 disk/0 tmpfs/1 tmpfs/0; do
	echo "${res[$k]}" | tr ';' '\n' | grep -v '^$' | python3 -c '
import sys, statistics
rows = [list(map(float, l.split())) for l in sys.stdin]
k = sys.argv[1]
print("%-22s %14.3f %14.3f %14.3f %14.3f" % ((k,) + tuple(statistics.median(c) for c in zip(*rows))))' "$k"
done
echo "($runs runs each at $rate records/s, $(nproc) cores, load average $(cut -d' ' -f1 /proc/loadavg))"
