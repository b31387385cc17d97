#!/bin/bash
# kinesis_read.sh - records/s spate reads from kinesalite (npm, one node process on
# 127.0.0.1) next to a plain GetRecords loop with curl over the same stream (one loop per
# shard, in parallel, Limit 10000, the count and NextShardIterator found with grep), and
# the CPU seconds per million records of spate (user + sys) and of kinesalite while each
# reads. Interleaved, median of RUNS. spate's rate is first to last record (its summary);
# the curl loop's is its wall time. kinesalite is single-threaded JavaScript: when its
# CPU seconds per million records times the rate is about 1 core, it is the limit.
# Figures: docs/benchmarks.md, docs/kinesis.md.
# usage: benchmarks/kinesis_read.sh [SPATE] [RUNS] [RECORDS] [SHARDS]
set -euo pipefail
spate=${1:-build/cli/spate}
runs=${2:-3}
records=${3:-100000}
shards=${4:-4}
mods=${SPATE_KINESALITE_MODULES:-$(pwd)/.deps/node/node_modules}
dir=$(mktemp -d /tmp/spate-kinbench-XXXXXX)
kl_pid=
trap '[ -n "$kl_pid" ] && kill $kl_pid 2>/dev/null; rm -rf "$dir"' EXIT
mkfifo "$dir/in"
node tests/tools/kinesalite.js "$mods" <"$dir/in" >"$dir/kl.out" 2>&1 &
kl_pid=$!
exec 9>"$dir/in" # kinesalite exits when this closes
for _ in $(seq 300); do grep -q listening "$dir/kl.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$dir/kl.out")
ep=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
call() {
	curl -s --aws-sigv4 "aws:amz:us-east-1:kinesis" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
		-H 'Content-Type: application/x-amz-json-1.1' -H "X-Amz-Target: Kinesis_20131202.$1" -d "$2" "$ep/"
}
call CreateStream "{\"StreamName\":\"bench\",\"ShardCount\":$shards}" >/dev/null
until call DescribeStreamSummary '{"StreamName":"bench"}' | grep -q ACTIVE; do sleep 0.1; done
t0=$(date +%s.%N)
"$spate" produce --kinesis bench --gen bytes --records "$records" --value-bytes 100 \
	-X kinesis.endpoint="$ep" -X kinesis.region=us-east-1
t1=$(date +%s.%N)
echo "put $records records of 100 B through spate produce --kinesis in $(echo "$t1 - $t0" | bc) s" >&2
ids=$(call ListShards '{"StreamName":"bench"}' | jq -r '.Shards[].ShardId')
node_cpu() { awk '{print $14 + $15}' "/proc/$kl_pid/stat"; } # clock ticks
tck=$(getconf CLK_TCK)
read_shard() {
	local it n=0 r c
	it=$(call GetShardIterator "{\"StreamName\":\"bench\",\"ShardId\":\"$1\",\"ShardIteratorType\":\"TRIM_HORIZON\"}" |
		jq -r .ShardIterator)
	while :; do
		r=$(call GetRecords "{\"ShardIterator\":\"$it\",\"Limit\":10000}")
		# grep, not jq: the loop's own parsing should cost next to nothing
		c=$({ grep -o '"SequenceNumber"' <<<"$r" || true; } | wc -l)
		[ "$c" -eq 0 ] && break
		n=$((n + c))
		it=$(grep -o '"NextShardIterator":"[^"]*"' <<<"$r" | cut -d'"' -f4)
	done
	echo "$n"
}
declare -a sp_rate sp_cpu sp_kl cu_rate cu_kl
for i in $(seq 1 "$runs"); do
	k0=$(node_cpu)
	/usr/bin/time -f "%U %S" -o "$dir/time" "$spate" run -X source=kinesis -X kinesis.stream=bench \
		-X kinesis.endpoint="$ep" -X kinesis.region=us-east-1 -X store=none -X stop.at.end=true \
		-X handler=noop -X batch.size=1000 >"$dir/sum" 2>"$dir/err"
	k1=$(node_cpu)
	got=$(awk '$1=="records"{print $2}' "$dir/sum")
	[ "$got" -eq "$records" ] || { echo "spate read $got of $records" >&2; cat "$dir/err" >&2; exit 1; }
	r=$(awk '$1=="records_per_s"{print $2}' "$dir/sum")
	c=$(awk -v n="$records" '{printf "%.3f", ($1 + $2) / n * 1e6}' "$dir/time")
	kc=$(awk -v a="$k0" -v b="$k1" -v t="$tck" -v n="$records" 'BEGIN{printf "%.2f", (b - a) / t / n * 1e6}')
	sp_rate+=("$r") sp_cpu+=("$c") sp_kl+=("$kc")
	echo "run $i spate: $r records/s, $c cpu s/M records, kinesalite $kc cpu s/M records" >&2
	k0=$(node_cpu)
	t0=$(date +%s.%N)
	total=0
	pids=()
	for s in $ids; do
		read_shard "$s" >"$dir/n.$s" &
		pids+=($!)
	done
	wait "${pids[@]}" # not kinesalite, also a child of this shell
	for s in $ids; do total=$((total + $(cat "$dir/n.$s"))); done
	t1=$(date +%s.%N)
	k1=$(node_cpu)
	[ "$total" -eq "$records" ] || { echo "curl read $total of $records" >&2; exit 1; }
	r=$(echo "$records / ($t1 - $t0)" | bc)
	kc=$(awk -v a="$k0" -v b="$k1" -v t="$tck" -v n="$records" 'BEGIN{printf "%.2f", (b - a) / t / n * 1e6}')
	cu_rate+=("$r") cu_kl+=("$kc")
	echo "run $i curl loop: $r records/s, kinesalite $kc cpu s/M records" >&2
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
echo "kinesalite stream of $records records of 100 B in $shards shards, $runs runs (medians)"
echo "spate kinesis -> noop: $(median "${sp_rate[@]}") records/s, $(median "${sp_cpu[@]}") cpu s per million records (kinesalite: $(median "${sp_kl[@]}"))"
echo "curl GetRecords loop:  $(median "${cu_rate[@]}") records/s (kinesalite: $(median "${cu_kl[@]}") cpu s per million records)"
