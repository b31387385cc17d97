#!/usr/bin/python3
"""prom_scrape.py - scrape spate's metrics endpoint with a real Prometheus client.

usage: prom_scrape.py URL PARTITIONS [SUMMARY_JSON EXPECT_JSON]

Parses the exposition with prometheus_client's own parser (Debian's
python3-prometheus-client), checks that every metric of docs/metrics.md is there with
its type and HELP, that the histograms are cumulative with +Inf equal to _count, and that
the partition series carry PARTITIONS distinct partition labels. With SUMMARY_JSON (the
engine's spate_summary_json after the run) the counters must equal the summary's, and
EXPECT_JSON holds counts the test itself kept (handler errors). Prints what it found;
exits 1 naming every disagreement.
"""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

FAMILIES = {
    "spate_info": "gauge",
    "spate_records": "counter",
    "spate_polled_events": "counter",
    "spate_filtered_out_events": "counter",
    "spate_dropped_events": "counter",
    "spate_invocations": "counter",
    "spate_errors": "counter",
    "spate_failed_records": "counter",
    "spate_retries": "counter",
    "spate_throttles": "counter",
    "spate_cold_starts": "counter",
    "spate_dlq_delivered": "counter",
    "spate_dlq_delivery_failures": "counter",
    "spate_emitted": "counter",
    "spate_checkpoint_commits": "counter",
    "spate_checkpoint_failures": "counter",
    "spate_handler_busy_seconds": "counter",
    "spate_concurrent_executions": "gauge",
    "spate_workers_max": "gauge",
    "spate_lanes_waiting": "gauge",
    "spate_lanes_running": "gauge",
    "spate_inflight_bytes": "gauge",
    "spate_inflight_records": "gauge",
    "spate_uptime_seconds": "gauge",
    "spate_partition_offset_lag": "gauge",
    "spate_partition_iterator_age_seconds": "gauge",
    "spate_partition_records": "counter",
    "spate_partition_inflight_records": "gauge",
    "spate_partitions": "gauge",
    "spate_offset_lag": "gauge",
    "spate_iterator_age_seconds": "gauge",
    "spate_handler_duration_seconds": "histogram",
    "spate_latency_seconds": "histogram",
}

# counter (sample name) -> the summary's field
AGREE = {
    "spate_records_total": "records",
    "spate_polled_events_total": "records",
    "spate_invocations_total": "batches",
    "spate_failed_records_total": "failed",
    "spate_dlq_delivered_total": "dlq",
    "spate_dropped_events_total": "dropped",
    "spate_retries_total": "retries",
    "spate_filtered_out_events_total": "filtered",
    "spate_throttles_total": "throttled",
    "spate_cold_starts_total": "cold_starts",
    "spate_emitted_total": "emitted",
    "spate_checkpoint_failures_total": "store_errors",
    "spate_dlq_delivery_failures_total": "dlq_errors",
}


def main():
    url, nparts = sys.argv[1], int(sys.argv[2])
    summary = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    expect = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    with urllib.request.urlopen(url, timeout=20) as r:
        ctype = r.headers.get("Content-Type", "")
        text = r.read().decode("utf-8")
    bad = []
    if not ctype.startswith("text/plain; version=0.0.4"):
        bad.append("Content-Type %r" % ctype)
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    for name, typ in FAMILIES.items():
        f = fams.get(name)
        if f is None:
            bad.append("missing family " + name)
        elif f.type != typ:
            bad.append("%s: type %s, want %s" % (name, f.type, typ))
        elif not f.documentation:
            bad.append("%s: no HELP" % name)
    for name in fams:
        if name not in FAMILIES:
            bad.append("unexpected family " + name)
    one = {}
    for f in fams.values():
        for s in f.samples:
            if not s.labels:
                one[s.name] = s.value
    # histograms: per label set, cumulative buckets, +Inf == _count
    for hname in ("spate_handler_duration_seconds", "spate_latency_seconds"):
        f = fams.get(hname)
        if not f:
            continue
        series = {}
        for s in f.samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            d = series.setdefault(key, {"b": [], "count": None})
            if s.name.endswith("_bucket"):
                d["b"].append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_count"):
                d["count"] = s.value
        if hname == "spate_latency_seconds" and len(series) != 4:
            bad.append("%s: %d series, want 4" % (hname, len(series)))
        for key, d in series.items():
            b = sorted(d["b"])
            if not b or b[-1][0] != float("inf"):
                bad.append("%s%s: no +Inf bucket" % (hname, key))
                continue
            if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
                bad.append("%s%s: buckets not cumulative" % (hname, key))
            if b[-1][1] != d["count"]:
                bad.append("%s%s: +Inf %s != count %s" % (hname, key, b[-1][1], d["count"]))
            one["%s_count%s" % (hname, dict(key))] = d["count"]
    parts = {}
    for fname in ("spate_partition_records", "spate_partition_iterator_age_seconds",
                  "spate_partition_offset_lag", "spate_partition_inflight_records"):
        f = fams.get(fname)
        labels = {s.labels.get("partition") for s in f.samples} if f else set()
        if len(labels) != nparts or None in labels:
            bad.append("%s: partitions %s, want %d" % (fname, sorted(map(str, labels)), nparts))
        if f and fname == "spate_partition_records":
            parts = {s.labels["partition"]: s.value for s in f.samples}
    # beyond metrics.partitions.max the rest is one partition="_other": more in all
    if one.get("spate_partitions") != nparts and not ("_other" in parts and one.get("spate_partitions", 0) > nparts):
        bad.append("spate_partitions %s, want %d" % (one.get("spate_partitions"), nparts))
    if summary is not None:
        for sample, field in AGREE.items():
            if one.get(sample) != summary[field]:
                bad.append("%s = %s, summary %s = %s" % (sample, one.get(sample), field, summary[field]))
        if sum(parts.values()) != summary["records"]:
            bad.append("sum of spate_partition_records_total %s != records %s" % (sum(parts.values()),
                                                                                   summary["records"]))
        if one.get("spate_handler_duration_seconds_count{}") != summary["batches"]:
            bad.append("handler duration count %s != batches %s" % (
                one.get("spate_handler_duration_seconds_count{}"), summary["batches"]))
        handled = summary["records"] - summary["filtered"] - summary["dlq"] - summary["dropped"]
        for to in ("start", "done"):
            for frm in ("timestamp", "arrival"):
                c = one.get("spate_latency_seconds_count%s" % {"from": frm, "to": to})
                # every record handled counts once at DONE, and once per handler call at start
                want = handled if to == "done" else handled + summary["failed"]
                # a retried lane's records copied out of their chunk keep no arrival time
                if (c != want) if frm == "timestamp" else not (0 < c <= want):
                    bad.append("latency %s->%s count %s, want %s" % (frm, to, c, want))
        if one.get("spate_offset_lag") != 0:
            bad.append("spate_offset_lag %s after the run, want 0" % one.get("spate_offset_lag"))
        if one.get("spate_inflight_records") != 0:
            bad.append("spate_inflight_records %s after the run" % one.get("spate_inflight_records"))
    for sample, v in expect.items():
        if one.get(sample) != v:
            bad.append("%s = %s, want %s" % (sample, one.get(sample), v))
    report = {k: v for k, v in one.items() if k.startswith("spate_")}
    report["partitions"] = sorted(parts)
    print(json.dumps(report, sort_keys=True))
    if bad:
        print("\n".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
