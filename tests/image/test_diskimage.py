"""The image readers on a small disk image made here (no built card image, no root needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.image import diskimage
from tests.support.prerequisites import require_tools

MIB = 1 << 20
# What makes the small image and what the readers run on it (zstd only reads an initramfs).
TOOLS = ("sfdisk", "mkfs.vfat", "mcopy", "mdir", "mtype", "mlabel", "mkfs.ext4", "e2label", "debugfs", "cpio")


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    # Module scope: it must run before the module-scoped ``disk`` that calls the tools (pytest sets
    # up wider scopes first, so a function-scoped gate came too late and ``disk`` errored).
    require_tools(TOOLS, "apt-get install fdisk dosfstools mtools e2fsprogs cpio")


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("disk")
    (d / "bootfiles").mkdir()
    (d / "bootfiles" / "config.txt").write_text("arm_64bit=1\n")
    root = d / "rootfiles"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("board\n")
    (root / "etc" / "localtime").symlink_to("/usr/share/zoneinfo/UTC")
    fat, ext4 = d / "boot.vfat", d / "root.ext4"
    subprocess.run(["mkfs.vfat", "-C", "-F", "32", "-n", "TESTBOOT", str(fat), str(40 * 1024)], check=True)
    subprocess.run(["mcopy", "-i", str(fat), str(d / "bootfiles" / "config.txt"), "::/"], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-L", "testroot", "-d", str(root), str(ext4), "8M"], check=True)
    img = d / "disk.img"
    with img.open("wb") as f:
        f.truncate(4 * MIB + 40 * MIB + 8 * MIB)
    layout = (
        "label: dos\nlabel-id: 0x1234abcd\nstart=8192, size=81920, type=c, bootable\nsize=16384, type=83\n"
    )
    subprocess.run(["sfdisk", "-q", str(img)], input=layout, text=True, check=True)
    with img.open("r+b") as f:
        f.seek(4 * MIB)
        f.write(fat.read_bytes())
        f.write(ext4.read_bytes())
    return img


def test_partition_table_and_partuuid(disk: Path) -> None:
    table = diskimage.read_partition_table(disk)
    assert (table.label, table.disk_id) == ("dos", "1234abcd")
    boot, root = table.partitions
    assert (boot.number, boot.start, boot.size, boot.type_id, boot.bootable) == (
        1,
        4 * MIB,
        40 * MIB,
        "c",
        True,
    )
    assert (root.number, root.start, root.size, root.type_id) == (2, 44 * MIB, 8 * MIB, "83")
    assert table.partuuid(2) == "1234abcd-02"


def test_partitions_extracted_and_read(disk: Path, tmp_path: Path) -> None:
    table = diskimage.read_partition_table(disk)
    fat = diskimage.extract(disk, table.partitions[0], tmp_path / "p1")
    ext4 = diskimage.extract(disk, table.partitions[1], tmp_path / "p2")
    assert diskimage.fat_label(fat) == "TESTBOOT"
    assert "config.txt" in diskimage.fat_list(fat)
    assert diskimage.fat_read(fat, "config.txt") == b"arm_64bit=1\n"
    assert diskimage.ext4_label(ext4) == "testroot"
    assert diskimage.ext4_read(ext4, "/etc/hostname") == "board\n"
    assert diskimage.ext4_list(ext4, "/etc") == {"hostname", "localtime"}
    assert diskimage.ext4_symlink_target(ext4, "/etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert diskimage.ext4_symlink_target(ext4, "/etc/hostname") is None
    assert diskimage.ext4_exists(ext4, "/etc/hostname")
    assert not diskimage.ext4_exists(ext4, "/etc/missing")


def test_newc_cpio_members(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.ko").write_bytes(b"x" * 5)
    (tmp_path / "init").write_bytes(b"#!/bin/sh\n")
    listing = "lib\nlib/a.ko\ninit\n"
    archive = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet"],
        cwd=tmp_path,
        input=listing.encode(),
        capture_output=True,
        check=True,
    ).stdout
    # Two archives back to back, as an initramfs with an early part has them.
    members = diskimage.cpio_members(archive + archive)
    assert members["lib/a.ko"] == b"xxxxx"
    assert members["init"] == b"#!/bin/sh\n"
    assert set(members) == {"lib", "lib/a.ko", "init"}
