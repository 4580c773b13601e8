#!/usr/bin/env bash
# Installs everything the tests need (Debian packages when run as root, a venv with the project
# and its test extra) and runs the tests in stages, fastest first, printing what each stage took.
set -euo pipefail
cd "$(dirname "$0")/.."

stage_start=0
stage() { stage_start=$SECONDS; printf '\n=== %s\n' "$1" >&2; }
stage_end() { printf '=== %s took %ss\n' "$1" "$((SECONDS - stage_start))" >&2; }

if [ "${BITCRAPS_SETUP_DONE:-}" != 1 ]; then  # .ci/run sets it after running scripts/setup.sh itself
    bash scripts/setup.sh
fi

py=.venv/bin/python
stage "unit tests (in-memory, virtual time)"
$py -m pytest -q tests/unit "$@"
stage_end "unit tests (in-memory, virtual time)"

stage "ble tests (fake BlueZ on a private dbus-daemon)"
$py -m pytest -q -m ble tests/ble "$@"
stage_end "ble tests (fake BlueZ on a private dbus-daemon)"

stage "socket and process tests"
$py -m pytest -q --durations=8 tests/socket "$@"
stage_end "socket and process tests"

stage "lab tests (namespaces, nftables, coturn)"
$py -m pytest -q --durations=12 -m lab tests/lab "$@"
stage_end "lab tests (namespaces, nftables, coturn)"

stage "adversarial tests (the node as a real process, attacked through its public surfaces)"
$py -m pytest -q --durations=8 tests/adversarial "$@"
stage_end "adversarial tests (the node as a real process, attacked through its public surfaces)"
