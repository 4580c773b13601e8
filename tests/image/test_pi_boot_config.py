"""Static check of the Raspberry Pi firmware boot path, which qemu's virt machine never runs.

The Pi's GPU firmware reads config.txt from the first (FAT) partition, loads the kernel, the
initramfs and the board's device tree named there, and passes cmdline.txt to the kernel, whose
initramfs must then find the root partition by PARTUUID on the SD card or a USB disk.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.image import diskimage
from tests.image.conftest import ROOT_LABEL

# Pi 3: bootcode.bin + start.elf/fixup.dat; Pi 4/400: start4.elf/fixup4.dat (boot EEPROM).
FIRMWARE = ("bootcode.bin", "start.elf", "fixup.dat", "start4.elf", "fixup4.dat")
# With upstream_kernel=1 the firmware loads the mainline device tree of the board.
DEVICE_TREES = (
    "bcm2837-rpi-3-b.dtb",
    "bcm2837-rpi-3-b-plus.dtb",
    "bcm2711-rpi-4-b.dtb",
    "bcm2711-rpi-400.dtb",
)
# What finding the root takes: qemu's virtio disk, the Pi 4 (sdhci-iproc) and Pi 3 (bcm2835
# sdhost) SD card controllers, the MMC block layer, ext4.
INITRAMFS_MODULES = ("virtio_blk", "virtio_pci", "mmc_block", "sdhci_iproc", "bcm2835", "ext4")
ARM64_IMAGE_MAGIC = b"ARM\x64"  # linux/Documentation/arch/arm64/booting.rst, header offset 0x38


def _config(boot_fat: Path) -> list[str]:
    text = diskimage.fat_read(boot_fat, "config.txt").decode()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _setting(lines: list[str], key: str) -> str:
    values = [line.split("=", 1)[1].strip() for line in lines if line.split("=", 1)[0].strip() == key]
    assert len(values) == 1, f"config.txt sets {key} {len(values)} times: {values}"
    return values[0]


def _initramfs_name(lines: list[str]) -> str:
    # "initramfs FILE [followkernel]": the one config.txt directive without '='.
    names = [line.split()[1] for line in lines if line.split()[0] == "initramfs"]
    assert len(names) == 1, f"config.txt names {len(names)} initramfs files"
    return names[0]


def test_config_txt_boots_a_64_bit_kernel_with_its_initramfs(boot_fat: Path) -> None:
    lines = _config(boot_fat)
    files = diskimage.fat_list(boot_fat)
    assert _setting(lines, "arm_64bit") == "1"
    assert _setting(lines, "upstream_kernel") == "1"
    kernel = _setting(lines, "kernel")
    assert kernel in files
    assert _initramfs_name(lines) in files


def test_kernel_is_an_uncompressed_arm64_image(boot_fat: Path, tmp_path: Path) -> None:
    kernel = _setting(_config(boot_fat), "kernel")
    header = diskimage.fat_copy_out(boot_fat, kernel, tmp_path / "kernel").read_bytes()[:64]
    assert header[0x38:0x3C] == ARM64_IMAGE_MAGIC


@pytest.mark.parametrize("name", FIRMWARE + DEVICE_TREES)
def test_firmware_and_device_trees_on_the_boot_partition(boot_fat: Path, name: str) -> None:
    assert name in diskimage.fat_list(boot_fat)


def test_cmdline_names_the_root_partition_of_this_image(
    boot_fat: Path, table: diskimage.PartitionTable, root_ext4: Path
) -> None:
    text = diskimage.fat_read(boot_fat, "cmdline.txt").decode()
    # The firmware passes the first line only.
    assert len(text.strip().splitlines()) == 1
    args = text.split()
    roots = [a.split("=", 1)[1] for a in args if a.startswith("root=")]
    assert roots == [f"PARTUUID={table.partuuid(2)}"]
    assert "rootwait" in args
    assert any(a.startswith("console=") for a in args)
    if "console=ttyS1,115200" in args:
        # The Pi 3/4 serial console is the mini UART (the PL011 drives Bluetooth): it needs
        # enable_uart=1, which also pins the core clock its baud rate depends on.
        assert _setting(_config(boot_fat), "enable_uart") == "1"
    assert diskimage.ext4_label(root_ext4) == ROOT_LABEL


def _module_name(path: str) -> str:
    return re.sub(r"\.ko(\.(xz|zst|gz))?$", "", path.rsplit("/", 1)[-1]).replace("-", "_")


def test_initramfs_can_mount_the_root_on_a_pi_and_on_qemu(boot_fat: Path, tmp_path: Path) -> None:
    initrd_name = _initramfs_name(_config(boot_fat))
    initrd = diskimage.fat_copy_out(boot_fat, initrd_name, tmp_path / "initrd").read_bytes()
    members = diskimage.initramfs_members(initrd)
    modules = {_module_name(n) for n in members if re.search(r"\.ko(\.(xz|zst|gz))?$", n)}
    # Built into the kernel is as good as a module in the initramfs.
    builtin_lists = [body for name, body in members.items() if name.endswith("/modules.builtin")]
    assert len(builtin_lists) == 1
    builtin = {_module_name(line) for line in builtin_lists[0].decode().split()}
    missing = [m for m in INITRAMFS_MODULES if m not in modules | builtin]
    assert missing == [], f"the initramfs lacks {missing}"
