#!/usr/bin/env bash
# Peak memory of a backfill: loads N rows into a table, then creates a view over it and
# prints the server's peak resident memory (VmHWM) before and during the CREATE.
#
#   bench/backfill/memory.sh [FRESHET_BIN] [N]
#
# FRESHET_BIN defaults to the debug build in $CARGO_TARGET_DIR (or target/); N to
# 1,000,000. Needs psql. Uses port 7013 and a fresh data directory under /tmp.
set -euo pipefail
BIN=${1:-${CARGO_TARGET_DIR:-target}/debug/freshet}
N=${2:-1000000}
DATA=$(mktemp -d /tmp/freshet-backfill-XXXXXX)
"$BIN" serve --listen 127.0.0.1:7013 --http-listen off --data-dir "$DATA/data" >"$DATA/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA"' EXIT
export PGHOST=127.0.0.1 PGPORT=7013 PGUSER=freshet PGDATABASE=freshet
for _ in $(seq 50); do psql -qAtc 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
peak() { grep -E 'VmHWM' "/proc/$PID/status" | tr -s ' \t' ' '; }
psql -qc "CREATE TABLE big (id BIGINT PRIMARY KEY, g INT, v BIGINT)"
STEP=250000
for ((i = 0; i < N; i += STEP)); do
    psql -qc "INSERT INTO big SELECT value AS id, value % 1000 AS g, value AS v
              FROM generate_series($((i + 1)), $((i + STEP < N ? i + STEP : N))) AS g(value)"
done
psql -qc "FLUSH"
echo "after loading $N rows: $(peak)"
echo 5 >"/proc/$PID/clear_refs" # resets VmHWM
START=$(date +%s.%N)
psql -qc "CREATE MATERIALIZED VIEW p AS SELECT id, v + 1 AS w FROM big"
END=$(date +%s.%N)
echo "CREATE MATERIALIZED VIEW over them: $(echo "$END - $START" | bc) s, $(peak)"
echo "rows in the view: $(psql -qAtc 'SELECT count(*) FROM p')"
