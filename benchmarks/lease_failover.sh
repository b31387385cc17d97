#!/bin/bash
# lease_failover.sh - failover time of leases: two spate processes share an 8-partition
# log through store=redis:// (redis-server, AOF with appendfsync always) or
# store=dynamodb:TABLE (dynalite from .deps/node, scripts/deps.sh); once they split it
# 4/4, one is killed with SIGKILL and the time until the other holds all 8 leases (as the
# store shows them, polled every 20 ms) is taken. Five kills; prints each and the
# median, in ms and in lease timeouts.
# usage: lease_failover.sh SPATE [LEASE_TIMEOUT_MS] [redis|dynamodb]   (from the repository's root)
set -euo pipefail
spate=$1
lease=${2:-3000}
kind=${3:-redis}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	exec 3>&- 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
case $kind in
redis)
	redis-server --port "$port" --bind 127.0.0.1 --daemonize no --dir "$dir" --save '' --appendonly yes \
		--appendfsync always >"$dir/redis.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
	store="redis://127.0.0.1:$port"
	held() { # how many partitions owner $1 holds in pipeline $2
		local n=0
		for i in 0 1 2 3 4 5 6 7; do
			[ "$(redis-cli -p "$port" hget "spate:$2:{log/orders/$i}" owner)" = "$1" ] && n=$((n + 1))
		done
		echo $n
	}
	;;
dynamodb)
	# dynalite on a free port of 127.0.0.1; it exits when its stdin (the fifo) closes
	mkfifo "$dir/in"
	node "$here/../tests/tools/dynalite.js" "$here/../.deps/node/node_modules" <"$dir/in" >"$dir/dyn.out" 2>&1 &
	pids+=($!)
	exec 3>"$dir/in"
	for _ in $(seq 300); do grep -q listening "$dir/dyn.out" 2>/dev/null && break; sleep 0.1; done
	dport=$(sed -n 's/^dynalite listening on 127.0.0.1://p' "$dir/dyn.out")
	export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$dport" AWS_REGION=us-east-1 \
		AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
	python3 "$here/dynalite_ops.py" create leases
	store="dynamodb:leases"
	held() { python3 "$here/dynalite_ops.py" held leases "$2" "$1"; }
	;;
*)
	echo "lease_failover.sh: store kind redis or dynamodb, not \"$kind\"" >&2
	exit 2
	;;
esac
"$spate" produce "$dir/orders" --partitions 8 --gen bytes --records 8000 --value-bytes 20 >/dev/null
now_ms() { date +%s%3N; }
times=()
for round in 1 2 3 4 5; do
	pl="failover$round"
	run() { exec "$spate" run -X "source=log:$dir/orders" -X "store=$store" -X "pipeline.name=$pl" \
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
echo "failover median of 5 ($kind): $med ms = $(python3 -c "print(round($med / $lease, 2))") lease timeouts (lease.timeout.ms=$lease; runs: ${times[*]})"
