#!/bin/bash
# log_vs_cat.sh - issue 3's comparison: over one log of at least 4 GB held in the page
# cache, the steady-state records/s of `spate run` log -> noop, next to `cat` of the same
# segment files converted to records/s (records x bytes-read / total bytes), and next to
# single-threaded `spate log verify`. Interleaved, median of N runs each.
# usage: benchmarks/log_vs_cat.sh [SPATE] [RUNS] [RECORDS] [WORKERS]
set -euo pipefail
spate=${1:-build/cli/spate}
runs=${2:-3}
records=${3:-32000000}
workers=${4:-2}
dir=${SPATE_BENCH_DIR:-$(mktemp -d /tmp/spate-bench-cat-XXXXXX)}
[ -n "${SPATE_BENCH_KEEP:-}" ] || trap 'rm -rf "$dir"' EXIT
if [ ! -d "$dir/log" ]; then
	"$spate" produce "$dir/log" --partitions 8 --gen bytes --records "$records" --value-bytes 100 \
		--keys 100000 -X flush.records=0 -X flush.ms=1000 </dev/null ||
	"$spate" produce "$dir/log" --partitions 8 --gen bytes --records "$records" --value-bytes 100 \
		--keys 100000 </dev/null
fi
bytes=$(cat "$dir"/log/*/*.log | wc -c)
echo "log: $records records, $bytes bytes in $(ls "$dir"/log/*/*.log | wc -l) segments" >&2
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
cat_r="" verify_r="" run_r=""
for i in $(seq 0 "$runs"); do
	t0=$(now); cat "$dir"/log/*/*.log >/dev/null; t1=$(now)
	c=$(awk -v r="$records" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", r/(b-a)}')
	t0=$(now); "$spate" log verify "$dir/log" >/dev/null; t1=$(now)
	v=$(awk -v r="$records" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", r/(b-a)}')
	s=$("$spate" run -X source=log:"$dir/log" -X handler=noop -X store=none -X batch.size=1000 \
		-X max.concurrency="$workers" -X stop.at.end=true -X log.level=error | awk '$1=="records_per_s"{print $2}')
	[ "$i" = 0 ] && continue # warm-up: fills the page cache
	echo "run $i: cat $c verify $v spate $s records/s" >&2
	cat_r="$cat_r $c"; verify_r="$verify_r $v"; run_r="$run_r $s"
done
mc=$(echo "$cat_r" | median); mv=$(echo "$verify_r" | median); ms=$(echo "$run_r" | median)
echo "records=$records bytes=$bytes partitions=8 value=100B workers=$workers runs=$runs"
echo "cat:            median $mc records/s (runs:$cat_r)"
echo "log verify:     median $mv records/s (runs:$verify_r)"
echo "spate log->noop median $ms records/s (runs:$run_r)"
awk -v s="$ms" -v c="$mc" -v v="$mv" 'BEGIN{printf "spate/cat = %.3f  spate/verify = %.2f\n", s/c, s/v}'
