#!/usr/bin/env bash
# CI's last stage: build the Raspberry Pi 3/4 arm64 card image with image/build.sh and test it
# (partition table and filesystems, the Pi firmware's config.txt/cmdline.txt, the root
# filesystem's content, a qemu-system-aarch64 boot to the node's READY). Prints what each part
# took, the image's size and the boot time. Needs root (debootstrap, chroot, binfmt_misc).
#
#   scripts/ci-image.sh [--packages | --built LOG]
# (scripts/stage-mode.sh): --packages only installs the packages; --built LOG runs only the tests
# of the image that .ci/run's background build made.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/stage-mode.sh
out=${BITCRAPS_IMAGE_DIR:-$PWD/build/image}
stage_start=0
stage() { stage_start=$SECONDS; printf '\n=== %s\n' "$1" >&2; }
stage_end() { printf '=== %s took %ss\n' "$1" "$((SECONDS - stage_start))" >&2; }
t0=$SECONDS

stage "image: system packages"
if [ "$(id -u)" != 0 ]; then
    echo "ci-image.sh: must run as root (debootstrap, chroot, binfmt_misc)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 update -qq
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
    debootstrap qemu-user-static binfmt-support qemu-system-arm genimage dosfstools mtools \
    qemu-utils e2fsprogs zstd fdisk bmap-tools cpio python3-venv >/dev/null
[ -x .venv/bin/python ] || { python3 -m venv .venv && .venv/bin/python -m pip install -q -e '.[test]'; }
stage_end "image: system packages"
[ "$mode" = packages ] && exit 0

if [ "$mode" = built ]; then
    echo "=== image: built beside the tests (log: $built_log)" >&2
else
    stage "image: build the arm64 card image"
    bash image/build.sh --arch arm64 --out "$out"
    stage_end "image: build the arm64 card image"
fi

stage "image: tests (partitions, filesystems, Pi boot config, rootfs, qemu boot to READY)"
BITCRAPS_IMAGE_DIR=$out .venv/bin/python -m pytest -q tests/image
stage_end "image: tests (partitions, filesystems, Pi boot config, rootfs, qemu boot to READY)"

echo "=== image figures" >&2
sed 's/^/    build: /' "$out/build-times-arm64.txt" >&2
printf '    %s compressed, %s raw\n' "$(du -h --apparent-size "$out/bitcraps-node-arm64.img.zst" | cut -f1)" \
    "$(du -h --apparent-size "$out/bitcraps-node-arm64.img" | cut -f1)" >&2
sed 's/^/    /' "$out/qemu-boot.txt" >&2
echo "=== image stage took $((SECONDS - t0))s" >&2
