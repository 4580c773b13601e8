"""Fixtures for the tests of a built card image (image/build.sh).

They read ``$BITCRAPS_IMAGE_DIR/bitcraps-node-arm64.img`` (scripts/ci-image.sh builds it and sets
the variable). Without the variable they skip, naming it; under CI=true a missing image fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.image import diskimage

IMAGE_NAME = "bitcraps-node-arm64.img"
BOOT_LABEL = "RASPIFIRM"
ROOT_LABEL = "bitcraps-root"


@pytest.fixture(scope="session")
def image_dir() -> Path:
    value = os.environ.get("BITCRAPS_IMAGE_DIR")
    if not value:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but BITCRAPS_IMAGE_DIR is not set (scripts/ci-image.sh sets it)")
        pytest.skip("set BITCRAPS_IMAGE_DIR to the output of image/build.sh to test a built image")
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
