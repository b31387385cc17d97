#!/bin/bash
# test.sh - the whole test suite: install what is missing, build, run every test once
# plain, a short soak with faults (scripts/soak.sh) and every test once under ASan+UBSan, run scripts/tsan.sh on a ThreadSanitizer build, run
# each libFuzzer harness a few seconds (scripts/fuzz.sh, a clang build), then
# compile (without running tests) a release build. Every build here makes warnings errors (-Dwerror=true): the
# project's defaults do not, so users on other compilers and build types can build.
# Servers the tests need are started by the tests themselves (free ports on 127.0.0.1,
# stopped at the end).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh || exit 1
start=$(date +%s)
fail=0
total_ok=0
total_fail=0
# Set up build dir $1 with the meson options that follow, -Dwerror=true and
# -Dingest=enabled (the example ingest service is built and tested, never skipped). A dir that
# exists already is reconfigured rather than set up again (meson setup refuses it), so
# one set up before this script passed -Dwerror=true, or with other options, gets them.
# -Dkafka=enabled everywhere: without librdkafka the build fails here, rather than
# silently leaving out the Kafka connector and its tests (the option's default is auto).
setup_dir() {
	local dir=$1
	shift
	local out
	if [ ! -f "$dir/build.ninja" ]; then
		out=$(meson setup "$dir" -Dwerror=true -Dkafka=enabled -Dingest=enabled "$@" 2>&1)
	else
		out=$(meson configure "$dir" -Dwerror=true -Dkafka=enabled -Dingest=enabled "$@" 2>&1)
	fi || { echo "$out" | tail -5; return 1; }
}
# Build dir $2 (name $1; meson options after them); a failed setup or build counts as one
# failed test. Returns non-zero when it failed.
build_dir() {
	local name=$1 dir=$2
	shift 2
	echo "=== $name: building in $dir"
	setup_dir "$dir" "$@" || { echo "meson setup of $dir failed"; fail=1; total_fail=$((total_fail + 1)); return 1; }
	local t0=$SECONDS
	ninja -C "$dir" >/dev/null || { ninja -C "$dir" | tail -40; fail=1; total_fail=$((total_fail + 1)); return 1; }
	echo "=== $name: built in $((SECONDS - t0)) s"
}
run_suite() { # name, build dir, meson options...
	local name=$1 dir=$2
	build_dir "$@" || return
	echo "=== $name: testing"
	local t0=$SECONDS
	meson test -C "$dir" --print-errorlogs --num-processes 3 || fail=1
	echo "=== $name: tested in $((SECONDS - t0)) s"
	local ok bad
	ok=$(grep -c '"result": "OK"' "$dir/meson-logs/testlog.json" 2>/dev/null)
	bad=$(grep -c -E '"result": "(FAIL|TIMEOUT|ERROR)"' "$dir/meson-logs/testlog.json" 2>/dev/null)
	ok=${ok:-0}
	bad=${bad:-0}
	total_ok=$((total_ok + ok))
	total_fail=$((total_fail + bad))
}
# the plain build is the project's default, debugoptimized (-O2 -g), with the stress
# programs compiled too
run_suite "plain" build -Dstress=true
# The soak with faults (scripts/soak.sh, docs/testing.md): the short version, on the plain
# build's spate; SOAK_SECONDS (default 60) of faults, then its checks. One test.
run_soak() {
	[ -x build/cli/spate ] || return
	echo "=== soak: ${SOAK_SECONDS:-60} s of faults"
	if bash scripts/soak.sh -b build -t "${SOAK_SECONDS:-60}" -r 1000; then
		total_ok=$((total_ok + 1))
	else
		fail=1
		total_fail=$((total_fail + 1))
	fi
}
run_soak
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	run_suite "asan+ubsan" build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbenchmarks=false
# ThreadSanitizer: Criterion cannot run under it (Criterion #274), so this build has no
# test suite; scripts/tsan.sh drives its spate binary and the stress programs instead
# (docs/testing.md). Each of its cases counts as one test.
run_tsan() {
	build_dir "tsan" build-tsan -Db_sanitize=thread -Dtests=false -Dbenchmarks=false -Dstress=true || return
	echo "=== tsan: testing"
	local log=build-tsan/meson-logs/tsan.log counts ok bad
	bash scripts/tsan.sh build-tsan 2>&1 | tee "$log"
	[ "${PIPESTATUS[0]}" -eq 0 ] || fail=1
	counts=$(sed -n -E 's/^tsan: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/p' "$log" | tail -1)
	if [ -z "$counts" ]; then
		echo "tsan: scripts/tsan.sh ended without its counts"
		fail=1
		total_fail=$((total_fail + 1))
		return
	fi
	read -r ok bad <<<"$counts"
	total_ok=$((total_ok + ok))
	total_fail=$((total_fail + bad))
}
run_tsan
# libFuzzer: every harness of tests/fuzz for FUZZ_SECONDS (default 5) on its corpus, the
# seeds and the inputs of crashes fixed before (scripts/fuzz.sh, docs/testing.md), in a
# clang build with ASan and UBSan. Each harness counts as one test.
run_fuzz() {
	CC=clang build_dir "fuzz" build-fuzz -Dfuzz=true || return
	echo "=== fuzz: each harness ${FUZZ_SECONDS:-5} s on its corpus"
	local log=build-fuzz/meson-logs/fuzz.log counts ok bad
	bash scripts/fuzz.sh -b build-fuzz -t "${FUZZ_SECONDS:-5}" -j 2 2>&1 | tee "$log"
	[ "${PIPESTATUS[0]}" -eq 0 ] || fail=1
	counts=$(sed -n -E 's/^fuzz: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/p' "$log" | tail -1)
	if [ -z "$counts" ]; then
		echo "fuzz: scripts/fuzz.sh ended without its counts"
		fail=1
		total_fail=$((total_fail + 1))
		return
	fi
	read -r ok bad <<<"$counts"
	total_ok=$((total_ok + ok))
	total_fail=$((total_fail + bad))
}
run_fuzz
# Compile only: the optimizer finds warnings (maybe-uninitialized) the plain build does not.
# The library, the CLI, the benchmarks and the stress programs: what a user's release build
# compiles. Not the Criterion tests: compiling them at -O3 cost 90 s of CI's 25 minutes,
# and the plain build (-O2) already compiles them with warnings as errors.
# (A separate debugoptimized compile is not needed: the plain build is one, stress
# programs included.)
build_dir "release (compile only)" build-release --buildtype=release -Dtests=false -Dstress=true
echo "suite wall time: $(( $(date +%s) - start )) s"
echo "tests: $total_ok passed, $total_fail failed"
exit $fail
