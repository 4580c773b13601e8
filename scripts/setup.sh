#!/usr/bin/env bash
# What the tests need: Debian packages when run as root, and a venv with the project and its test
# and bench extras. scripts/test.sh runs it first; .ci/run runs it before its background builds.
set -euo pipefail
cd "$(dirname "$0")/.."

stage_start=0
stage() { stage_start=$SECONDS; printf '\n=== %s\n' "$1" >&2; }
stage_end() { printf '=== %s took %ss\n' "$1" "$((SECONDS - stage_start))" >&2; }

stage "system packages"
if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    # stun-server (stund, a classic RFC 3489 server) is for the lab; it starts no daemon itself.
    # dbus gives dbus-daemon, the private bus of the ble stage.
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
        python3 python3-venv iproute2 nftables conntrack coturn stun-server dbus openssl procps >/dev/null
elif [ "${CI:-}" = true ]; then
    echo "CI=true but not root: cannot install system packages or build the NAT lab" >&2
    exit 1
else
    echo "not root: skipping apt-get; lab tests will be skipped with a reason" >&2
fi
stage_end "system packages"

stage "python environment"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,bench]'
stage_end "python environment"
