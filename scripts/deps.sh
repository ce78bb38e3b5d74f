#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test Freshet: libclang (RocksDB's
# bindings), a C++ compiler (RocksDB, librdkafka) and, for the client tests, psql.
# Sourced by scripts/test.sh and scripts/playground.sh.
need_apt=()
dpkg -s libclang-dev >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
command -v make >/dev/null 2>&1 || need_apt+=(make)
if [ "${FRESHET_TEST_DEPS:-0}" = 1 ]; then
    command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing: ${need_apt[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq "${need_apt[@]}"
fi
