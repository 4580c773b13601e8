#!/bin/bash
# Runs INSIDE the virtme-ng VM (scripts/ci-ble-vm.sh boots it): the host's root filesystem
# read-only, /tmp and /run writable. Brings up a real BlueZ on emulated controllers, then runs
# the ble_vm tests against it.
#   hci0: a btvirt LE controller on /dev/vhci, managed by the real bluetoothd (our node's side);
#   /tmp/bt-server-le: btvirt's socket server; each client gets one more LE controller on the
#   same virtual radio, driven over H4 by a bumble host (the other side), which the kernel and
#   bluetoothd never see.
set -euo pipefail
repo=$1
out=$2 # a host directory shared read-write: the pytest log and the figures
step() { echo "=== vm: $* ($(awk '{print $1}' /proc/uptime)s since boot)" >&2; }
step "guest up"
modprobe hci_vhci
mkdir -p /run/dbus
dbus-daemon --system --fork
cd /tmp
# -l1: one controller on /dev/vhci; -L: LE only; -s: the /tmp/bt-server-* sockets.
rm -f /tmp/bt-server-*
btvirt -d -l1 -L -s >"$out/btvirt.log" 2>&1 &
# Under TCG btvirt takes seconds to start: wait for both, up to 60 s.
for _ in $(seq 120); do [ -S /tmp/bt-server-le ] && [ -e /sys/class/bluetooth/hci0 ] && break; sleep 0.5; done
[ -e /sys/class/bluetooth/hci0 ] || { echo "vm: btvirt made no hci0" >&2; exit 1; }
# -E: experimental interfaces; -n: stay in the foreground (we own its lifetime here).
/usr/libexec/bluetooth/bluetoothd -n -E ${BLE_VM_BLUETOOTHD_DEBUG:+-d} >"$out/bluetoothd.log" 2>&1 &
for _ in $(seq 60); do btmgmt --index 0 info 2>/dev/null | grep -q 'current settings:.*powered' && break; sleep 0.5; done
btmgmt --index 0 info | grep -q 'current settings:.*powered' || { echo "vm: bluetoothd did not power hci0" >&2; exit 1; }
step "bluetoothd up on hci0"
cd "$repo"
export BITCRAPS_BLE_VM=1 PYTHONDONTWRITEBYTECODE=1 BLE_VM_FIGURES="$out/figures.txt" BLE_VM_BUMBLE=unix:/tmp/bt-server-le
set +e
timeout 240 .venv/bin/python -m pytest -p no:cacheprovider -q -m ble_vm hil-tests/ble_vm -o "testpaths=" "${@:3}" 2>&1 | tee "$out/pytest.log"
rc=${PIPESTATUS[0]}
step "tests done rc=$rc"
exit "$rc"
