#!/usr/bin/python3
"""kafka_python.py - kafka-python's own RecordBatch v2 code against the embedded log.

Debian's python3-kafka (kafka-python) has a RecordBatch v2 reader and writer of its own
(kafka/record/default_records.py) with gzip, snappy (xerial-framed), lz4 (frames) and
zstd: an implementation of the format that is not spate's. tests/connectors/log/
test_log_interop.c drives this script:

  kafka_python.py write SEGMENT CODEC N PER   write records 0..N-1, PER to a batch, each
                                               batch compressed with CODEC, as the segment
                                               file SEGMENT (base offsets 0, PER, ...)
  kafka_python.py read PDIR CODEC N            read every *.log of the partition folder PDIR
                                               (in name order): every batch's CRC valid and
                                               compressed with CODEC, records 0..N-1 as made
                                               below, field by field

The records are logtest.c's lt_make_text: record i has key "key-<i % 97>" (null when
i % 7 == 3), value {"i":I,"text":"abcdefgh" x (i % 40)} (null when i % 11 == 5), i % 4
headers hK = "v<3i+K>" (null when (i + K) % 5 == 0), timestamp 1700000000000 + 2i, 3 ms
less when i % 13 == 0. Exit 0 and one line "ok ..." when everything matched, 1 and what
did not otherwise. Runs under Debian's /usr/bin/python3 (where python3-kafka is).
"""
import glob
import os
import sys

from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
TS0 = 1700000000000


def make(i):
    key = None if i % 7 == 3 else b"key-%d" % (i % 97)
    value = None
    if i % 11 != 5:
        value = b'{"i":%d,"text":"' % i + b"abcdefgh" * (i % 40) + b'"}'
    headers = []
    for k in range(i % 4):
        hv = None if (i + k) % 5 == 0 else b"v%d" % (i * 3 + k)
        headers.append(("h%d" % k, hv))
    ts = TS0 + i * 2 - (3 if i % 13 == 0 else 0)
    return key, value, headers, ts


def write(segment, codec, n, per):
    code = CODECS[codec]
    with open(segment, "wb") as f:
        for base in range(0, n, per):
            b = DefaultRecordBatchBuilder(magic=2, compression_type=code, is_transactional=0,
                                          producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                          batch_size=1 << 30)
            for i in range(base, min(base + per, n)):
                key, value, headers, ts = make(i)
                b.append(i - base, timestamp=ts, key=key, value=value, headers=headers)
            buf = b.build()
            if buf[22] & 7 != code:
                print("kafka-python wrote batch %d uncompressed" % base)
                return 1
            buf[0:8] = base.to_bytes(8, "big")  # baseOffset: outside the CRC
            f.write(buf)
    print("ok %d records in %d batches (%s)" % (n, (n + per - 1) // per, codec))
    return 0


def read(pdir, codec, n):
    code = CODECS[codec]
    i = batches = 0
    for seg in sorted(glob.glob(os.path.join(pdir, "*.log"))):
        with open(seg, "rb") as f:
            data = f.read()
        mr = MemoryRecords(data)
        while mr.has_next():
            batch = mr.next_batch()
            if batch is None:
                break
            batches += 1
            if not batch.validate_crc():
                print("%s: batch at offset %d: CRC mismatch" % (seg, batch.base_offset))
                return 1
            if batch.compression_type != code:
                print("%s: batch at offset %d: codec %d, not %d" % (seg, batch.base_offset,
                                                                     batch.compression_type, code))
                return 1
            for rec in batch:
                key, value, headers, ts = make(i)
                got = (rec.offset, rec.timestamp, rec.key, rec.value, list(rec.headers))
                want = (i, ts, key, value, headers)
                if got != want:
                    print("record %d: got %r, want %r" % (i, got, want))
                    return 1
                i += 1
    if i != n:
        print("%d records, not %d" % (i, n))
        return 1
    print("ok %d records in %d batches (%s)" % (n, batches, codec))
    return 0


def main(argv):
    if len(argv) == 6 and argv[1] == "write":
        return write(argv[2], argv[3], int(argv[4]), int(argv[5]))
    if len(argv) == 5 and argv[1] == "read":
        return read(argv[2], argv[3], int(argv[4]))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
