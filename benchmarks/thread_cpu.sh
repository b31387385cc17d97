#!/bin/bash
# thread_cpu.sh - CPU seconds of each thread of one `spate` command: samples
# /proc/PID/task/*/stat (utime + stime) every 50 ms and prints the last sample of each
# thread, the main thread (the engine thread of `spate run`) first. On a shared machine
# the engine thread's CPU seconds say more than a wall-clock rate: they are what bounds
# the rate when the cores are free.
# usage: benchmarks/thread_cpu.sh SPATE ARGS...   e.g.
#   benchmarks/thread_cpu.sh build/cli/spate run -X source=log:DIR -X handler=noop \
#       -X store=none -X stop.at.end=true -X log.decode.threads=0
set -uo pipefail
"$@" >/dev/null 2>&1 &
pid=$!
tck=$(getconf CLK_TCK)
declare -A last name us
while kill -0 "$pid" 2>/dev/null; do
	for t in /proc/"$pid"/task/*; do
		tid=${t##*/}
		st=$(cat "$t/stat" 2>/dev/null) || continue
		# fields after the comm's closing paren: state is 3, utime 14, stime 15
		rest=${st##*) }
		set -- $rest
		last[$tid]=$((${12} + ${13}))
		us[$tid]="$((${12})) $((${13}))"
		name[$tid]=$(cat "$t/comm" 2>/dev/null)
	done
	sleep 0.05
done
wait "$pid"
total=0
for tid in $(printf '%s\n' "${!last[@]}" | sort -n); do
	v=${last[$tid]}
	total=$((total + v))
	role=thread
	[ "$tid" = "$pid" ] && role=main
	awk -v r="$role" -v t="$tid" -v n="${name[$tid]}" -v v="$v" -v k="$tck" -v us="${us[$tid]}" \
		'BEGIN{split(us, a, " "); if (v > 0) printf "%-6s %-8s %-16s %6.2f s (user %.2f, sys %.2f)\n", r, t, n, v / k, a[1] / k, a[2] / k}'
done
awk -v v="$total" -v k="$tck" 'BEGIN{printf "total (threads seen) %6.2f s\n", v / k}'
