#!/bin/bash
# tsan.sh - the ThreadSanitizer layer: drive a TSan build of spate through pipelines that
# stress its threads, without Criterion (it cannot run under TSan: "Could not initialize
# inheritable arena", Criterion #274).
#
#   bash scripts/tsan.sh [BUILD_DIR]      (default build-tsan; set up and built when needed)
#   TSAN_CASES="kafka two-engines" bash scripts/tsan.sh      (only those cases)
#   TSAN_KEEP=1 keeps the outputs (/tmp/spate-tsan.*); TSAN_EXTRA adds to TSAN_OPTIONS;
#   TSAN_SUPP= runs without scripts/tsan.supp (to see what it hides).
#
# Every case checks its exit status and the summary counts `spate run` prints, and
# fails on any "WARNING: ThreadSanitizer" in the stderr of anything it ran
# (TSAN_OPTIONS=halt_on_error=1: the first report ends the process with status 66).
# Cases: gen; parallelization.factor > 1; the log source (io_uring and pread); bisect
# into a log DLQ; item failures dropped; failing DLQ writes retried; a tailed log that
# is appended to while the workers scale to zero and back, ended by SIGTERM; SIGTERM
# mid-run and a resume; a second SIGTERM during a handler call; Kafka (mock-kafka) with
# item failures into a Kafka DLQ; two Kafka members in one group (partitions revoked);
# and tests/stress/two_engines (two engines in one process, push from several threads,
# spate_engine_stop and _stats from other threads).
#
# spate runs with tests/stress/c11threads.c preloaded (librdkafka's C11 threads through
# pthreads, which TSan intercepts) and scripts/tsan.supp (librdkafka's own libc calls;
# see there). Every child and server it starts is stopped on exit, also on failure.
# Output: one line per case, then `tsan: N passed, N failed` (scripts/test.sh adds
# those to its totals). Exit status 0 when every case passed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${1:-build-tsan}
case $build in /*) ;; *) build=$root/$build ;; esac

# Bounds that only catch hangs (no case asserts on time): a foreground run, a wait for a
# condition, a background run to exit after its signal.
RUN_BOUND_S=240
WAIT_BOUND_S=120

if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" -Db_sanitize=thread -Dwerror=true -Dtests=false -Dbenchmarks=false \
		-Dstress=true >/dev/null || exit 1
fi
ninja -C "$build" -j2 >/dev/null || { ninja -C "$build" -j2 | tail -30; exit 1; }

spate=$build/cli/spate
mock=$build/tests/tools/mock-kafka
shim=$build/tests/stress/libtsan-c11threads.so
for f in "$spate" "$mock" "$shim" "$build/tests/stress/two_engines"; do
	[ -e "$f" ] || { echo "tsan: $f is missing (configure $build with -Db_sanitize=thread -Dstress=true)"; exit 1; }
done
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_SUPP-suppressions=$root/scripts/tsan.supp} ${TSAN_EXTRA:-}"

work=$(mktemp -d /tmp/spate-tsan.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	sleep 0.2
	for p in "${pids[@]}"; do
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	if [ -n "${TSAN_KEEP:-}" ]; then
		echo "tsan: outputs kept in $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
start=$(date +%s)

# ---- helpers -----------------------------------------------------------------------

# A case: case_begin NAME, checks that call fail_if, case_end.
case_begin() {
	cname=$1
	why=
	t0=$(date +%s)
}
fail_if() { why+="${why:+; }$*"; }
case_end() {
	local f
	for f in "$work/$cname".*err; do
		[ -e "$f" ] || continue
		if grep -q "WARNING: ThreadSanitizer" "$f"; then
			fail_if "ThreadSanitizer reported (${f##*/})"
			sed -n '/WARNING: ThreadSanitizer/,/^SUMMARY/p' "$f" | head -60
		fi
	done
	if [ -z "$why" ]; then
		passed=$((passed + 1))
		echo "tsan: $cname: ok ($(($(date +%s) - t0)) s)"
	else
		failed=$((failed + 1))
		echo "tsan: $cname: FAILED: $why"
		for f in "$work/$cname".*err; do
			[ -s "$f" ] && { echo "--- ${f##*/} (tail)"; tail -15 "$f"; }
		done
	fi
}

