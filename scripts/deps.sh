#!/bin/bash
# deps.sh - install the Debian packages spate needs to build and test, when missing.
# Runs apt-get only if something is missing; needs root (or sudo) for that.
set -euo pipefail
# zlib1g-dev libsnappy-dev liblz4-dev libzstd-dev: the codecs of compressed batches (the
# embedded log); python3-kafka with python3-lz4 python3-zstandard python3-snappy: the
# interop tests' other RecordBatch implementation (tests/connectors/log/kafka_python.py);
# libmicrohttpd-dev libjansson-dev: the example ingest service (examples/ingest); curl:
# its test's client (tests/examples/test_ingest.c); libhiredis-dev: store=redis://;
# redis-server redis-tools: the Redis store's tests; openssl: the certificates of its TLS test
# libmicrohttpd-dev is also the metrics endpoint's (metrics.listen); python3-prometheus-client:
# the test that scrapes it (tests/engine/prom_scrape.py)
# clang with libFuzzer and the sanitizer runtimes: the fuzz build (scripts/fuzz.sh)
pkgs=(gcc openssl meson ninja-build pkg-config libcriterion-dev libxxhash-dev liburing-dev
      librdkafka-dev libisal-dev libjansson-dev libcurl4-openssl-dev libssl-dev
      libmicrohttpd-dev curl python3-prometheus-client libhiredis-dev redis-server redis-tools
      zlib1g-dev libsnappy-dev liblz4-dev libzstd-dev
      python3 python3-kafka python3-lz4 python3-zstandard python3-snappy
      clang libfuzzer-14-dev libclang-rt-14-dev)
# node runs kinesalite and dynalite, the Kinesis and DynamoDB servers of the tests
# (installed below with npm); a node that is already there (another packaging of it) is
# kept
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
[ "${1:-}" = "--bench" ] && pkgs+=(gnuplot-nox linux-perf python3 kcat)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps: installing ${missing[*]}" >&2
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO=sudo
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# kinesalite and dynalite (npm) for the Kinesis and DynamoDB store tests, into the
# repository's .deps/node (never globally); tests/meson.build points the tests at it.
# Pinned: the versions the tests were written against (shared/reference/test-peers.md).
KINESALITE_VERSION=3.3.3
DYNALITE_VERSION=4.0.0
root="$(cd "$(dirname "$0")/.." && pwd)"
kdir="$root/.deps/node"
if ! grep -qs "\"version\": \"$KINESALITE_VERSION\"" "$kdir/node_modules/kinesalite/package.json" ||
   ! grep -qs "\"version\": \"$DYNALITE_VERSION\"" "$kdir/node_modules/dynalite/package.json"; then
	echo "deps: installing kinesalite $KINESALITE_VERSION and dynalite $DYNALITE_VERSION into $kdir" >&2
	mkdir -p "$kdir"
	npm install --prefix "$kdir" --no-audit --no-fund --loglevel=error \
		"kinesalite@$KINESALITE_VERSION" "dynalite@$DYNALITE_VERSION" >&2
fi
