#!/usr/bin/env bash
# Builds Freshet (release) and runs `freshet playground`: a server with built-in demo data
# and ready views on a temporary data directory. Extra arguments go to the playground
# (e.g. --listen 127.0.0.1:6899 --rate 1000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
exec cargo run --release --bin freshet -- playground "$@"