# run TAG CMD...: CMD in the foreground with the shim, bounded; stdout and stderr in
# $work/$cname.TAG.out/.err; the exit status in $rc.
run() {
	local tag=$1
	shift
	timeout -k 5 "$RUN_BOUND_S" env LD_PRELOAD="$shim" "$@" >"$work/$cname.$tag.out" 2>"$work/$cname.$tag.err"
	rc=$?
}
# spawn TAG CMD...: the same in the background; its pid in $bgpid (stopped on exit).
spawn() {
	local tag=$1
	shift
	env LD_PRELOAD="$shim" "$@" >"$work/$cname.$tag.out" 2>"$work/$cname.$tag.err" &
	bgpid=$!
	pids+=("$bgpid")
}
# reap PID: wait for it to exit (killed after WAIT_BOUND_S: a hang); status in $rc.
reap() {
	local i
	for ((i = 0; i < WAIT_BOUND_S * 10; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$1" 2>/dev/null; then
		kill -KILL "$1"
		fail_if "pid $1 still running after ${WAIT_BOUND_S} s (killed)"
	fi
	wait "$1"
	rc=$?
}
# wait_until PID DESC CMD...: until CMD succeeds; fails the case when PID (- for none)
# exits first or WAIT_BOUND_S passes. Returns CMD's last status.
wait_until() {
	local pid=$1 desc=$2 i
	shift 2
	for ((i = 0; i < WAIT_BOUND_S * 10; i++)); do
		"$@" && return 0
		if [ "$pid" != - ] && ! kill -0 "$pid" 2>/dev/null; then
			fail_if "exited before $desc"
			return 1
		fi
		sleep 0.1
	done
	fail_if "no $desc within ${WAIT_BOUND_S} s"
	return 1
}
# val TAG KEY: the summary value KEY in $work/$cname.TAG.out (empty when missing).
val() { awk -v k="$2" '$1 == k { print $2 }' "$work/$cname.$1.out" 2>/dev/null; }
# expect TAG KEY OP N: the summary value compares (eq, ge, gt, le) to N.
expect() {
	local v
	v=$(val "$1" "$2")
	if [ -z "$v" ]; then
		fail_if "$1: no summary line \"$2\""
	elif ! [ "$v" -"$3" "$4" ]; then
		fail_if "$1: $2 $v, want $3 $4"
	fi
}
expect_rc() { [ "$rc" -eq "$2" ] || fail_if "$1: exit status $rc, want $2"; }
# ckpt_total STORE: records covered by the checkpoints (sum of last offset + 1).
ckpt_total() {
	env LD_PRELOAD="$shim" "$spate" checkpoint show "$1" 2>>"$work/$cname.ckpt.err" |
		awk '$2 ~ /^[0-9]+$/ { s += $2 + 1 } END { print s + 0 }'
}
ckpt_ge() { [ "$(ckpt_total "$1")" -ge "$2" ]; }
# lines N POISON_EVERY: N lines "kK,vI" (37 keys), every POISON_EVERY-th with " POISON"
lines() {
	awk -v n="$1" -v p="$2" 'BEGIN { for (i = 0; i < n; i++)
		printf "k%d,v%d%s\n", i % 37, i, (p > 0 && i % p == p - 1 ? " POISON" : "") }'
}
# produce_log DIR N POISON_EVERY: append N lines to the log at DIR (4 partitions).
produce_log() {
	lines "$2" "$3" | env LD_PRELOAD="$shim" "$spate" produce "$1" --partitions 4 --key-separator , \
		>/dev/null 2>>"$work/$cname.produce.err" || fail_if "spate produce $1 failed"
}

# ---- cases -------------------------------------------------------------------------

# need_log: the shared log of 20,000 records (every 100th poison), made once.
need_log() {
	[ -e "$work/log" ] || produce_log "$work/log" 20000 100
}
# need_kafka: mock-kafka running (started once, stopped on exit); its bootstrap in $bs
# and the common Kafka keys in k[]. Returns non-zero (the case failed) without it.
need_kafka() {
	if [ -z "${mockpid:-}" ]; then
		spawn mock "$mock" --brokers 1 --bootstrap-file "$work/kafka.bs" --topic k1:8 --topic k1dlq:1 \
			--topic k2:8
		mockpid=$bgpid
		wait_until "$mockpid" "mock-kafka's bootstrap file" test -s "$work/kafka.bs"
	fi
	[ -s "$work/kafka.bs" ] || { fail_if "mock-kafka did not start"; return 1; }
	bs=$(cat "$work/kafka.bs")
	k=(-X kafka.bootstrap.servers="$bs" -X kafka.session.timeout.ms=6000 -X kafka.heartbeat.interval.ms=500)
}

# gen: many partitions, a fixed pool of four workers, a small in-flight bound (partitions
# pause and resume), the stats line on the engine thread.
case_gen() {
	run r "$spate" run -X source=gen -X gen.records=200000 -X gen.partitions=8 -X handler=noop -X batch.size=64 \
		-X min.concurrency=4 -X max.concurrency=4 -X max.inflight.bytes=4M -X stats.interval.ms=20 \
		-X stats.file="$work/gen.stats"
	expect_rc r 0
	expect r records eq 200000
	expect r failed eq 0
	expect r dropped eq 0
}

# parallelization.factor 8: lanes of one partition on several workers at once.
case_gen_factor() {
	run r "$spate" run -X source=gen -X gen.kind=sensor -X gen.records=100000 -X gen.partitions=4 \
		-X parallelization.factor=8 -X handler=spin:2 -X batch.size=32 -X min.concurrency=1 \
		-X max.concurrency=4 -X scale.down.idle.ms=10 -X max.inflight.bytes=4M
	expect_rc r 0
	expect r records eq 100000
	expect r failed eq 0
}

# The log source (io_uring; then the pread fallback), to the end noted at start.
case_log() {
	need_log
	run r "$spate" run -X source=log:"$work/log" -X stop.at.end=true -X handler=noop -X store=none \
		-X max.concurrency=3 -X batch.size=50
	expect_rc r 0
	expect r records eq 20000
	SPATE_LOG_NO_URING=1 run p "$spate" run -X source=log:"$work/log" -X stop.at.end=true -X handler=noop \
		-X store=none -X max.concurrency=3 -X parallelization.factor=3
	expect_rc p 0
	expect p records eq 20000
}

# A whole failing batch is bisected down to its poison records, which go to a log DLQ
# after two retries; healthy records never do.
case_bisect_dlq() {
	need_log
	run r "$spate" run -X source=log:"$work/log" -X stop.at.end=true -X store=none -X handler=fail-if:POISON \
		-X bisect.on.error=true -X max.retry.attempts=2 -X retry.backoff.ms=1 -X retry.backoff.max.ms=10 \
		-X dlq=log:"$work/dlq1" -X batch.size=50 -X max.concurrency=3
	expect_rc r 0
	expect r records eq 20000
	expect r dlq eq 200
	expect r dropped eq 0
	expect r failed gt 200
	local n p
	n=$(env LD_PRELOAD="$shim" "$spate" log dump "$work/dlq1" 2>>"$work/$cname.dump.err" | grep -c .)
	p=$(env LD_PRELOAD="$shim" "$spate" log dump "$work/dlq1" 2>>"$work/$cname.dump.err" | grep -c POISON)
	[ "$n" = 200 ] && [ "$p" = 200 ] || fail_if "the DLQ holds $n records, $p of them poison; want 200, 200"
}

# Item failures with lanes that retry (their queued records move to the retry arena),
# dropped after two retries without a DLQ.
case_items_dropped() {
	need_log
	run r "$spate" run -X source=log:"$work/log" -X stop.at.end=true -X store=none -X handler=fail-if:POISON \
		-X report.item.failures=true -X parallelization.factor=4 -X max.retry.attempts=2 -X retry.backoff.ms=5 \
		-X retry.backoff.max.ms=20 -X batch.size=20 -X max.concurrency=4
	expect_rc r 0
	expect r records eq 20000
	expect r dropped eq 200
	expect r dlq eq 0
	# the smallest bound 4 partitions take: copies reserve room in a share the chunks
	# fill, and a chunk is admitted while a worker reserves (sp_flow_fits, sp_lane_migrate)
	run s "$spate" run -X source=log:"$work/log" -X stop.at.end=true -X store=none -X handler=fail-if:POISON \
		-X report.item.failures=true -X parallelization.factor=4 -X max.retry.attempts=2 -X retry.backoff.ms=5 \
		-X retry.backoff.max.ms=20 -X batch.size=20 -X max.concurrency=4 -X max.inflight.bytes=5M
	expect_rc s 0
	expect s records eq 20000
	expect s dropped eq 200
}

# DLQ writes that fail (SPATE_FAULT_DLQ) park the lane and are retried: nothing is lost.
case_dlq_errors() {
	need_log
	SPATE_FAULT_DLQ=fail:3 run r "$spate" run -X source=log:"$work/log" -X stop.at.end=true -X store=none \
		-X handler=fail-if:POISON -X report.item.failures=true -X max.retry.attempts=1 -X retry.backoff.ms=1 \
		-X retry.backoff.max.ms=5 -X dlq=log:"$work/dlq2" -X max.concurrency=3
	expect_rc r 0
	expect r records eq 20000
	expect r dlq eq 200
	expect r dlq_errors eq 3
}

# A tailed log (inotify) appended to while it runs; min.concurrency 0: the workers stop
# once idle and a cold start brings one back for the second burst; then SIGTERM.
case_tail_autoscale() {
	local pid store seen
	produce_log "$work/tail" 1000 0
	spawn r "$spate" run -X source=log:"$work/tail" -X pipeline.name=tail -X handler=noop -X min.concurrency=0 \
		-X max.concurrency=4 -X scale.down.idle.ms=1 -X checkpoint.interval.ms=50 -X stats.interval.ms=50 \
		-X stats.file="$work/tail.stats"
	pid=$bgpid
	store=file:$work/tail/checkpoints/tail
	if wait_until "$pid" "checkpoints at 1000 records" ckpt_ge "$store" 1000; then
		seen=$(wc -l <"$work/tail.stats")
		wait_until "$pid" "a stats line with no worker active" \
			sh -c "tail -n +$((seen + 1)) '$work/tail.stats' | grep -q '\"workers_active\":0,'" &&
			produce_log "$work/tail" 1000 0 &&
			wait_until "$pid" "checkpoints at 2000 records" ckpt_ge "$store" 2000
	fi
	kill -TERM "$pid" 2>/dev/null
	reap "$pid"
	expect_rc r 0
	expect r records eq 2000
	expect r cold_starts ge 2
}

# SIGTERM mid-run: the handler calls running finish, the final checkpoint is written,
# exit 0; the next run resumes after it and handles exactly the rest.
case_sigterm_resume() {
	local pid store c1
	produce_log "$work/term" 2000 0
	spawn r1 "$spate" run -X source=log:"$work/term" -X handler=sleep:20 -X batch.size=5 -X max.concurrency=2 \
		-X checkpoint.interval.ms=50
	pid=$bgpid
	store=file:$work/term/checkpoints/sleep-20
	wait_until "$pid" "checkpoints at 100 records" ckpt_ge "$store" 100
	kill -TERM "$pid" 2>/dev/null
	reap "$pid"
	expect_rc r1 0
	c1=$(ckpt_total "$store")
	expect r1 records ge "$c1"
	run r2 "$spate" run -X source=log:"$work/term" -X pipeline.name=sleep-20 -X handler=noop -X stop.at.end=true
	expect_rc r2 0
	expect r2 records eq $((2000 - c1))
	[ "$c1" -lt 2000 ] || echo "tsan: $cname: note: the first run finished the log before its SIGTERM"
}

# A second SIGTERM while a handler call runs (2 s) stops at once: exit 0 with a summary.
# Races are checked as everywhere; thread leaks are not reported for this one run: the
# command ends with _exit while a handler call still runs (guarantee 8, "a second signal
# stops at once"; cli/cmd_run.c), so worker threads that left their loop meanwhile
# (those that had finished their batch) are never joined, and TSan's _exit reports
# them as leaked, or not, depending on when each batch ended. Not a race; see
# docs/testing.md.
case_sigterm_twice() {
	local pid
	TSAN_OPTIONS="$TSAN_OPTIONS report_thread_leaks=0" \
		spawn r "$spate" run -X source=gen -X gen.records=0 -X handler=sleep:2000 -X min.concurrency=2 \
		-X max.concurrency=2 -X max.inflight.bytes=1M -X shutdown.timeout.ms=60000 -X stats.interval.ms=20 \
		-X stats.file="$work/twice.stats"
	pid=$bgpid
	wait_until "$pid" "a handler call running" grep -qs '"lanes_running":[1-9]' "$work/twice.stats"
	kill -TERM "$pid" 2>/dev/null
	sleep 0.3
	kill -TERM "$pid" 2>/dev/null
	reap "$pid"
	expect_rc r 0
	[ -n "$(val r records)" ] || fail_if "no summary"
}

# Kafka (librdkafka's mock cluster): item failures into a Kafka DLQ (the producer's
# poller thread beside the workers).
case_kafka() {
	need_kafka || return
	lines 2000 100 >"$work/k1.lines"
	run produce "$spate" produce --kafka k1 --key-separator , -X kafka.bootstrap.servers="$bs" <"$work/k1.lines"
	expect_rc produce 0
	run r "$spate" run -X source=kafka -X topics=k1 -X group.id=g1 "${k[@]}" -X stop.at.end=true \
		-X handler=fail-if:POISON -X report.item.failures=true -X max.retry.attempts=1 -X retry.backoff.ms=1 \
		-X dlq=kafka:k1dlq -X parallelization.factor=2 -X max.concurrency=3
	expect_rc r 0
	expect r records eq 2000
	expect r dlq eq 20
	expect r dropped eq 0
}

# Two members of one group: the second joins while the first works, so the first's
# partitions are revoked (in-flight records waited for, commits, then forgotten).
case_kafka_revoke() {
	local member apid bpid ra rb
	need_kafka || return
	lines 6000 0 >"$work/k2.lines"
	run produce "$spate" produce --kafka k2 --key-separator , -X kafka.bootstrap.servers="$bs" <"$work/k2.lines"
	expect_rc produce 0
	# a small in-flight bound, so a revoke finds records not yet fetched for the new owner
	member=(run -X source=kafka -X topics=k2 -X group.id=g2 "${k[@]}" -X stop.at.end=true -X handler=sleep:40
		-X batch.size=10 -X max.concurrency=2 -X max.inflight.records=400 -X checkpoint.interval.ms=100
		-X log.level=debug)
	spawn a "$spate" "${member[@]}" -X stats.interval.ms=50 -X stats.file="$work/revoke.stats"
	apid=$bgpid
	# the second member joins once the first holds the partitions and has handled some
	if wait_until "$apid" "records handled by the first member" grep -qs '"records":[1-9]' "$work/revoke.stats"; then
		spawn b "$spate" "${member[@]}"
		bpid=$bgpid
		reap "$bpid"
		expect_rc b 0
	fi
	reap "$apid"
	expect_rc a 0
	ra=$(val a records)
	rb=$(val b records)
	[ $((${ra:-0} + ${rb:-0})) -ge 6000 ] || fail_if "the members handled ${ra:-?} + ${rb:-?} records, want 6000 or more"
	# what was exercised depends on when the group rebalanced: reported, not asserted
	echo "tsan: $cname: member a handled ${ra:-?}, b ${rb:-?}; a released" \
		"$(grep -c 'released partition forgotten' "$work/$cname.a.err") partitions"
}

# Two engines in one process (see tests/stress/two_engines.c), a few times: each run
# interleaves its threads differently (a race it once showed came one run in four).
case_two_engines() {
	local i
	for i in 1 2 3 4; do
		mkdir -p "$work/two$i"
		run r$i "$build/tests/stress/two_engines" "$work/two$i"
		expect_rc r$i 0
	done
}

all="gen gen-factor log bisect-dlq items-dropped dlq-errors tail-autoscale sigterm-resume sigterm-twice
	kafka kafka-revoke two-engines"
for c in ${TSAN_CASES:-$all}; do
	case " $(echo $all) " in
	*" $c "*) ;;
	*) echo "tsan: unknown case \"$c\" (cases: $(echo $all))"; exit 2 ;;
	esac
	case_begin "$c"
	"case_${c//-/_}"
	case_end
done

echo "tsan: wall time $(($(date +%s) - start)) s"
echo "tsan: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
