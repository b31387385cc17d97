#!/bin/bash
# redis_store.sh - checkpoint writes per second through store=redis:// against the raw
# server: redis-benchmark (SET and a trivial EVAL, one client, no pipelining, then 50
# clients) and redis_store_bench (one process, every write one conditional Lua script),
# on a redis-server with AOF and appendfsync always (what docs/stores.md asks for) and
# without persistence. usage: redis_store.sh BENCH_BINARY
set -euo pipefail
bench=$1
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
for mode in always none; do
	if [ $mode = always ]; then persist=(--appendonly yes --appendfsync always); else persist=(--appendonly no); fi
	redis-server --port "$port" --bind 127.0.0.1 --daemonize no --dir "$dir" --save '' "${persist[@]}" >"$dir/log" 2>&1 &
	pid=$!
	for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
	echo "== redis-server, persistence: $mode"
	rb() { redis-benchmark -p "$port" --csv "$@" | tail -1 | awk -F'","' '{print $2}'; }
	echo "redis-benchmark SET, 1 client: $(rb -c 1 -n 5000 -t set) requests/s"
	echo "redis-benchmark SET, 50 clients: $(rb -c 50 -n 50000 -t set) requests/s"
	echo "redis-benchmark EVAL of one HSET, 1 client: $(rb -c 1 -n 5000 eval "redis.call('HSET', KEYS[1], 'f', ARGV[1]) return 1" 1 k v) requests/s"
	for parts in 1 8; do
		r=()
		for _ in 1 2 3; do r+=("$("$bench" "redis://127.0.0.1:$port" 3 "$parts" | awk '{print $2}')"); done
		med=$(printf '%s\n' "${r[@]}" | sort -n | sed -n 2p)
		echo "store=redis checkpoint writes/s, $parts partitions a save, 1 process: median $med (runs: ${r[*]})"
	done
	kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
	rm -f "$dir"/*.aof "$dir"/appendonlydir/* 2>/dev/null || true
done
