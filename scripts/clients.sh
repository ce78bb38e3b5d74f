#!/usr/bin/env bash
# Installs the real clients the client tests drive (crates/sql-tests/tests/clients.rs):
# psql (Debian's postgresql-client), Python's psycopg 3, psycopg2, SQLAlchemy 2 and pandas
# (a virtualenv), node-postgres with pg-cursor (npm), pgjdbc (Debian's
# libpostgresql-jdbc-java) with a JDK to compile its test. Idempotent; quick when done.
#
#   scripts/clients.sh          install what is missing
#   scripts/clients.sh venv     print the virtualenv's python
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_DIR="${FRESHET_CACHE:-$HOME/.cache/freshet}"
VENV="$CACHE_DIR/venv"
REQS=crates/sql-tests/clients/requirements.txt

if [ "${1:-}" = venv ]; then
    echo "$VENV/bin/python"
    exit 0
fi

need_apt=()
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
[ -f /usr/share/java/postgresql.jar ] || need_apt+=(libpostgresql-jdbc-java)
command -v javac >/dev/null 2>&1 || need_apt+=(openjdk-17-jdk-headless)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
# The status page is tested in headless Chromium (crates/sql-tests/tests/operations.rs).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# The alert rules are checked with promtool (crates/sql-tests/tests/alerts.rs).
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "clients.sh: installing ${need_apt[*]}" >&2
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Python: a virtualenv, rebuilt when the requirements change.
stamp="$VENV/.requirements"
if ! cmp -s "$REQS" "$stamp" 2>/dev/null; then
    echo "clients.sh: installing the Python clients into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
    cp "$REQS" "$stamp"
fi

# Node: node-postgres and pg-cursor, at the versions package-lock.json pins.
node_dir=crates/sql-tests/clients/node
if [ ! -d "$node_dir/node_modules/pg-cursor" ]; then
    echo "clients.sh: installing node-postgres" >&2
    (cd "$node_dir" && npm ci --silent --no-audit --no-fund >/dev/null)
fi
