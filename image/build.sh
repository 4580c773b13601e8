#!/usr/bin/env bash
# Builds the bitcraps-node board image from Debian's own packages (bookworm), as root:
#
#   image/build.sh [--arch arm64|amd64] [--rootfs-only] [--out DIR] [--mirror URL]
#
#   arm64 (default): DIR/bitcraps-node-arm64.img (MBR: FAT "RASPIFIRM" for the Raspberry Pi
#       firmware, ext4 "bitcraps-root"; the kernel finds root by PARTUUID, so the same image
#       boots on a Pi 3/4 and under qemu), .img.zst + .sha256 + .bmap, manifest-arm64.txt.
#   amd64: DIR/rootfs-amd64.tar.zst + .sha256 (the same rootfs for amd64 boards).
#   --rootfs-only: stop at the configured directory DIR/rootfs-ARCH/ (systemd-nspawn boots it).
#
# No loop devices: debootstrap into a directory, `mkfs.ext4 -d` and `mkfs.vfat` + mtools for the
# filesystems, genimage for the partitioned card image. arm64 runs under qemu-user (binfmt_misc).
# Each phase prints what it took; DIR/build-times-ARCH.txt keeps them.
set -euo pipefail
# The whole script is one compound command, read before it runs: editing the file during a
# 20-minute build cannot change the running build.
{
arch=arm64
rootfs_only=0
out=
mirror=http://deb.debian.org/debian
suite=bookworm

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
    --arch) arch=${2:?}; shift 2 ;;
    --rootfs-only) rootfs_only=1; shift ;;
    --out) out=${2:?}; shift 2 ;;
    --mirror) mirror=${2:?}; shift 2 ;;
    -h | --help) usage ;;
    *) echo "build.sh: unknown argument $1" >&2; usage ;;
    esac
done
case "$arch" in arm64 | amd64) ;; *) echo "build.sh: --arch must be arm64 or amd64" >&2; exit 2 ;; esac
if [ "$(id -u)" != 0 ]; then
    echo "build.sh: must run as root (debootstrap, chroot)" >&2
    exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out=$(mkdir -p "${out:-$repo/build/image}" && cd "${out:-$repo/build/image}" && pwd)
rootfs=$out/rootfs-$arch
# One build per output directory and architecture at a time (they would unpack over each other).
exec 9>"$out/.build-$arch.lock"
if ! flock -n 9; then
    echo "build.sh: another build of $arch into $out is running" >&2
    exit 1
fi
work=$out/work-$arch
times=$out/build-times-$arch.txt
venv=/opt/bitcraps-node/venv
root_label=bitcraps-root
boot_label=RASPIFIRM
# The placeholder hostname that first boot replaces with bitcraps-<peer id prefix>.
placeholder_hostname=bitcraps-unnamed

log() { printf '[image %s] %s\n' "$(date -u +%T)" "$*" >&2; }
phase_name=
phase_t0=0
build_t0=$SECONDS
phase() {
    phase_name=$1
    phase_t0=$SECONDS
    log "=== $arch: $phase_name"
}
phase_end() {
    local took=$((SECONDS - phase_t0))
    log "=== $arch: $phase_name took ${took}s"
    printf '%s\t%ss\n' "$phase_name" "$took" >>"$times"
}

# Everything mounted below the rootfs, deepest first.
mounts_below() { awk -v r="$1" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts | sort -r; }
unmount_all() {
    local m
    for m in $(mounts_below "$rootfs"); do umount "$m" || umount -l "$m"; done
}
trap unmount_all EXIT

in_root() { LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive chroot "$rootfs" "$@"; }

# ---------------------------------------------------------------------------------------------
phase "prepare (wheel, binfmt, clean output)"
unmount_all
# Never delete through a bind mount of the host's /dev.
if [ -n "$(mounts_below "$rootfs")" ]; then
    echo "build.sh: still mounted below $rootfs: $(mounts_below "$rootfs" | tr '\n' ' ')" >&2
    exit 1
