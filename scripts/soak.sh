#!/bin/bash
# soak.sh - a soak with faults (docs/testing.md): the pipelines of scripts/soak.py over the
# embedded log for a given time while a producer appends, with kill -9 and restarts, a
# failing checkpoint store, a full DLQ disk (a small tmpfs when run as root), producer
# restarts; then at-least-once, checkpoints, memory, verify, corrupt and removed segments
# are checked. Exit 0, or 1 naming the first check that failed (the directory is kept).
# usage: scripts/soak.sh [-b BUILD] [-t SECONDS] [-r RATE] [-s SEED] [-k]
#   (defaults: build, 600 s, 3000 records/s offered, a seed from the clock)
# CI runs a short one: scripts/soak.sh -t 60 -r 1000 (scripts/test.sh, SOAK_SECONDS).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/soak.py "$@"
