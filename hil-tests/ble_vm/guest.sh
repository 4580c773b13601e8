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
# Options from the host (vng does not pass the environment through): BLE_VM_BLUETOOTHD_DEBUG,
# BLE_VM_DBUS_MONITOR, BLE_VM_BTMON (HCI trace: btmon -r OUT/hci.btsnoop).
[ -f "$out/env" ] && { set -a; . "$out/env"; set +a; }  # exported: the tests read them too
# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 0.5 s; under TCG on a shared machine
# each step may take several times its usual time, so the bounds are generous.
wait_for() {
    local limit=$1 what=$2 until=$((SECONDS + $1))
    shift 2
    while [ "$SECONDS" -lt "$until" ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    echo "vm: $what: not within ${limit}s" >&2
    return 1
}
indexed() { timeout 5 btmgmt --index 0 info 2>/dev/null | grep -q 'current settings:'; }
powered() { timeout 5 btmgmt --index 0 info 2>/dev/null | grep -q 'current settings:.* powered'; }
cd /tmp
# -l1: one controller on /dev/vhci; -L: LE only; -s: the /tmp/bt-server-* sockets.
# The kernel puts hci0 in MGMT's index list only once its HCI init went through; a slow btvirt
# under TCG can make an init command time out, leaving an hci0 in sysfs that MGMT never sees
# ("Number of controllers: 0"). Then start btvirt again, up to 3 times.
# An HCI command timing out shows in dmesg ("hci0: Opcode 0x0c03 failed: -110"): retry then.
init_failed() { dmesg | tail -n +$((seen + 1)) | grep -q 'hci0: Opcode .* failed'; }
indexed_or_failed() { indexed || init_failed; }
for attempt in 1 2 3; do
    rm -f /tmp/bt-server-*
    seen=$(dmesg | wc -l)
    btvirt -l1 -L -s >>"$out/btvirt.log" 2>&1 &
    btvirt=$!
    if wait_for 60 "btvirt's hci0 in MGMT's index list (attempt $attempt)" indexed_or_failed && indexed &&
        wait_for 30 "btvirt's socket server" test -S /tmp/bt-server-le; then
        break
    fi
    dmesg | tail -n +$((seen + 1)) | grep -i 'hci0\|bluetooth' | tail -3 >&2  || true
    [ "$attempt" = 3 ] && exit 1
    kill "$btvirt"
    wait "$btvirt" || true
    wait_for 30 "hci0 gone" test ! -e /sys/class/bluetooth/hci0 || true
done
step "hci0 up (btvirt attempt $attempt)"
if [ "${BLE_VM_DBUS_MONITOR:-}" = 1 ]; then dbus-monitor --system >"$out/dbus.log" 2>&1 & fi
if [ "${BLE_VM_BTMON:-}" = 1 ]; then btmon -w "$out/hci.btsnoop" >/dev/null 2>&1 & fi
# -E: experimental interfaces; -n: stay in the foreground (we own its lifetime here).
/usr/libexec/bluetooth/bluetoothd -n -E ${BLE_VM_BLUETOOTHD_DEBUG:+-d} >"$out/bluetoothd.log" 2>&1 &
# bluetoothd powers the adapter once it has read its state over MGMT (AutoEnable); if that is
# late, power it ourselves, as bluetoothd would, and wait again.
wait_for 45 "bluetoothd's Adapter1 for hci0" \
    dbus-send --system --print-reply --dest=org.bluez /org/bluez/hci0 org.freedesktop.DBus.Properties.Get \
    string:org.bluez.Adapter1 string:Address
wait_for 15 "hci0 powered by bluetoothd" powered || {
    btmgmt --index 0 power on >&2 || true
    wait_for 30 "hci0 powered by btmgmt" powered
}
step "bluetoothd up on hci0"
cd "$repo"
export BITCRAPS_BLE_VM=1 PYTHONDONTWRITEBYTECODE=1 BLE_VM_FIGURES="$out/figures.txt" BLE_VM_BUMBLE=unix:/tmp/bt-server-le
set +e
timeout 240 .venv/bin/python -m pytest -p no:cacheprovider -q -m ble_vm hil-tests/ble_vm -o "testpaths=" "${@:3}" 2>&1 | tee "$out/pytest.log"
rc=${PIPESTATUS[0]}
step "tests done rc=$rc"
exit "$rc"
