#!/usr/bin/env bash
# Nexmark side by side: Freshet (release build, built-in Nexmark generator) and Flink SQL
# via PyFlink (datagen bids, RocksDB, 1 s checkpoints, parallelism 2), on this machine.
#
#   scripts/bench_nexmark.sh [EVENTS] [FLINK_QUERIES]
#
# EVENTS (default 1000000) bids; FLINK_QUERIES (default q0,q1,q2,q5,q7; empty: skip Flink).
# Freshet runs every query twice: as a materialized view, and as a blackhole sink (what
# Flink's blackhole sink and RisingWave's Nexmark runs measure).
# Then the same events as JSON from Kafka (KAFKA_QUERIES, default q0,q1,q2,q5,q7; empty:
# skip), and the freshness and serving benchmarks (LATENCY=0 skips them).
# Flink needs `python3 -m venv ~/.cache/flink-venv && ~/.cache/flink-venv/bin/pip install
# apache-flink` (done here if missing) and Java 17.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-1000000}"
FLINK_QUERIES="${2-q0,q1,q2,q5,q7}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/freshet-target}"
./scripts/deps.sh >/dev/null
cargo build --release --bins
echo "## Freshet (release), $EVENTS bids, $(nproc) cores"
"$CARGO_TARGET_DIR/release/nexmark_bench" --events "$EVENTS"
echo "## Freshet (release), every query as a blackhole sink (rows counted, not stored), $EVENTS bids"
"$CARGO_TARGET_DIR/release/nexmark_bench" --events "$EVENTS" --sink
if [ -n "$FLINK_QUERIES" ]; then
  if [ ! -x "$HOME/.cache/flink-venv/bin/python" ]; then
    python3 -m venv "$HOME/.cache/flink-venv"
    "$HOME/.cache/flink-venv/bin/pip" install -q apache-flink
  fi
  echo "## Flink $("$HOME/.cache/flink-venv/bin/pip" show apache-flink | awk '/^Version/{print $2}') (PyFlink), $EVENTS bids"
  "$HOME/.cache/flink-venv/bin/python" bench/flink/nexmark_flink.py --events "$EVENTS" --queries "$FLINK_QUERIES" 2>/dev/null
fi
KAFKA_QUERIES="${KAFKA_QUERIES-q0,q1,q2,q5,q7}"
if [ -n "$KAFKA_QUERIES" ]; then
  ./scripts/tansu.sh path >/dev/null
  echo "## Freshet (release), the same events as JSON from Kafka (Tansu), $EVENTS bids"
  "$CARGO_TARGET_DIR/release/nexmark_bench" --events "$EVENTS" --source kafka --queries "$KAFKA_QUERIES"
fi
if [ "${LATENCY:-1}" != 0 ]; then
  echo "## Freshness (Kafka produce to visible in a view) and serving (16 clients while ingesting)"
  "$CARGO_TARGET_DIR/release/latency_bench" all
fi
