#!/bin/bash
# scale_step.sh - the autoscaler under a load step: `spate run` tails an embedded log
# with an I/O-bound handler (sleep:MS per batch), min.concurrency=0, while a writer
# appends nothing for 2 s, then RATE records/s for 6 s, then nothing for 4 s. The stats
# lines (every 200 ms) are plotted with gnuplot: workers and records/s over time.
# usage: benchmarks/scale_step.sh [SPATE] [OUT.png] [RATE]
set -euo pipefail
spate=${1:-build/cli/spate}
png=${2:-docs/scaling.png}
rate=${3:-40000}
dir=$(mktemp -d /tmp/spate-scale-XXXXXX)
trap 'kill $run_pid 2>/dev/null || true; rm -rf "$dir"' EXIT
"$spate" log create "$dir/log" --partitions 16 >/dev/null
"$spate" run -X source=log:"$dir/log" -X handler=sleep:5 -X batch.size=100 -X min.concurrency=0 \
	-X max.concurrency=16 -X scale.down.idle.ms=1000 -X stats.interval.ms=200 -X stats.file="$dir/stats" \
	-X log.level=error >"$dir/summary" &
run_pid=$!
python3 - "$spate" "$dir/log" "$rate" <<'PY'
import subprocess, sys, time
spate, log, rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = subprocess.Popen([spate, "produce", log, "--key-separator", " ", "-X", "flush.ms=20"],
                     stdin=subprocess.PIPE)
time.sleep(2)
t0 = time.time(); n = 0
while time.time() - t0 < 6:
    want = int((time.time() - t0) * rate)
    if want > n:
        p.stdin.write("".join("k%d value-%d\n" % (i % 1000, i) for i in range(n, want)).encode())
        p.stdin.flush(); n = want
    time.sleep(0.01)
p.stdin.close(); p.wait()
time.sleep(4)
PY
kill -TERM $run_pid
wait $run_pid || true
sed -e 's/[{}"]//g' -e 's/,/ /g' "$dir/stats" | awk '{for (i = 1; i <= NF; i++) { split($i, kv, ":"); v[kv[1]] = kv[2] } print v["t_ms"] / 1000, v["workers_active"], v["records_per_s"] }' >"$dir/data"
cp "$dir/data" "${png%.png}.dat"
gnuplot <<GP
set terminal pngcairo size 900,450
set output "$png"
set title "autoscaling under a load step (log source, handler sleep:5 per batch of 100)"
set xlabel "seconds"
set ylabel "workers active"
set y2label "records/s"
set ytics nomirror
set y2tics
set key top left
plot "$dir/data" using 1:2 with steps lw 2 title "workers", "$dir/data" using 1:3 axes x1y2 with lines lw 2 title "records/s"
GP
echo "wrote $png"; cat "$dir/summary"
