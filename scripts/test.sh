#!/usr/bin/env bash
# Runs Freshet's whole test suite: unit tests, the sqllogictest files against a real
# `freshet serve` (both wire protocols), and the differential tests.
# Installs what a fresh Debian machine lacks first (libclang for RocksDB's bindings).
set -euo pipefail
cd "$(dirname "$0")/.."

export FRESHET_TEST_DEPS=1
source scripts/deps.sh

# Client tests drive Freshet from Python's psycopg too.
python3 -c "import psycopg" 2>/dev/null || python3 -m pip install --quiet "psycopg[binary]>=3.1"

# The Kafka tests run a real Kafka-compatible broker (Tansu 0.6); fetch it once.
./scripts/tansu.sh path >/dev/null

# The client tests drive real clients: psql, psycopg, SQLAlchemy, pandas, node-postgres,
# pgjdbc. Installed once into caches outside the clone.
./scripts/clients.sh

# Keep build artifacts outside the clone so repeated runs (and CI on the same machine)
# stay warm.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/freshet-target}"

# The SQL tests start the real `freshet` binary, so build it first.
cargo build --bins
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# One closing line over every runner: cargo's harnesses and the sqllogictest runner.
passed=$(grep -oE '(test result: [a-zA-Z]+\. [0-9]+ passed|^slt: [0-9]+ passed)' "$log" | grep -oE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -oE '([0-9]+ failed;|^slt: [0-9]+ passed, [0-9]+ failed)' "$log" | grep -oE '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
echo
echo "tests: $passed passed, $failed failed"
exit "$status"
