"""The card image's partition table and filesystems, and the compressed artifact's checksum."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from tests.image import diskimage
from tests.image.conftest import BOOT_LABEL, IMAGE_NAME, ROOT_LABEL

MIB = 1 << 20


def test_mbr_with_fat_boot_then_ext4_root(image: Path, table: diskimage.PartitionTable) -> None:
    assert table.label == "dos"
    assert len(table.partitions) == 2
    boot, root = table.partitions
    # The Pi firmware reads the first partition: FAT32 (LBA), marked bootable.
    assert (boot.number, boot.type_id, boot.bootable) == (1, "c", True)
    assert (root.number, root.type_id) == (2, "83")
    assert boot.start % (4 * MIB) == 0 and root.start % MIB == 0
    assert boot.start + boot.size <= root.start
    assert root.start + root.size <= image.stat().st_size
    assert table.disk_id != "00000000"


def test_boot_partition_is_a_clean_fat(boot_fat: Path) -> None:
    fsck = subprocess.run(["fsck.vfat", "-n", str(boot_fat)], check=False, capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert diskimage.fat_label(boot_fat) == BOOT_LABEL


def test_root_partition_is_a_clean_ext4(root_ext4: Path) -> None:
    fsck = subprocess.run(["e2fsck", "-f", "-n", str(root_ext4)], check=False, capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert diskimage.ext4_label(root_ext4) == ROOT_LABEL


def test_block_map_covers_the_image(image_dir: Path, image: Path) -> None:
    bmap = (image_dir / f"{IMAGE_NAME}.bmap").read_text()
    assert f"<ImageSize> {image.stat().st_size} </ImageSize>" in bmap
    check = subprocess.run(
        ["bmaptool", "copy", "--bmap", str(image_dir / f"{IMAGE_NAME}.bmap"), str(image), "/dev/null"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


def test_compressed_image_matches_its_checksum_and_the_image(image_dir: Path, image: Path) -> None:
    packed = image_dir / f"{IMAGE_NAME}.zst"
    check = subprocess.run(
        ["sha256sum", "-c", f"{packed.name}.sha256"],
        check=False,
        cwd=image_dir,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    unpacked = hashlib.sha256()
    with subprocess.Popen(["zstd", "-dc", str(packed)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        while block := proc.stdout.read(4 * MIB):
            unpacked.update(block)
    assert proc.returncode == 0
    raw = hashlib.sha256()
    with image.open("rb") as f:
        while block := f.read(4 * MIB):
            raw.update(block)
    assert unpacked.hexdigest() == raw.hexdigest()
