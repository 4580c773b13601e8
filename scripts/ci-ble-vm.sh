#!/usr/bin/env bash
# The BLE roles against the REAL bluetoothd: boots this machine's root filesystem read-only in a
# qemu VM (virtme-ng, Debian's kernel for its hci_vhci module, TCG: nested KVM hangs here), where
# hil-tests/ble_vm/guest.sh starts dbus-daemon, btvirt and bluetoothd and runs the ble_vm tests
# (our peripheral and Connector on hci0, bumble on a second emulated controller).
# Prints the figures and what each part took; exits non-zero on failure. .ci/run runs it after
# the benchmarks (hil-tests/README.md, "BLE VM").
# `--packages` installs what it needs and exits (.ci/run installs every stage's packages first).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
case "${1:-}" in --packages | "") ;; *) echo "ci-ble-vm.sh: unknown argument $1" >&2; exit 2 ;; esac
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in qemu-system-x86 linux-image-amd64 bluez bluez-test-tools dbus busybox-static kmod; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
.venv/bin/python -c "import bumble, virtme_ng" 2>/dev/null || .venv/bin/pip install -q -e '.[vm]'
[ "${1:-}" = --packages ] && exit 0
kernel=$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -1)
echo "=== ble-vm: install took $((SECONDS - t0))s; kernel $kernel" >&2

out=$(mktemp -d /tmp/ble-vm.XXXXXX)
# BLE_VM_KEEP=1 keeps the logs (bluetoothd.log, btvirt.log, pytest.log) for a post-mortem.
if [ "${BLE_VM_KEEP:-}" = 1 ]; then echo "=== ble-vm: logs kept in $out" >&2; else trap 'rm -rf "$out"' EXIT; fi
for var in BLE_VM_BLUETOOTHD_DEBUG BLE_VM_DBUS_MONITOR BLE_VM_BTMON; do
    [ -n "${!var:-}" ] && echo "$var=${!var}" >>"$out/env"
done
s=$SECONDS
kvm=(--disable-kvm)
[ "${BLE_VM_KVM:-}" = 1 ] && kvm=()
set +e
# Through a pipe: qemu reopens /proc/self/fd/1 and 2, which would truncate a plain file.
PATH="$PWD/.venv/bin:$PATH" timeout 420 vng --run "$kernel" "${kvm[@]}" --force-9p --memory 2G --cpus 2 \
    --rwdir "$out" --exec "$PWD/hil-tests/ble_vm/guest.sh $PWD $out $*" </dev/null 2>&1 | cat
rc=${PIPESTATUS[0]}
set -e
echo "=== ble-vm: the VM took $((SECONDS - s))s (boot, bluetoothd, tests), rc=$rc" >&2
echo "=== ble-vm figures" >&2
cat "$out/figures.txt" 2>/dev/null >&2 || echo "(none)" >&2
[ "$rc" = 0 ] || tail -20 "$out/bluetoothd.log" >&2 || true
echo "=== ble-vm total $((SECONDS - t0))s" >&2
exit "$rc"
