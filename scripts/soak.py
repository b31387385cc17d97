#!/usr/bin/env python3
"""soak.py - a soak with faults (docs/testing.md, "The soak"): run by scripts/soak.sh.

For --seconds, over the embedded log, while a producer appends continuously:
  - pipeline "audit" (handler=journal) and pipeline "poison" (handler=fail-if:POISON with
    a DLQ) run side by side on the same log; each is killed at random moments (SIGKILL
    mostly, SIGTERM sometimes: then it must exit 0) and restarted;
  - some audit runs get a failing checkpoint store (SPATE_FAULT_STORE=fail:N);
  - the poison pipeline's DLQ is a 64 KiB tmpfs that fills up (when this runs as root and
    can mount one), else some of its runs get failing DLQ writes (SPATE_FAULT_DLQ=fail:N);
  - the producer is killed (SIGKILL or a clean end) and restarted at random moments.
While it runs, the audit store is read, then the journals: every position at or before a
checkpoint must be journalled (a checkpoint never passes what is not DONE), and no
checkpoint goes back, across restarts too. At the end the producer stops, the DLQ gets
room, both pipelines run to the end without faults, and:
  - every record in the log was journalled at least once (at-least-once), and every
    POISON record is in the DLQ with its original partition and position;
  - both pipelines' final checkpoints are at the end of every partition;
  - in-flight bytes (the stats lines) stayed within max.inflight.bytes and a chunk;
  - `spate log verify` passes on the log and the DLQ;
  - on copies of the log: a corrupt byte in a segment is named by verify and stops a run
    (log.on.corruption=fail) or is reported as skipped (skip); segments removed under a
    checkpoint stop the run with the range that was removed, nothing skipped silently.
It prints its figures (records, kills, faults, re-deliveries, peak RSS and in-flight
bytes) and exits 0, or 1 naming the first check that failed.
"""
import argparse, glob, os, random, re, shutil, signal, subprocess, sys, tempfile, threading, time

P = 4                     # partitions
# What may pass max.inflight.bytes (docs/semantics.md, guarantee 7): one chunk entering a
# partition with nothing in flight, a log read (at most 1.25 MiB) and its descriptors.
# Retrying lanes' copies reserve room in their partition's share first; before they did,
# a 20-minute soak saw 8.73 MB at 6 MiB and one at 16 MiB saw 17-23 MB.
CHUNK_SLACK = 2 << 20
POISON_EVERY = 97

ap = argparse.ArgumentParser(description="a soak of spate with faults (docs/testing.md)")
ap.add_argument("-b", "--build", default="build")
ap.add_argument("-t", "--seconds", type=float, default=600)
ap.add_argument("-s", "--seed", type=int, default=int(time.time()))
ap.add_argument("-r", "--rate", type=int, default=3000, help="records/s the producer offers")
ap.add_argument("-m", "--inflight-mib", type=int, default=6,
                help="max.inflight.bytes of both pipelines, MiB: small (the minimum for 4 partitions is 5), so catching up fills it")
ap.add_argument("-k", "--keep", action="store_true", help="keep the temporary directory")
ap.add_argument("--no-tmpfs", action="store_true", help="failing DLQ writes (SPATE_FAULT_DLQ) even as root")
a = ap.parse_args()
rnd = random.Random(a.seed)
INFLIGHT = a.inflight_mib << 20
spate = os.path.abspath(os.path.join(a.build, "cli", "spate"))
D = tempfile.mkdtemp(prefix="spate-soak-")
LOG, JA = f"{D}/log", f"{D}/ja"
CK_A, CK_B = f"file:{D}/ck-audit", f"file:{D}/ck-poison"
failures, fig = [], {"kills": 0, "terms": 0, "store_faults": 0, "dlq_faults": 0, "producer_kills": 0,
                     "producer_runs": 0, "lines_offered": 0, "samples": 0, "rss_max_kb": 0}
lock = threading.Lock()
stop = threading.Event()


def say(*m):
    print("soak:", *m, flush=True)


def fail(msg):
    with lock:
        failures.append(msg)
    say("FAIL:", msg)


