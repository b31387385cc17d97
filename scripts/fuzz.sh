#!/bin/bash
# fuzz.sh - run the libFuzzer harnesses of tests/fuzz, each on its corpus, and report the
# executions. Sets up and builds the fuzz build (clang, -Dfuzz=true) when it is missing.
#
#   bash scripts/fuzz.sh                       every harness for 60 s, one at a time
#   bash scripts/fuzz.sh -t 5                  5 s each (what scripts/test.sh runs)
#   bash scripts/fuzz.sh -n 10000000 -t 36000 -j 2 log_batch conf
#                                              10 million executions each, two at a time
#
#   -t SECONDS  run each harness this long at most (-max_total_time; default 60)
#   -n RUNS     stop a harness after this many executions (-runs; default: only -t)
#   -j JOBS     harnesses running at a time (default 1)
#   -b DIR      the fuzz build (default build-fuzz)
#   -w DIR      where new inputs, crashes and logs go (default a new /tmp/spate-fuzz.*,
#               removed at the end unless something failed or -w is given)
#   NAME...     these harnesses only (default: every one the build lists)
#
# A harness reads tests/fuzz/corpus/NAME (seeds and regression inputs; never written
# here), with the dictionary tests/fuzz/NAME.dict when there is one, and writes what it finds new into DIR/NAME/corpus. A crash (a sanitizer report, a
# property a harness checks, a timeout or running out of memory) fails the harness: its
# input is saved as DIR/NAME/crash-* and the end of its report is printed. Each harness
# prints one line, "fuzz: NAME: N executions in S s, ok" or "... FAILED", and the script
# ends with "fuzz: P passed, F failed" (exit 1 when F > 0).
set -uo pipefail
cd "$(dirname "$0")/.."
secs=60 runs=0 jobs=1 build=build-fuzz work=""
while getopts "t:n:j:b:w:" o; do
	case $o in
	t) secs=$OPTARG ;;
	n) runs=$OPTARG ;;
	j) jobs=$OPTARG ;;
	b) build=$OPTARG ;;
	w) work=$OPTARG ;;
	*) sed -n '2,25p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
# Per input: a slower one is a hang (a finding); memory: a leak or a runaway allocation.
per_input_timeout=25
rss_limit_mb=2048

if [ ! -f "$build/build.ninja" ]; then
	CC=clang meson setup "$build" -Dfuzz=true -Dwerror=true >/dev/null || { echo "fuzz: meson setup of $build failed"; exit 1; }
fi
ninja -C "$build" >/dev/null || { ninja -C "$build" | tail -30; echo "fuzz: the build failed"; exit 1; }
names=("$@")
[ ${#names[@]} -gt 0 ] || read -r -a names <"$build/tests/fuzz/harnesses.txt"
keep=1
if [ -z "$work" ]; then
	work=$(mktemp -d /tmp/spate-fuzz.XXXXXX)
	keep=0
fi

# Run harness $1; its result line goes to $work/$1/result.
run_one() {
	local name=$1 exe=$build/tests/fuzz/fuzz_$1 dir=$work/$1 seeds=tests/fuzz/corpus/$1
	mkdir -p "$dir/corpus"
	if [ ! -x "$exe" ] || [ ! -d "$seeds" ]; then
		echo "fuzz: $name: FAILED: no $exe or no $seeds" >"$dir/result"
		return
	fi
	local args=(-max_total_time="$secs" -timeout="$per_input_timeout" -rss_limit_mb="$rss_limit_mb"
		-close_fd_mask=3 -print_final_stats=1 -artifact_prefix="$dir/")
	[ "$runs" -gt 0 ] && args+=(-runs="$runs")
	[ -f "tests/fuzz/$name.dict" ] && args+=(-dict="tests/fuzz/$name.dict")
	local start rc execs took
	start=$(date +%s)
	"$exe" "${args[@]}" "$dir/corpus" "$seeds" >"$dir/log" 2>&1
	rc=$?
	took=$(($(date +%s) - start))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
	if [ -z "$execs" ]; then # a crash ends libFuzzer before its final stats
		execs=$(grep -o '^#[0-9]*' "$dir/log" | tail -1 | tr -d '#')
	fi
	if [ $rc -eq 0 ]; then
		echo "fuzz: $name: ${execs:-0} executions in $took s, ok" >"$dir/result"
	else
		{
			echo "fuzz: $name: ${execs:-?} executions in $took s, FAILED (exit $rc); the log: $dir/log"
			grep -E 'fuzz property failed|^SUMMARY|ERROR: |^    #[0-9] ' "$dir/log" | head -20 | sed 's/^/    /'
			ls "$dir"/crash-* "$dir"/timeout-* "$dir"/oom-* "$dir"/leak-* 2>/dev/null | sed 's/^/    input: /'
		} >"$dir/result"
	fi
}

for name in "${names[@]}"; do
	while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
		wait -n
	done
	run_one "$name" &
done
wait
passed=0 failed=0
for name in "${names[@]}"; do
	cat "$work/$name/result"
	if grep -q ', ok$' "$work/$name/result"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
done
if [ $failed -eq 0 ] && [ $keep -eq 0 ]; then
	rm -rf "$work"
else
	echo "fuzz: new inputs, logs and crashes are in $work"
fi
echo "fuzz: $passed passed, $failed failed"
[ $failed -eq 0 ]
