#!/usr/bin/env bash
# Soak benchmark: an endless playback stream of advancing windows; prints each view's state
# size every INTERVAL seconds so one can see it stay flat while events keep coming.
#   scripts/soak.sh [SECONDS=120] [ROWS_PER_SECOND=20000] [INTERVAL=10]
# Needs a built freshet binary (release if present, else debug) and psql.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-120}; RATE=${2:-20000}; EVERY=${3:-10}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/freshet-target}
BIN=$TARGET/release/freshet; [ -x "$BIN" ] || BIN=$TARGET/debug/freshet
[ -x "$BIN" ] || BIN=${HOME}/.cache/freshet-target-release/release/freshet
PORT=${PORT:-6899}; DIR=$(mktemp -d)
"$BIN" serve --listen 127.0.0.1:$PORT --data-dir "$DIR" >"$DIR/log" 2>&1 &
PID=$!; trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 50); do psql -h 127.0.0.1 -p $PORT -c 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
q() { psql -h 127.0.0.1 -p $PORT -X -q -t -A -F ' ' -c "$1"; }
q "CREATE SOURCE plays (user_id BIGINT, title_id BIGINT, country VARCHAR, event_time TIMESTAMPTZ,
     WATERMARK FOR event_time AS event_time - INTERVAL '5 seconds')
   WITH (connector = 'playback', playback.rows.per.second = '$RATE', playback.speedup = '60')"
q "CREATE MATERIALIZED VIEW per_minute_closed AS SELECT window_start, country, count(*) AS plays
   FROM TUMBLE(plays, event_time, INTERVAL '1 minute') GROUP BY window_start, country EMIT ON WINDOW CLOSE"
q "CREATE MATERIALIZED VIEW trending AS SELECT window_start, title_id, count(*) AS plays
   FROM HOP(plays, event_time, INTERVAL '1 minute', INTERVAL '5 minutes') GROUP BY window_start, title_id"
echo "binary: $BIN; $RATE events/s of playback, event time 60x the clock; machine: $(nproc) cores"
printf '%6s %12s %10s  %s\n' secs events late "view: view_rows state_rows state_bytes"
start=$(date +%s)
while :; do
  sleep "$EVERY"
  t=$(( $(date +%s) - start ))
  ev=$(q "SELECT coalesce(sum(plays),0) FROM per_minute_closed")
  late=$(q "SELECT count(*) FROM freshet_catalog.late_events")
  st=$(q "SELECT view_name, view_rows, state_rows, state_bytes FROM freshet_catalog.view_state ORDER BY 1" | tr '\n' ';')
  printf '%6s %12s %10s  %s\n' "$t" "$ev" "$late" "$st"
  [ "$t" -ge "$SECS" ] && break
done