def sh(*args, env=None, timeout=600):
    r = subprocess.run([spate, *args], capture_output=True, text=True, env=env, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def ckpt(store):
    """{partition: last done offset (-1: beginning)} of a store."""
    rc, out, err = sh("checkpoint", "show", store)
    if rc:
        return None
    got = {}
    for line in out.splitlines():
        name, _, v = line.rpartition(" ")
        got[name] = -1 if v == "beginning" else int(v)
    return got


# ---- the DLQ's disk: a small tmpfs when we may mount one ---------------------------------
dlqfs = f"{D}/dlqfs"
os.makedirs(dlqfs)
tmpfs = not a.no_tmpfs and os.geteuid() == 0 and subprocess.run(
    ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", dlqfs], capture_output=True).returncode == 0
DLQ = f"{dlqfs}/dlq"
if tmpfs:  # unmounted however the soak ends
    import atexit
    atexit.register(lambda: subprocess.run(["umount", dlqfs], capture_output=True))
say(f"dir {D} seed {a.seed} seconds {a.seconds:g} DLQ on {'a 64 KiB tmpfs' if tmpfs else 'disk (SPATE_FAULT_DLQ)'}")

rc, out, err = sh("log", "create", LOG, "--partitions", str(P))
if rc:
    sys.exit(f"soak: log create: {err}")


# ---- the producer: lines "k<i> v<i>[ POISON]", killed and restarted --------------------------
def producer():
    seq = 0
    while not stop.is_set():
        p = subprocess.Popen([spate, "produce", LOG, "--key-separator", " ", "-X", "segment.bytes=65536",
                              "-X", "flush.ms=20"], stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
        children.add(p)
        fig["producer_runs"] += 1
        until = time.time() + rnd.uniform(1, 6)
        t0, sent = time.time(), 0
        try:
            while time.time() < until and not stop.is_set():
                want = int((time.time() - t0) * a.rate)
                if want > sent:
                    lines = []
                    for _ in range(want - sent):
                        lines.append(f"k{seq % 50} v{seq}{' POISON' if seq % POISON_EVERY == 0 else ''}\n")
                        seq += 1
                    p.stdin.write("".join(lines).encode())
                    p.stdin.flush()
                    fig["lines_offered"] += want - sent
                    sent = want
                time.sleep(0.01)
        except BrokenPipeError:
            pass
        if not stop.is_set() and rnd.random() < 0.5:
            p.kill()
            fig["producer_kills"] += 1
        else:
            try:
                p.stdin.close()
            except BrokenPipeError:
                pass
        rc = p.wait()
        children.discard(p)
        if rc not in (0, -signal.SIGKILL):
            fail(f"spate produce exited {rc}")


# ---- the pipelines ----------------------------------------------------------------------------
def run_args(name, k, final=False):
    common = ["run", "-X", f"source=log:{LOG}", "-X", f"pipeline.name={name}", "-X", "checkpoint.interval.ms=100",
              "-X", f"max.inflight.bytes={INFLIGHT}", "-X", "stats.interval.ms=100",
              "-X", f"stats.file={D}/{name}.stats.{k}", "-X", "log.level=warn", "-X", "shutdown.timeout.ms=60000"]
    if final:
        common += ["-X", "stop.at.end=true"]
    if name == "audit":
        return common + ["-X", f"store={CK_A}", "-X", f"handler=journal:{JA}{k}"]
    return common + ["-X", f"store={CK_B}", "-X", "handler=fail-if:POISON", "-X", "report.item.failures=true",
                     "-X", "max.retry.attempts=2", "-X", "retry.backoff.ms=10", "-X", "retry.backoff.max.ms=200",
                     "-X", f"dlq=log:{DLQ}"]


class Journal:
    """The audit journals, read as they grow: (partition name, position) seen."""

    def __init__(self):
        self.seen, self.lines, self.pos, self.prefix = {}, 0, {}, {}

    def read(self):
        for f in glob.glob(f"{JA}*"):
            with open(f, "rb") as fh:
                fh.seek(self.pos.get(f, 0))
                data = fh.read()
            cut = data.rfind(b"\n") + 1  # a kill may leave a cut last line: read it later
            self.pos[f] = self.pos.get(f, 0) + cut
            for line in data[:cut].decode().splitlines():
                name, _, v = line.rpartition(" ")
                s = self.seen.setdefault(name, set())
                s.add(int(v))
                self.lines += 1

    def covers(self, name, upto):
        """None when every position up to upto was journalled, else the first missing."""
        s, o = self.seen.get(name, set()), self.prefix.get(name, 0)
        while o in s:
            o += 1
        self.prefix[name] = o
        return o if o <= upto else None


journal = Journal()
last_ck = {}
early_ck = None  # a copy of the audit store with a checkpoint early in partition 0


def check_audit_store():
    """The store first, then the journals: what a checkpoint passed must be journalled."""
    global early_ck
    ck = ckpt(CK_A)
    if ck is None:
        return
    if early_ck is None and ck.get("log/log/0", -1) >= 0 and os.path.exists(f"{D}/ck-audit"):
        shutil.copy(f"{D}/ck-audit", f"{D}/ck-early")
        early_ck = ck["log/log/0"]
    journal.read()
    fig["samples"] += 1
    for name, v in ck.items():
        if v < last_ck.get(name, -1):
            fail(f"the audit checkpoint of {name} went back from {last_ck[name]} to {v}")
        last_ck[name] = max(v, last_ck.get(name, -1))
        hole = journal.covers(name, v)
        if hole is not None:
            fail(f"the audit checkpoint of {name} is {v} but position {hole} was never journalled")


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pipeline(name):
    k = 0
    while not stop.is_set():
        k += 1
        env = dict(os.environ)
        if name == "audit" and rnd.random() < 0.3:
            env["SPATE_FAULT_STORE"] = f"fail:{rnd.randint(1, 5)}"
            fig["store_faults"] += 1
        if name == "poison" and not tmpfs and rnd.random() < 0.3:
            env["SPATE_FAULT_DLQ"] = f"fail:{rnd.randint(1, 5)}"
            fig["dlq_faults"] += 1
        with open(f"{D}/{name}.run{k}.err", "w") as err:
            p = subprocess.Popen([spate, *run_args(name, k)], stdout=subprocess.DEVNULL, stderr=err, env=env)
        children.add(p)
        until = time.time() + rnd.uniform(0.3, 5)
        while time.time() < until and p.poll() is None and not stop.is_set():
            fig["rss_max_kb"] = max(fig["rss_max_kb"], rss_kb(p.pid))
            if name == "audit":
                check_audit_store()
            time.sleep(0.25)
        if p.poll() is not None:
            children.discard(p)
            # a failed save stops a run (ERR_STORE, naming the store): a supervisor restarts it
            text = open(f"{D}/{name}.run{k}.err", errors="replace").read()
            if "SPATE_FAULT_STORE" in env and p.returncode == 1 and "ck-audit" in text and "ERR_STORE" in text:
                fig["store_fault_exits"] = fig.get("store_fault_exits", 0) + 1
            else:
                fail(f"{name} run {k} ended by itself with {p.returncode} ({D}/{name}.run{k}.err)")
            if name == "audit":
                check_audit_store()
            continue
        if rnd.random() < 0.25:
            p.send_signal(signal.SIGTERM)
            fig["terms"] += 1
            try:
                rc = p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = "a hang"
            faulted = "SPATE_FAULT_STORE" in env or "SPATE_FAULT_DLQ" in env
            if rc != 0 and not faulted:
                fail(f"{name} run {k}: SIGTERM gave {rc} ({D}/{name}.run{k}.err)")
        else:
            p.kill()
            p.wait()
            fig["kills"] += 1
        children.discard(p)
        if name == "audit":
            check_audit_store()  # the dead run's last word: still at or behind what is journalled


children = set()  # every spate process a fault thread started and has not reaped


def guarded(f, *args):
    # A thread that raises (a spawn that failed, ...) fails the soak and stops it at once,
    # and no process it started outlives it (one left running would hold a store's lock).
    try:
        f(*args)
    except Exception as e:
        fail(f"the {f.__name__}{args} thread raised {e!r}")
        stop.set()


t0 = time.time()
threads = [threading.Thread(target=guarded, args=(f, *args)) for f, args in
           ((producer, ()), (pipeline, ("audit",)), (pipeline, ("poison",)))]
for t in threads:
    t.start()
while time.time() - t0 < a.seconds and not failures:
    time.sleep(0.5)
stop.set()
for t in threads:
    t.join()
for c in list(children):
    if c.poll() is None:
        c.kill()
        c.wait()
if any(" thread raised " in f for f in failures):
    say(f"{len(failures)} failed checks, the soak stopped early; kept {D}")
    sys.exit(1)
say(f"faults done after {time.time() - t0:.0f} s; final runs")

# ---- the end: room in the DLQ, both pipelines to the end without faults ------------------------
if tmpfs:
    subprocess.run(["mount", "-o", "remount,size=256m", dlqfs], check=True)
for name in ("audit", "poison"):
    rc, out, err = sh(*run_args(name, "final", final=True), timeout=600)
    if rc:
        fail(f"the final {name} run exited {rc}: {err[-2000:]}")
    if name == "audit":
        check_audit_store()

rc, out, err = sh("log", "dump", LOG, "--count", "100000000", timeout=600)
recs, poison = {}, set()
for line in out.splitlines():
    m = re.match(r'(\d+):(\d+) .*? value="([^"]*)"', line)
    if m:
        part, off = int(m.group(1)), int(m.group(2))
        recs.setdefault(part, set()).add(off)
        if "POISON" in m.group(3):
            poison.add((part, off))
total = sum(len(s) for s in recs.values())
journal.read()
for part, offs in recs.items():
    name = f"log/log/{part}"
    missing = offs - journal.seen.get(name, set())
    if missing:
        fail(f"{len(missing)} records of {name} were never handled, e.g. offset {min(missing)}")
    for store, label in ((CK_A, "audit"), (CK_B, "poison")):
        v = (ckpt(store) or {}).get(name)
        if v != max(offs):
            fail(f"the final {label} checkpoint of {name} is {v}, the partition ends at {max(offs)}")
rc, out, err = sh("log", "dump", DLQ, "--count", "100000000", timeout=600)
dead = set()
for line in out.splitlines():
    pm, om = re.search(r'"spate.partition"="log/log/(\d+)"', line), re.search(r'"spate.position"="(\d+)"', line)
    if pm and om:
        dead.add((int(pm.group(1)), int(om.group(1))))
if poison - dead:
    fail(f"{len(poison - dead)} POISON records are not in the DLQ, e.g. {sorted(poison - dead)[0]}")
for d in (LOG, DLQ):
    rc, out, err = sh("log", "verify", d, timeout=600)
    if rc:
        fail(f"spate log verify {d}: {out[-500:]}{err[-500:]}")
peak = 0
for f in glob.glob(f"{D}/*.stats.*"):
    for line in open(f):
        m = re.search(r'"inflight_bytes":(\d+)', line)
        if m:
            peak = max(peak, int(m.group(1)))
if peak > INFLIGHT + CHUNK_SLACK:
    fail(f"in-flight bytes reached {peak}, over max.inflight.bytes {INFLIGHT} and a chunk ({CHUNK_SLACK})")

# ---- corrupt and removed segments, on copies ---------------------------------------------------
segs = sorted(glob.glob(f"{LOG}/0/*.log"))
if len(segs) >= 2:
    cdir = f"{D}/corrupt"
    shutil.copytree(LOG, cdir, ignore=shutil.ignore_patterns("checkpoints"))
    seg = f"{cdir}/0/{os.path.basename(segs[0])}"
    size = os.path.getsize(seg)
    with open(seg, "r+b") as f:
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 0x5A]))
    rc, out, err = sh("log", "verify", cdir)
    if rc == 0 or os.path.basename(seg) not in out + err:
        fail(f"verify did not name the corrupt segment {seg}: {out[-300:]}{err[-300:]}")
    base = ["run", "-X", f"source=log:{cdir}", "-X", "handler=noop", "-X", "stop.at.end=true", "-X", "store=none"]
    rc, out, err = sh(*base)
    if rc == 0 or os.path.basename(seg) not in err:
        fail(f"a run over a corrupt segment did not stop naming it ({rc}): {err[-300:]}")
    rc, out, err = sh(*base, "-X", "log.on.corruption=skip")
    if rc != 0 or "skipped corrupt bytes" not in err:
        fail(f"log.on.corruption=skip did not report what it skipped ({rc}): {err[-300:]}")
