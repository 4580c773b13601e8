"""The arm64 card image boots under qemu (TCG, -M virt) to the node's READY.

qemu's virt machine has no Pi firmware: the kernel and initramfs are taken from the image's FAT
partition (the files config.txt names) and root= from its cmdline.txt, so the same PARTUUID the Pi
uses finds the root partition, here on a virtio disk. bitcraps-node-console.service prints
"bitcraps-node READY on HOST: STATUS" on the console once the node's unit is active (Type=notify:
after READY=1). The image stays untouched: qemu writes to a qcow2 overlay, which is 1 GiB
bigger, so first boot must grow the root partition (bitcraps-growroot.service) as on a big card.
qemu gets no network device.
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import time
from pathlib import Path

import pytest

from tests.image import diskimage
from tests.image.test_pi_boot_config import _config, _initramfs_name, _setting

# TCG on a shared 2-core machine: generous, and not a timing assertion (only a hang detector).
BOOT_DEADLINE_S = 900
READY = re.compile(r"bitcraps-node READY on (\S+): (.*)")
GROWN = re.compile(r"growroot: /dev/vda2 grown to (\d+) MiB")
EXTRA_DISK_MIB = 1024
FAILED = re.compile(
    r"Failed to start .*bitcraps|bitcraps-node\.service: Failed|Kernel panic|"
    r"You are in emergency mode|Gave up waiting for root|ALERT! .* does not exist"
)


def _overlay(image: Path, dest: Path) -> Path:
    size = image.stat().st_size + EXTRA_DISK_MIB * (1 << 20)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image), str(dest), str(size)],
        check=True,
    )
    return dest


def _qemu_command(disk: Path, kernel: Path, initrd: Path, root: str) -> list[str]:
    return [
        "qemu-system-aarch64",
        "-M", "virt",
        "-cpu", "cortex-a72",
        "-smp", "2",
        "-m", "1024",
        "-nographic",
        "-no-reboot",
        "-nic", "none",
        "-kernel", str(kernel),
        "-initrd", str(initrd),
        "-append", f"console=ttyAMA0 root={root} rw rootwait panic=-1",
        "-drive", f"if=none,id=disk,format=qcow2,file={disk}",
        "-device", "virtio-blk-pci,drive=disk",
    ]  # fmt: skip


@pytest.mark.timeout(BOOT_DEADLINE_S + 60)
def test_arm64_image_boots_under_qemu_to_the_node_ready(
    image: Path, image_dir: Path, boot_fat: Path, tmp_path: Path
) -> None:
    config = _config(boot_fat)
    kernel = diskimage.fat_copy_out(boot_fat, _setting(config, "kernel"), tmp_path / "kernel")
    initrd = diskimage.fat_copy_out(boot_fat, _initramfs_name(config), tmp_path / "initrd")
    cmdline = diskimage.fat_read(boot_fat, "cmdline.txt").decode().split()
    (root,) = [a.split("=", 1)[1] for a in cmdline if a.startswith("root=")]

    console_log = image_dir / "qemu-console.log"
    started = time.monotonic()
    proc = subprocess.Popen(
        _qemu_command(_overlay(image, tmp_path / "disk.qcow2"), kernel, initrd, root),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    ready: re.Match[str] | None = None
    grown: re.Match[str] | None = None
    failure = ""
    buffered = b""
    try:
        with console_log.open("wb") as log, selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while ready is None and not failure:
                left = BOOT_DEADLINE_S - (time.monotonic() - started)
                if left <= 0:
                    failure = f"no READY line within {BOOT_DEADLINE_S}s"
                    break
                if not sel.select(timeout=min(left, 5.0)):
                    continue
                chunk = proc.stdout.read()
                if not chunk:
                    failure = f"qemu exited ({proc.poll()}) before READY"
                    break
                log.write(chunk)
                log.flush()
                buffered += chunk
                *lines, rest = buffered.split(b"\n")
                buffered = rest
                for raw in lines:
                    line = raw.decode("utf-8", "replace").replace("\r", "")
                    grown = grown or GROWN.search(line)
                    if m := READY.search(line):
                        ready = m
                        break
                    if FAILED.search(line):
                        failure = line.strip()
                        break
        took = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
    tail = console_log.read_text(errors="replace")[-3000:]
    assert ready is not None, f"{failure}\n--- console (end) ---\n{tail}"
    hostname, status = ready.group(1), ready.group(2)
    root_mib = (image.stat().st_size - diskimage.read_partition_table(image).partitions[1].start) >> 20
    assert grown is not None, f"no growroot line\n--- console (end) ---\n{tail}"
    assert int(grown.group(1)) >= root_mib + EXTRA_DISK_MIB - 16
    # First boot named the board after its new identity; the node answers status with it.
    assert re.fullmatch(r"bitcraps-[a-z2-7]{8}", hostname), hostname
    assert hostname.removeprefix("bitcraps-") in status, status
    (image_dir / "qemu-boot.txt").write_text(f"qemu boot to READY: {took:.0f}s (TCG, -M virt, 2 vCPUs)\n")
    print(f"qemu boot to READY: {took:.0f}s")
