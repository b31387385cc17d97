#!/bin/bash
# scale_step.sh - the autoscaler under a load step: `spate run` tails an embedded log
# (16 partitions) with an I/O-bound handler (sleep:SLEEP_MS per batch of 100),
# min.concurrency=0, max.concurrency=16, while a writer appends nothing for 2 s, then
# RATE records/s for 6 s, then nothing for 4 s. Stats lines every 50 ms.
#
# Per run it prints the scale-up time after the step: from the first stats line that
# counts a record to the first one where the active workers reach 90% of the steady
# count (the median count over the step's last 3 s), and to the first one where the
# handled rate reaches 90% of RATE. Resolution: the 50 ms stats interval. Then the
# medians over RUNS runs. The last run's stats are plotted with gnuplot: workers and
# records/s over time.
# usage: benchmarks/scale_step.sh [SPATE] [OUT.png] [RATE] [RUNS] [SLEEP_MS]
set -euo pipefail
spate=${1:-build/cli/spate}
png=${2:-docs/scaling.png}
rate=${3:-40000}
runs=${4:-1}
sleep_ms=${5:-5}
dir=$(mktemp -d /tmp/spate-scale-XXXXXX)
run_pid=
trap '[ -n "$run_pid" ] && kill $run_pid 2>/dev/null; rm -rf "$dir"' EXIT
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
ups=() rates=()
for i in $(seq 1 "$runs"); do
	rm -rf "$dir/log" "$dir/stats"
	"$spate" log create "$dir/log" --partitions 16 >/dev/null
	"$spate" run -X source=log:"$dir/log" -X handler=sleep:"$sleep_ms" -X batch.size=100 \
		-X min.concurrency=0 -X max.concurrency=16 -X scale.down.idle.ms=1000 \
		-X stats.interval.ms=50 -X stats.file="$dir/stats" -X log.level=error >"$dir/summary" &
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
	run_pid=
	sed -e 's/[{}"]//g' -e 's/,/ /g' "$dir/stats" | awk '{for (i = 1; i <= NF; i++) { split($i, kv, ":"); v[kv[1]] = kv[2] } print v["t_ms"] / 1000, v["workers_active"], v["records_per_s"] }' >"$dir/data"
	# t (s), workers, records/s per line
	read -r up catch steady < <(awk -v rate="$rate" '
		{ t[NR] = $1; w[NR] = $2; r[NR] = $3 }
		END {
			for (i = 1; i <= NR && r[i] <= 0; i++) ;
			t0 = t[i]
			n = 0
			for (j = i; j <= NR; j++) if (t[j] >= t0 + 2.5 && t[j] <= t0 + 5.5) s[++n] = w[j]
			for (a = 2; a <= n; a++) for (b = a; b > 1 && s[b - 1] > s[b]; b--) { x = s[b]; s[b] = s[b - 1]; s[b - 1] = x }
			steady = n ? s[int((n + 1) / 2)] : 0
			up = -1; catch = -1
			for (j = i; j <= NR; j++) {
				if (up < 0 && w[j] >= 0.9 * steady) up = (t[j] - t0) * 1000
				if (catch < 0 && r[j] >= 0.9 * rate) catch = (t[j] - t0) * 1000
			}
			printf "%d %d %d\n", up, catch, steady
		}' "$dir/data")
	echo "run $i: step at the first record; workers 0 -> $steady (90%) after ${up} ms; handled rate at 90% of $rate/s after ${catch} ms" >&2
	ups+=("$up")
	rates+=("$catch")
done
echo "scale-up after a load step (0 -> $rate records/s, handler sleep:$sleep_ms per 100 records, $runs runs, load average $(cut -d' ' -f1-3 /proc/loadavg)):" \
	"workers at 90% of the steady count: median $(echo "${ups[*]}" | median) ms (runs: ${ups[*]});" \
	"handled rate at 90% of the offered: median $(echo "${rates[*]}" | median) ms (runs: ${rates[*]})"
cp "$dir/data" "${png%.png}.dat"
gnuplot <<GP
set terminal pngcairo size 900,450
set output "$png"
set title "autoscaling under a load step (log source, handler sleep:$sleep_ms per batch of 100)"
set xlabel "seconds"
set ylabel "workers active"
set y2label "records/s"
set ytics nomirror
set y2tics
set key top left
plot "$dir/data" using 1:2 with steps lw 2 title "workers", "$dir/data" using 1:3 axes x1y2 with lines lw 2 title "records/s"
GP
echo "wrote $png"; cat "$dir/summary"
