#!/usr/bin/env bash
# Runs Freshet's whole test suite: unit tests, the sqllogictest files against a real
# `freshet serve` (both wire protocols), and the differential tests.
# Installs what a fresh Debian machine lacks first (libclang for RocksDB's bindings).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v clang >/dev/null 2>&1 || dpkg -s libclang-dev >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing: ${need_apt[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq "${need_apt[@]}"
fi

# Client tests drive Freshet from Python's psycopg too.
python3 -c "import psycopg" 2>/dev/null || python3 -m pip install --quiet "psycopg[binary]>=3.1"

# The Kafka tests run a real Kafka-compatible broker (Tansu 0.6); fetch it once.
./scripts/tansu.sh path >/dev/null

# Keep build artifacts outside the clone so repeated runs (and CI on the same machine)
# stay warm.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/freshet-target}"

# The SQL tests start the real `freshet` binary, so build it first.
cargo build --bins
cargo test --workspace --no-fail-fast
