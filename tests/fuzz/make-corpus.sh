#!/bin/bash
# make-corpus.sh - write the seed inputs of tests/fuzz/corpus with spate's own writer:
# segments, an index and a durable file from `spate produce`, dead letters from a run
# into a log DLQ, a file store's checkpoint file, config lines, JSON values. Each
# harness's input layout is described at the top of its fuzz_NAME.c; the seeds here
# follow it. Run from the repository with a built spate:
#
#   bash tests/fuzz/make-corpus.sh [BUILD_DIR]       (default build)
#
# It writes only files named seed-*; crash regressions (crash-*, named by libFuzzer,
# with the commit that fixed them) are kept as they are. The seeds in the repository
# were made by this script; a new run makes new bytes (timestamps), so rerun it only
# to change the seeds.
set -euo pipefail
cd "$(dirname "$0")/../.."
spate=${1:-build}/cli/spate
out=tests/fuzz/corpus
t=$(mktemp -d /tmp/spate-corpus.XXXXXX)
trap 'rm -rf "$t"' EXIT
for h in log_batch log_segment log_durable dlq_headers store_file conf fraud_json kafka_redact; do
	mkdir -p "$out/$h"
done
# seed FILE FORMAT [ARGS]: the bytes printf makes of them, in FILE
seed() {
	local f=$1
	shift
	printf "$@" >"$f"
}

# --- a log: partition 0 with five batches (one per produce) of four records (keys,
# values of 500 bytes so the index gets entries), partition 1 with one batch
val=$(head -c 500 /dev/zero | tr '\0' v)
for b in 0 1 2 3 4; do
	for i in 0 1 2 3; do echo "k$b$i,$b$i-$val"; done |
		"$spate" produce "$t/log" --partitions 2 --partition 0 --key-separator , >/dev/null
done
printf 'POISON-1\nok-2\nPOISON-3\n' | "$spate" produce "$t/log" --partition 1 >/dev/null
seg0=$t/log/0/00000000000000000000
# --- dead letters: partition 1's POISON records, through a pipeline with a file store
mkdir "$t/store"
"$spate" run -X source=log:"$t/log" -X handler=fail-if:POISON -X max.retry.attempts=0 \
	-X dlq=log:"$t/dlq" -X store=file:"$t/store/ckpt" -X stop.at.end=true >/dev/null 2>&1
dlqseg=$(ls "$t"/dlq/*/00000000000000000000.log | head -1)
for f in $(ls "$t"/dlq/*/00000000000000000000.log); do [ -s "$f" ] && dlqseg=$f; done

# log_batch: flags from to passed, then the bytes (fuzz_log_batch.c)
{ printf '\x00\x00\x00\x00'; cat "$seg0.log"; } >"$out/log_batch/seed-writer-batches"
{ printf '\x03\x06\x0d\x00'; cat "$seg0.log"; } >"$out/log_batch/seed-range-crcfix"
{ printf '\x19\x00\x00\x04'; head -c 700 "$seg0.log"; } >"$out/log_batch/seed-cut-lookahead"
{ printf '\x04\x00\x00\x00'; cat "$dlqseg"; } >"$out/log_batch/seed-dlq-redrive"
# one log per codec: two batches of 8 records (keys, values that compress, a header-less
# record), so the decode arena, the fast scan and the exact pair all see compressed bytes
for codec in gzip snappy lz4 zstd; do
	for b in 0 1; do
		for i in 0 1 2 3 4 5 6 7; do echo "k$b$i,$codec-$b$i-$val"; done |
			"$spate" produce "$t/$codec" --partitions 1 --key-separator , -X compression=$codec >/dev/null
	done
	{ printf '\x00\x00\x00\x00'; cat "$t/$codec/0/00000000000000000000.log"; } >"$out/log_batch/seed-codec-$codec"
done
# log_segment: flags target next index-entries, index, segment (fuzz_log_segment.c)
n=$(($(stat -c %s "$seg0.index") / 8))
{ printf "\\x00\\x0b\\x14\\x$(printf %02x $n)"; cat "$seg0.index" "$seg0.log"; } \
	>"$out/log_segment/seed-writer"
{ printf "\\x06\\x11\\x14\\x$(printf %02x $n)"; cat "$seg0.index"; head -c 5000 "$seg0.log"; } \
	>"$out/log_segment/seed-torn-half"
# log_durable: the durable file and the metadata file as they are
cp "$t/log/0/durable" "$out/log_durable/seed-durable"
cp "$t/log/spate-log.meta" "$out/log_durable/seed-meta"
# store_file: mode, then the file (fuzz_store_file.c)
{ printf '\x02'; cat "$t/store/ckpt"; } >"$out/store_file/seed-locked"
{ printf '\x01'; head -n 2 "$t/store/ckpt"; } >"$out/store_file/seed-torn-tmp"
# dlq_headers: flags cond attempts, error, key, value, then headers (fuzz_dlq_headers.c)
seed "$out/dlq_headers/seed-headers" '\x01\x00\x03\x0bbad payload\x02k1\x05value\x08trace-id\x03abc\x08spate.id\x01x\x05empty\xff'
seed "$out/dlq_headers/seed-null" '\x00\x02\x00\x00\xff\xff'
# conf: config files and -X lines
cp examples/fraud.conf "$out/conf/seed-fraud.conf"
seed "$out/conf/seed-x-lines" 'source=log:/nonexistent\nbatch.size=10k\nmax.inflight.bytes=64M\nstarting.position=at-timestamp:17\nlog.level=debug\nkafka.sasl.password=hunter22\n# a comment\n  handler = sleep:5  \n'
seed "$out/conf/seed-store-uri" 'store=redis://user:s3cretpw@127.0.0.1:6379\ndlq=log:/tmp/x\n'
# fraud_json: values like gen's fraud records, escapes, exponents
seed "$out/fraud_json/seed-txn" '{"tx":"t-1","card":"4000-1234-5678-9012","merchant":"m-0042","amount":123.45,"currency":"EUR","country":"DE","ts":1700000000000}'
seed "$out/fraud_json/seed-escapes" '{"tx":"t\\u00e9","card":"4000-66\\n12","merchant":"m-0666","amount":5.0001e3,"currency":"USD","country":"DE","ts":1,"x":[{"y":[true,null]}]}'
# kafka_redact: count, out size, secrets, text (fuzz_kafka_redact.c)
seed "$out/kafka_redact/seed-text" '\x01\x40\x08hunter22SASL authentication failed: password hunter22 rejected'
seed "$out/kafka_redact/seed-cut" '\x02\x20\x0bhunter22xyz\x06abcdefconfig error for hunter22x'
ls -l "$out"/*/seed-*
