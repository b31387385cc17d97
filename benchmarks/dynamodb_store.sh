#!/bin/bash
# dynamodb_store.sh - checkpoint writes per second through store=dynamodb:TABLE against
# the raw server: a plain conditional UpdateItem loop (dynalite_ops.py: one connection
# kept alive, no signing) and redis_store_bench on store=dynamodb:bench (one process,
# every write one conditional UpdateItem, signed with SigV4 by libcurl), against dynalite
# (npm, scripts/deps.sh puts it in .deps/node). Medians of 3 runs of 3 s.
# usage: dynamodb_store.sh BENCH_BINARY   (run from the repository's root)
set -euo pipefail
bench=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
dir=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; exec 3>&- 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
# dynalite on a free port of 127.0.0.1; it exits when its stdin (the fifo) closes
mkfifo "$dir/in"
node "$root/tests/tools/dynalite.js" "$root/.deps/node/node_modules" <"$dir/in" >"$dir/out" 2>&1 &
pid=$!
exec 3>"$dir/in"
for _ in $(seq 300); do grep -q listening "$dir/out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/^dynalite listening on 127.0.0.1://p' "$dir/out")
[ -n "$port" ] || { cat "$dir/out" >&2; exit 1; }
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$port" AWS_REGION=us-east-1 \
	AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
python3 "$here/dynalite_ops.py" create bench
echo "== dynalite $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$root/.deps/node/node_modules/dynalite/package.json")"
med() { sort -n | sed -n 2p; }
r=()
for _ in 1 2 3; do r+=("$(python3 "$here/dynalite_ops.py" loop bench 3 | awk '{print $2}')"); done
echo "plain conditional UpdateItem loop, 1 connection: median $(printf '%s\n' "${r[@]}" | med)/s (runs: ${r[*]})"
for parts in 1 8; do
	r=()
	for _ in 1 2 3; do r+=("$("$bench" dynamodb:bench 3 "$parts" | awk '{print $2}')"); done
	echo "store=dynamodb checkpoint writes/s, $parts partitions a save, 1 process: median $(printf '%s\n' "${r[@]}" | med) (runs: ${r[*]})"
done