else:
    fail("partition 0 has fewer than 2 segments: run longer for the corruption check")
if early_ck is not None:
    rdir = f"{D}/removed/log"  # named log too: its partitions keep their names (log/log/P)
    shutil.copytree(LOG, rdir, ignore=shutil.ignore_patterns("checkpoints"))
    bases = sorted(int(os.path.basename(s)[:20]) for s in glob.glob(f"{rdir}/0/*.log"))
    gone = [b for b in bases if b <= early_ck + 1]
    nxt = [b for b in bases if b > early_ck + 1]
    if nxt:
        for b in gone:  # the segment holding the next record to handle, and those before
            for ext in ("log", "index"):
                p = f"{rdir}/0/{b:020d}.{ext}"
                if os.path.exists(p):
                    os.unlink(p)
        shutil.copy(f"{D}/ck-early", f"{D}/ck-removed")
        rc, out, err = sh("run", "-X", f"source=log:{rdir}", "-X", "handler=noop", "-X", "stop.at.end=true",
                          "-X", f"store=file:{D}/ck-removed", "-X", "pipeline.name=audit")
        if rc == 0 or "were removed" not in err:
            fail(f"segments removed under a checkpoint were not reported ({rc}): {err[-300:]}")
        fig["removed_check"] = "done"

if early_ck is None:
    fail("the audit pipeline never checkpointed partition 0 while it ran: no removed-segment check")
if tmpfs and failures:
    shutil.copytree(dlqfs, f"{D}/dlq-kept")  # the tmpfs is unmounted at exit
dlq_errors = sum(open(f, errors="replace").read().count("No space left") for f in glob.glob(f"{D}/poison.run*.err"))
fig["dlq_full_errors"] = dlq_errors
if tmpfs and len(dead) > 200 and not dlq_errors:
    fail("the DLQ's tmpfs never filled up: the fault was not injected")
fig.update(records=total, poison=len(poison), dead_letters=len(dead), journal_lines=journal.lines,
           redelivered=journal.lines - total, inflight_peak=peak, seconds=round(time.time() - t0))
say(" ".join(f"{k}={v}" for k, v in fig.items()))
if failures:
    say(f"{len(failures)} failed checks; kept {D}")
    sys.exit(1)
if tmpfs:
    subprocess.run(["umount", dlqfs], capture_output=True)
if not a.keep:
    shutil.rmtree(D)
say("ok")
