#!/bin/bash
# lease_failover.sh - failover time of store=redis:// leases: two spate processes share
# an 8-partition log; once they split it 4/4, one is killed with SIGKILL and the time
# until the other holds all 8 leases (as Redis shows them, polled every 20 ms) is taken.
# Five kills; prints each and the median, in ms and in lease timeouts.
# usage: lease_failover.sh SPATE [LEASE_TIMEOUT_MS]
set -euo pipefail
spate=$1
lease=${2:-3000}
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
redis-server --port "$port" --bind 127.0.0.1 --daemonize no --dir "$dir" --save '' --appendonly yes \
	--appendfsync always >"$dir/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
"$spate" produce "$dir/orders" --partitions 8 --gen bytes --records 8000 --value-bytes 20 >/dev/null
held() { # how many partitions owner $1 holds in pipeline $2
	local n=0
	for i in 0 1 2 3 4 5 6 7; do
		[ "$(redis-cli -p "$port" hget "spate:$2:{log/orders/$i}" owner)" = "$1" ] && n=$((n + 1))
	done
	echo $n
}
now_ms() { date +%s%3N; }
times=()
for round in 1 2 3 4 5; do
	pl="failover$round"
	run() { exec "$spate" run -X "source=log:$dir/orders" -X "store=redis://127.0.0.1:$port" -X "pipeline.name=$pl" \
		-X handler=noop -X "lease.owner=$1" -X "lease.timeout.ms=$lease" 2>"$dir/$1.$round.err" >/dev/null; }
	run A & a=$!; pids+=($a)
	sleep 0.3
	run B & b=$!; pids+=($b)
	until [ "$(held A "$pl")" = 4 ] && [ "$(held B "$pl")" = 4 ]; do sleep 0.1; done
	t0=$(now_ms)
	kill -9 "$b"
	until [ "$(held A "$pl")" = 8 ]; do sleep 0.02; done
	t1=$(now_ms)
	times+=($((t1 - t0)))
	echo "round $round: A holds all 8 partitions $((t1 - t0)) ms after B was killed"
	kill -TERM "$a"; wait "$a" 2>/dev/null || true; wait "$b" 2>/dev/null || true
done
med=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)
echo "failover median of 5: $med ms = $(python3 -c "print(round($med / $lease, 2))") lease timeouts (lease.timeout.ms=$lease; runs: ${times[*]})"
