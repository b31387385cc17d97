#!/bin/bash
# dynamodb_store.sh - checkpoint writes per second through store=dynamodb:TABLE against
# the raw server: a plain conditional UpdateItem loop (curl, 1000 requests one after the
# other on one kept-alive connection, each conditional on leaseCounter and leaseOwner,
# not signed: dynalite checks no signature) and redis_store_bench on store=dynamodb:bench
# (one process, every write one conditional UpdateItem, signed with SigV4 by libcurl),
# against dynalite
# (npm, scripts/deps.sh puts it in .deps/node). Five rounds of 3 s runs, the three kinds
# interleaved (a shared machine drifts); medians and the store's ratio to the raw loop.
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
# the raw loop: one curl, N requests on one connection
python3 "$here/dynalite_ops.py" put bench '{"leaseKey":{"S":"bench/raw"},"leaseOwner":{"S":"bench"},"leaseCounter":{"N":"1"}}'
cat >"$dir/body" <<'JSON'
{"TableName":"bench","Key":{"leaseKey":{"S":"bench/raw"}},"UpdateExpression":"SET #ck = :ck, #cmp = :cmp","ConditionExpression":"#c = :c AND #o = :me","ExpressionAttributeNames":{"#ck":"checkpoint","#cmp":"spateCmp","#c":"leaseCounter","#o":"leaseOwner"},"ExpressionAttributeValues":{":ck":{"S":"12345"},":cmp":{"S":"0000000000003039"},":c":{"N":"1"},":me":{"S":"bench"}}}
JSON
n=1000
for i in $(seq $n); do
	[ "$i" -gt 1 ] && echo next
	cat <<CFG
url = "$AWS_ENDPOINT_URL_DYNAMODB/"
header = "Content-Type: application/x-amz-json-1.0"
header = "X-Amz-Target: DynamoDB_20120810.UpdateItem"
header = "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0"
header = "X-Amz-Date: 20200101T000000Z"
data-binary = "@$dir/body"
output = "/dev/null"
write-out = "%{http_code}\\n"
silent
CFG
done >"$dir/curl.cfg"
raw_loop() {
	local t0 t1 ok
	t0=$(date +%s%N)
	ok=$(curl -K "$dir/curl.cfg" | grep -c '^200$')
	t1=$(date +%s%N)
	[ "$ok" = "$n" ] || { echo "raw loop: $ok of $n answered 200" >&2; exit 1; }
	python3 -c "print(round($n / (($t1 - $t0) / 1e9)))"
}
med() { printf '%s\n' "$@" | sort -n | sed -n 3p; }
raw=() one=() eight=()
for _ in 1 2 3 4 5; do
	raw+=("$(raw_loop)")
	one+=("$("$bench" dynamodb:bench 3 1 | awk '{print $2}')")
	eight+=("$("$bench" dynamodb:bench 3 8 | awk '{print $2}')")
done
m=$(med "${raw[@]}") m1=$(med "${one[@]}") m8=$(med "${eight[@]}")
echo "plain conditional UpdateItem loop, 1 connection: median $m/s (runs: ${raw[*]})"
echo "store=dynamodb checkpoint writes/s, 1 partition a save, 1 process: median $m1 = $(python3 -c "print(round($m1 / $m, 2))") x the loop (runs: ${one[*]})"
echo "store=dynamodb checkpoint writes/s, 8 partitions a save, 1 process: median $m8 = $(python3 -c "print(round($m8 / $m, 2))") x the loop (runs: ${eight[*]})"
