"""Fixtures for the tests of a built card image (image/build.sh).

They read ``$BITCRAPS_IMAGE_DIR/bitcraps-node-arm64.img`` (scripts/ci-image.sh builds it and sets
the variable) with the tools in ``IMAGE_TOOLS``. Without the variable or a tool they skip, naming
it; under CI=true either is a failure. A variable naming a directory without the image fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.image import diskimage
from tests.support.prerequisites import require_tools, unavailable

IMAGE_NAME = "bitcraps-node-arm64.img"
BOOT_LABEL = "RASPIFIRM"
ROOT_LABEL = "bitcraps-root"
# What the tests of a built image run: the readers (diskimage.READ_TOOLS), the filesystem checks,
# the block map, and qemu for the boot.
IMAGE_TOOLS = (*diskimage.READ_TOOLS, "fsck.vfat", "e2fsck", "bmaptool", "qemu-img", "qemu-system-aarch64")
IMAGE_TOOLS_INSTALL = (
    "apt-get install fdisk mtools dosfstools e2fsprogs zstd bmap-tools qemu-utils qemu-system-arm"
)


@pytest.fixture(scope="session")
def image_dir() -> Path:
    value = os.environ.get("BITCRAPS_IMAGE_DIR")
    if not value:
        unavailable(
            "no built image: set BITCRAPS_IMAGE_DIR to the output of image/build.sh "
            "(scripts/ci-image.sh sets it)"
        )
    require_tools(IMAGE_TOOLS, IMAGE_TOOLS_INSTALL)
    path = Path(value)
    if not (path / IMAGE_NAME).is_file():
        pytest.fail(f"{path / IMAGE_NAME} does not exist: build it with image/build.sh --out {path}")
    return path


@pytest.fixture(scope="session")
def image(image_dir: Path) -> Path:
    return image_dir / IMAGE_NAME


@pytest.fixture(scope="session")
def table(image: Path) -> diskimage.PartitionTable:
    return diskimage.read_partition_table(image)


@pytest.fixture(scope="session")
def boot_fat(image: Path, table: diskimage.PartitionTable, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return diskimage.extract(image, table.partitions[0], tmp_path_factory.mktemp("parts") / "boot.vfat")


@pytest.fixture(scope="session")
def root_ext4(image: Path, table: diskimage.PartitionTable, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return diskimage.extract(image, table.partitions[1], tmp_path_factory.mktemp("parts") / "root.ext4")
