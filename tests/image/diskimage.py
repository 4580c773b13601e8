"""Reading a built card image without mounting it (no loop devices, no root needed for reading).

The partition table comes from ``sfdisk --json``, the FAT partition is read with mtools, the ext4
root with debugfs, and the initramfs (a zstd-compressed newc cpio) is listed in Python.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SECTOR = 512
# The commands these readers run (a test gates on them: tests/image/conftest.py, test_diskimage.py).
READ_TOOLS = ("sfdisk", "mdir", "mtype", "mcopy", "mlabel", "e2label", "debugfs", "zstd")


@dataclass(frozen=True, slots=True)
class Partition:
    number: int
    start: int  # bytes
    size: int  # bytes
    type_id: str  # MBR type, lowercase hex without 0x ("c", "83")
    bootable: bool


@dataclass(frozen=True, slots=True)
class PartitionTable:
    label: str  # "dos" for MBR
    disk_id: str  # lowercase hex without 0x, 8 digits
    partitions: tuple[Partition, ...]

    def partuuid(self, number: int) -> str:
        """The PARTUUID the kernel gives an MBR partition: disk signature '-' two-digit number."""
        return f"{self.disk_id}-{number:02x}"


def read_partition_table(image: Path) -> PartitionTable:
    out = subprocess.run(["sfdisk", "--json", str(image)], check=True, capture_output=True, text=True)
    table = json.loads(out.stdout)["partitiontable"]
    parts = tuple(
        Partition(
            number=int(p["node"].removeprefix(str(image))),
            start=int(p["start"]) * SECTOR,
            size=int(p["size"]) * SECTOR,
            type_id=str(p["type"]).lower(),
            bootable=bool(p.get("bootable", False)),
        )
        for p in table["partitions"]
    )
    disk_id = str(table["id"]).lower().removeprefix("0x").zfill(8)
    return PartitionTable(label=table["label"], disk_id=disk_id, partitions=parts)


def extract(image: Path, part: Partition, dest: Path) -> Path:
    """Copy one partition's bytes to ``dest`` (holes stay holes where the filesystem allows)."""
    chunk = 4 << 20
    with image.open("rb") as src, dest.open("wb") as dst:
        src.seek(part.start)
        left = part.size
        while left:
            data = src.read(min(chunk, left))
            if not data:
                raise ValueError(f"{image} ends inside partition {part.number}")
            if data.count(0) == len(data):
                dst.seek(len(data), 1)
            else:
                dst.write(data)
            left -= len(data)
        dst.truncate(part.size)
    return dest


def fat_list(fat: Path) -> set[str]:
    """Names in the FAT filesystem's root directory."""
    out = subprocess.run(["mdir", "-b", "-i", str(fat), "::/"], check=True, capture_output=True, text=True)
    return {line.removeprefix("::/").rstrip("/") for line in out.stdout.splitlines() if line.strip()}


def fat_read(fat: Path, name: str) -> bytes:
    return subprocess.run(["mtype", "-i", str(fat), f"::/{name}"], check=True, capture_output=True).stdout


def fat_copy_out(fat: Path, name: str, dest: Path) -> Path:
    subprocess.run(["mcopy", "-n", "-i", str(fat), f"::/{name}", str(dest)], check=True)
    return dest


def fat_label(fat: Path) -> str:
    out = subprocess.run(["mlabel", "-s", "-i", str(fat), "::"], check=True, capture_output=True, text=True)
    return out.stdout.split(" is ", 1)[-1].strip()


def ext4_label(ext4: Path) -> str:
    out = subprocess.run(["e2label", str(ext4)], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def _debugfs(ext4: Path, request: str) -> str:
    out = subprocess.run(
        ["debugfs", "-R", request, str(ext4)], check=True, capture_output=True, text=True, errors="replace"
    )
    return out.stdout


def ext4_read(ext4: Path, path: str) -> str:
    """A file's text, following no links (``debugfs cat`` prints nothing for a missing file)."""
    return _debugfs(ext4, f"cat {path}")


def ext4_exists(ext4: Path, path: str) -> bool:
    out = subprocess.run(
        ["debugfs", "-R", f"stat {path}", str(ext4)], check=False, capture_output=True, text=True
    )
    return out.returncode == 0 and "Inode:" in out.stdout


def ext4_symlink_target(ext4: Path, path: str) -> str | None:
    """Where a symbolic link points, None if ``path`` is missing or not a link."""
    out = _debugfs(ext4, f"stat {path}")
    if "Type: symlink" not in out:
        return None
    for line in out.splitlines():
        if line.startswith("Fast link dest:"):
            return line.split(":", 1)[1].strip().strip('"')
    return None


def ext4_list(ext4: Path, directory: str) -> set[str]:
    out = _debugfs(ext4, f"ls -p {directory}")
    # ls -p: /inode/mode/uid/gid/name/size/
    names = {line.split("/")[5] for line in out.splitlines() if line.count("/") >= 6}
    return names - {".", ".."}


def cpio_members(data: bytes) -> dict[str, bytes]:
    """Members (name -> content) of concatenated newc ("070701") cpio archives (mkinitramfs)."""
    members: dict[str, bytes] = {}
    pos = 0
    while pos + 110 <= len(data):
        if data[pos : pos + 6] != b"070701":
            # Padding between concatenated archives.
            if data[pos] == 0:
                pos += 1
                continue
            raise ValueError(f"not a newc cpio header at offset {pos}")
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        file_size, name_size = fields[6], fields[11]
        name_start = pos + 110
        name = data[name_start : name_start + name_size - 1].decode("utf-8", "replace")
        body = (name_start + name_size + 3) & ~3
        pos = (body + file_size + 3) & ~3
        if name != "TRAILER!!!":
            members[name] = data[body : body + file_size]
    return members


def initramfs_members(initrd: bytes) -> dict[str, bytes]:
    """Names in an initramfs: an optional uncompressed early cpio, then the compressed main one."""
    if initrd[:4] == b"\x28\xb5\x2f\xfd":
        zstd = shutil.which("zstd")
        if zstd is None:
            raise RuntimeError("zstd is needed to read a zstd initramfs")
        plain = subprocess.run([zstd, "-dc"], input=initrd, check=True, capture_output=True).stdout
        return cpio_members(plain)
    if initrd[:6] == b"070701":
        return cpio_members(initrd)
    if initrd[:2] == b"\x1f\x8b":
        import gzip

        return cpio_members(gzip.decompress(initrd))
    raise ValueError(f"unknown initramfs format (starts {initrd[:6]!r})")
