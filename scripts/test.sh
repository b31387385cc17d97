#!/bin/bash
# test.sh - the whole test suite: install what is missing, build, run every test once
# plain and once under ASan+UBSan. Servers the tests need are started by the tests
# themselves (free ports on 127.0.0.1, stopped at the end).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh || exit 1
start=$(date +%s)
fail=0
total_ok=0
total_fail=0
run_suite() { # name, build dir, meson options...
	local name=$1 dir=$2
	shift 2
	echo "=== $name: building in $dir"
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" >/dev/null || { echo "meson setup failed"; fail=1; total_fail=$((total_fail + 1)); return; }
	fi
	ninja -C "$dir" >/dev/null || { ninja -C "$dir" | tail -40; fail=1; total_fail=$((total_fail + 1)); return; }
	echo "=== $name: testing"
	meson test -C "$dir" --print-errorlogs --num-processes 2 || fail=1
	local ok bad
	ok=$(grep -c '"result": "OK"' "$dir/meson-logs/testlog.json" 2>/dev/null)
	bad=$(grep -c -E '"result": "(FAIL|TIMEOUT|ERROR)"' "$dir/meson-logs/testlog.json" 2>/dev/null)
	ok=${ok:-0}
	bad=${bad:-0}
	total_ok=$((total_ok + ok))
	total_fail=$((total_fail + bad))
}
run_suite "plain" build
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	run_suite "asan+ubsan" build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbenchmarks=false
echo "suite wall time: $(( $(date +%s) - start )) s"
echo "tests: $total_ok passed, $total_fail failed"
exit $fail
