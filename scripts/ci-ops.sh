#!/usr/bin/env bash
# CI stage for operations: the systemd unit, the Ansible role and the hil-tests, all against the
# amd64 rootfs from image/build.sh booted with systemd-nspawn (real systemd 252, cgroup v1 here).
# Prints what each part took and the figures measured (boot to READY, the node's idle RSS).
# Needs root (debootstrap, chroot, systemd-nspawn, network namespaces).
#
# Tools: Debian's packages only. `ansible` (bookworm: ansible-core 2.14 with community.docker's
# nsenter connection and community.general bundled, so no Galaxy download) and `ansible-lint`
# (6.13, run with --offline) from apt; systemd-nspawn from systemd-container.
#
#   scripts/ci-ops.sh [--packages | --built LOG]
# (scripts/stage-mode.sh): --packages only installs the packages; --built LOG uses the amd64
# rootfs that .ci/run's background build made.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/stage-mode.sh
image_out=${BITCRAPS_IMAGE_DIR:-$PWD/build/image}
wheelhouse=$PWD/build/wheelhouse
py=.venv/bin/python
stage_start=0
stage() { stage_start=$SECONDS; printf '\n=== %s\n' "$1" >&2; }
stage_end() { printf '=== %s took %ss\n' "$1" "$((SECONDS - stage_start))" >&2; }
t0=$SECONDS

stage "ops: system packages"
if [ "$(id -u)" != 0 ]; then
    echo "ci-ops.sh: must run as root (debootstrap, systemd-nspawn, network namespaces)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 update -qq
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
    systemd systemd-container debootstrap util-linux iproute2 openssh-client python3-venv ansible ansible-lint \
    >/dev/null
[ -x "$py" ] || { python3 -m venv .venv && "$py" -m pip install -q -e '.[test]'; }
stage_end "ops: system packages"
[ "$mode" = packages ] && exit 0

stage "ops: lint (ruff, mypy on hil-tests; ansible-lint)"
.venv/bin/ruff check hil-tests
.venv/bin/ruff format --check hil-tests
.venv/bin/mypy --strict hil-tests/hil hil-tests/*.py
(cd ansible && ansible-lint --offline --nocolor -q)
stage_end "ops: lint (ruff, mypy on hil-tests; ansible-lint)"

stage "ops: the unit file (systemd-analyze verify, systemd-sysusers)"
$py -m pytest -q tests/ops
stage_end "ops: the unit file (systemd-analyze verify, systemd-sysusers)"

if [ "$mode" = built ]; then
    echo "=== ops: amd64 rootfs built beside the tests (log: $built_log)" >&2
else
    stage "ops: amd64 rootfs (image/build.sh --rootfs-only)"
    bash image/build.sh --arch amd64 --rootfs-only --out "$image_out"
    stage_end "ops: amd64 rootfs (image/build.sh --rootfs-only)"
fi

stage "ops: wheelhouse for the role (x86_64, aarch64)"
bash ansible/build-wheelhouse.sh "$wheelhouse"
stage_end "ops: wheelhouse for the role (x86_64, aarch64)"

hil=(--rootfs "$image_out/rootfs-amd64" --wheelhouse "$wheelhouse")

stage "ops: the unit under systemd in nspawn (READY, STATUS, watchdog)"
$py -m pytest -q hil-tests/test_systemd_unit.py "${hil[@]}"
stage_end "ops: the unit under systemd in nspawn (READY, STATUS, watchdog)"

stage "ops: the Ansible role against nspawn boards (nsenter connection)"
$py -m pytest -q hil-tests/test_ansible_role.py "${hil[@]}"
stage_end "ops: the Ansible role against nspawn boards (nsenter connection)"

stage "ops: hil-tests (status, NAT discovery, TCP-TLS ping, link flap, the SSH path)"
$py -m pytest -q hil-tests --ignore=hil-tests/test_systemd_unit.py --ignore=hil-tests/test_ansible_role.py "${hil[@]}"
stage_end "ops: hil-tests (status, NAT discovery, TCP-TLS ping, link flap, the SSH path)"

echo "=== ops stage took $((SECONDS - t0))s" >&2