fi
rm -rf "$rootfs" "$work"
: >"$times"
# The node's wheel and all its dependencies for the board: the chroot installs offline.
bash "$here/wheelhouse.sh" --arch "$arch" --out "$work/wheels" >/dev/null
wheel=$(ls "$work/wheels"/bitcraps_node-*.whl)
log "wheel: $(basename "$wheel")"
if [ "$arch" = arm64 ] && [ "$(dpkg --print-architecture)" != arm64 ]; then
    [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable qemu-aarch64
fi
phase_end

# ---------------------------------------------------------------------------------------------
# The kernel is in the first --include: installed by debootstrap it costs seconds, later under
# qemu-user ~19 minutes. systemd-resolved/-timesyncd are for the board (a Pi has no RTC; TLS needs
# the time); they are installed only in the target, never on the build host.
common_pkgs=systemd-sysv,systemd-resolved,systemd-timesyncd,udev,kmod,dbus,iproute2,netbase,ca-certificates
common_pkgs=$common_pkgs,python3,python3-venv,bluez,openssh-server,initramfs-tools,zstd,fdisk,e2fsprogs
common_pkgs=$common_pkgs,procps,hostname,less,nano
if [ "$arch" = arm64 ]; then
    # raspi-firmware (non-free-firmware): bootcode, start*.elf, config.txt/cmdline.txt hooks.
    # firmware-brcm80211: Wi-Fi; bluez-firmware: the BCM43430A1/BCM4345C0 .hcd patches of the
    # Pi 3/4 on-board Bluetooth (loaded by hci_uart/btbcm).
    include=linux-image-arm64,raspi-firmware,firmware-brcm80211,bluez-firmware,wireless-regdb,$common_pkgs
else
    include=linux-image-amd64,$common_pkgs
fi

phase "debootstrap first stage (download, unpack)"
debootstrap --foreign --arch="$arch" --variant=minbase --components=main,non-free-firmware \
    --include="$include" "$suite" "$rootfs" "$mirror" >"$work/debootstrap-1.log" 2>&1 ||
    { tail -n 30 "$work/debootstrap-1.log" >&2; exit 1; }
phase_end

phase "debootstrap second stage (configure packages)"
# Written before the packages configure, so the kernel's one mkinitramfs run already uses them.
install -d "$rootfs/etc/initramfs-tools/conf.d"
if [ "$arch" = arm64 ]; then
    # MODULES=most makes mkinitramfs take ~5 minutes under qemu-user; the initramfs only has to
    # find an ext4 root on the Pi's SD card/USB or on qemu's virtio disk.
    printf 'MODULES=list\n' >"$rootfs/etc/initramfs-tools/conf.d/bitcraps-modules.conf"
    cp "$here/arm64/initramfs-modules" "$rootfs/etc/initramfs-tools/modules"
fi
# raspi-firmware's kernel/initramfs hooks write cmdline.txt from this (also on later upgrades).
# The MBR disk signature is per build; the root partition is its partition 2.
disk_signature=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
root_partuuid=$disk_signature-02
if [ "$arch" = arm64 ]; then
    install -d "$rootfs/etc/default"
    cat >"$rootfs/etc/default/raspi-firmware" <<EOF
# bitcraps-node image (image/build.sh): root by PARTUUID of the card image's partition 2.
ROOTPART=PARTUUID=$root_partuuid
CONSOLES="tty0 ttyS1,115200"
EOF
fi
# No service may start inside the build chroot.
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
in_root /debootstrap/debootstrap --second-stage >"$work/debootstrap-2.log" 2>&1 ||
    { tail -n 40 "$work/debootstrap-2.log" >&2; exit 1; }
unmount_all
phase_end

# ---------------------------------------------------------------------------------------------
phase "configure system"
mount -t proc proc "$rootfs/proc"
mount -t sysfs sysfs "$rootfs/sys"
mount --bind /dev "$rootfs/dev"
mount --bind /dev/pts "$rootfs/dev/pts"
# systemd-resolved's postinst made resolv.conf a link to its stub; the chroot uses the host's
# resolver until the end.
rm -f "$rootfs/etc/resolv.conf"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main non-free-firmware
deb $mirror $suite-updates main non-free-firmware
deb http://security.debian.org/debian-security $suite-security main non-free-firmware
EOF
echo "$placeholder_hostname" >"$rootfs/etc/hostname"
cat >"$rootfs/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	$placeholder_hostname
::1	localhost ip6-localhost ip6-loopback
EOF
if [ "$arch" = arm64 ]; then
    cat >"$rootfs/etc/fstab" <<EOF
# bitcraps-node image: filesystems by label (the kernel command line names root by PARTUUID).
LABEL=$root_label	/	ext4	rw,noatime,errors=remount-ro	0	1
LABEL=$boot_label	/boot/firmware	vfat	rw,noatime,umask=0022,nofail,x-systemd.device-timeout=30s	0	2
EOF
else
    # The board's own root device goes here; empty, the rootfs also boots in systemd-nspawn
    # (a / entry makes systemd-remount-fs fail in a container).
    cat >"$rootfs/etc/fstab" <<EOF
# bitcraps-node amd64 rootfs: add the board's root filesystem, e.g.
# LABEL=$root_label	/	ext4	rw,noatime,errors=remount-ro	0	1
EOF
fi
# The image's own files: network, first boot, console report.
cp -a "$here/rootfs/." "$rootfs/"
chmod 0755 "$rootfs"/usr/libexec/bitcraps/*
phase_end

phase "install the node into $venv"
cp -r "$work/wheels" "$rootfs/tmp/bitcraps-wheels"
in_root python3 -m venv "$venv"
in_root env -u PIP_FIND_LINKS "$venv/bin/pip" install -q --no-index --find-links /tmp/bitcraps-wheels \
    --disable-pip-version-check --no-cache-dir bitcraps-node
rm -rf "$rootfs/tmp/bitcraps-wheels"
# The unit and the system user ship in the package (node/data/).
data=$(in_root "$venv/bin/python" -c 'import node, pathlib; print(pathlib.Path(node.__file__).parent / "data")')
unit=$rootfs$data/systemd/bitcraps-node.service
sysusers=$rootfs$data/sysusers.d/bitcraps-node.conf
for f in "$unit" "$sysusers"; do
    [ -f "$f" ] || { echo "build.sh: the package ships no ${f#"$rootfs"}" >&2; exit 1; }
done
install -m 0644 "$unit" "$rootfs/usr/lib/systemd/system/bitcraps-node.service"
install -m 0644 "$sysusers" "$rootfs/usr/lib/sysusers.d/bitcraps-node.conf"
in_root systemd-sysusers
ln -sf "$venv/bin/bitcraps-node" "$rootfs/usr/local/bin/bitcraps-node"
# Default config: the embedded defaults, every key documented, validated by the node itself.
install -d -m 0755 "$rootfs/etc/bitcraps"
in_root "$venv/bin/bitcraps-node" config show >"$rootfs/etc/bitcraps/node.toml"
in_root "$venv/bin/bitcraps-node" config check /etc/bitcraps/node.toml >/dev/null
in_root systemctl enable bitcraps-node.service bitcraps-firstboot.service bitcraps-node-console.service \
    systemd-networkd.service systemd-resolved.service systemd-timesyncd.service ssh.service \
    bluetooth.service >/dev/null
# Only the card image's layout (root last on the disk) is known to be growable.
if [ "$arch" = arm64 ]; then
    in_root systemctl enable bitcraps-growroot.service >/dev/null
else
    rm "$rootfs/usr/lib/systemd/system/bitcraps-growroot.service" "$rootfs/usr/libexec/bitcraps/growroot"
fi
phase_end

phase "manifest and cleanup"
manifest=/usr/share/bitcraps-node/image-manifest.txt
install -d "$rootfs${manifest%/*}"
{
    echo "# bitcraps-node image manifest (recorded, not pinned)"
    echo "built_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "arch=$arch"
    echo "suite=$suite"
    echo "source=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)"
    echo "wheel=$(basename "$wheel")"
    [ "$arch" = arm64 ] && echo "root_partuuid=$root_partuuid"
    echo
    echo "## dpkg-query (package version architecture)"
    in_root dpkg-query -W -f '${binary:Package} ${Version} ${Architecture}\n'
    echo
    echo "## pip freeze ($venv)"
    in_root "$venv/bin/pip" freeze --disable-pip-version-check --all
} >"$rootfs$manifest"
cp "$rootfs$manifest" "$out/manifest-$arch.txt"
in_root apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs/debootstrap"
rm -f "$rootfs/usr/sbin/policy-rc.d"
# Per-board secrets and ids are made on first boot, never shipped.
rm -f "$rootfs"/etc/ssh/ssh_host_*
printf 'uninitialized\n' >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
ln -sf ../run/systemd/resolve/stub-resolv.conf "$rootfs/etc/resolv.conf"
unmount_all
phase_end

if [ "$rootfs_only" = 1 ]; then
    log "rootfs: $rootfs ($(du -sh "$rootfs" | cut -f1)); total $((SECONDS - build_t0))s"
    printf 'total\t%ss\n' "$((SECONDS - build_t0))" >>"$times"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
if [ "$arch" = amd64 ]; then
    phase "rootfs tarball"
    tar -C "$rootfs" --numeric-owner --xattrs --acls -cf - . | zstd -q -T0 -12 -o "$out/rootfs-amd64.tar.zst" -f
    (cd "$out" && sha256sum rootfs-amd64.tar.zst >rootfs-amd64.tar.zst.sha256)
    phase_end
    printf 'total\t%ss\n' "$((SECONDS - build_t0))" >>"$times"
    log "done: $out/rootfs-amd64.tar.zst; total $((SECONDS - build_t0))s"
    exit 0
fi

phase "filesystems (vfat boot, ext4 root)"
fw=$rootfs/boot/firmware
for f in config.txt cmdline.txt; do
    [ -s "$fw/$f" ] || { echo "build.sh: raspi-firmware wrote no $f" >&2; exit 1; }
done
# The FAT partition's files leave the root filesystem (it is mounted over /boot/firmware).
rm -rf "$work/bootfs"
mv "$fw" "$work/bootfs"
install -d -m 0755 "$fw"
boot_mib=256
mkfs.vfat -C -F 32 -n "$boot_label" "$work/boot.vfat" $((boot_mib * 1024)) >/dev/null
mcopy -s -p -m -i "$work/boot.vfat" "$work/bootfs"/* ::/
used_mib=$(du -sm "$rootfs" | cut -f1)
# Room for the metadata, the first boot's journal and upgrades; the card's rest is not used.
root_mib=$((used_mib * 13 / 10 + 512))
mkfs.ext4 -q -L "$root_label" -d "$rootfs" "$work/root.ext4" "${root_mib}M"
rmdir "$fw"
mv "$work/bootfs" "$fw"
phase_end

phase "card image (genimage)"
img=bitcraps-node-arm64.img
cat >"$work/genimage.cfg" <<EOF
image $img {
    hdimage {
        partition-table-type = "mbr"
        disk-signature = 0x$disk_signature
    }
    partition boot {
        partition-type = 0x0C
        bootable = "true"
        image = "boot.vfat"
        offset = 4M
    }
    partition root {
        partition-type = 0x83
        image = "root.ext4"
    }
}
EOF
rm -rf "$work/genimage-tmp" "$work/genimage-root" "$out/$img"
mkdir -p "$work/genimage-root"
genimage --config "$work/genimage.cfg" --rootpath "$work/genimage-root" --tmppath "$work/genimage-tmp" \
    --inputpath "$work" --outputpath "$out" >"$work/genimage.log" 2>&1 ||
    { tail -n 30 "$work/genimage.log" >&2; exit 1; }
rm -f "$work/boot.vfat" "$work/root.ext4"
phase_end

phase "compress, checksum, bmap"
zstd -q -T0 -12 -f "$out/$img" -o "$out/$img.zst"
(cd "$out" && sha256sum "$img.zst" >"$img.zst.sha256")
bmaptool create -o "$out/$img.bmap" "$out/$img"
phase_end

printf 'total\t%ss\n' "$((SECONDS - build_t0))" >>"$times"
log "done: $out/$img.zst ($(du -h "$out/$img.zst" | cut -f1)); total $((SECONDS - build_t0))s"
exit 0
}
