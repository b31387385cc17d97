#!/bin/bash
# demo.sh - the main job: install what is missing, build, produce a fraud demo stream
# into the embedded log, run the fraud pipeline on it with checkpoints (its alerts go to an
# alerts log), print the summary and how many alerts the log holds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# warnings are errors in development builds (as in scripts/test.sh); the project's
# defaults leave them warnings for users
if [ -f build/build.ninja ]; then
	meson configure build -Dwerror=true >/dev/null
else
	meson setup build -Dwerror=true >/dev/null
fi
ninja -C build >/dev/null
demo=${SPATE_DEMO_DIR:-/tmp/spate-demo}
rm -rf "$demo"
mkdir -p "$demo"
echo "== producing 1,000,000 fraud-like transactions into $demo/stream (8 partitions)"
build/cli/spate produce "$demo/stream" --partitions 8 --gen fraud --records 1000000
echo "== running the fraud pipeline (examples/fraud.conf)"
build/cli/spate run examples/fraud.conf -X source=log:"$demo/stream" -X store=file:"$demo/checkpoints" \
	-X dlq=log:"$demo/dlq" -X summary.json="$demo/summary.json" -X sink.alerts=log:"$demo/alerts"
echo "== alerts: $(build/cli/spate log dump "$demo/alerts" | wc -l) flagged transactions in $demo/alerts"
echo "   look at them with: build/cli/spate log dump $demo/alerts | less"
echo "== checkpoints"
build/cli/spate checkpoint show file:"$demo/checkpoints"
