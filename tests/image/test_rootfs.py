"""The root filesystem of the card image: the node installed, enabled and configured, the Pi's
Bluetooth firmware present, nothing board-specific baked in, and a manifest of what is inside."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.image import diskimage
from tests.image.conftest import BOOT_LABEL, ROOT_LABEL

VENV = "/opt/bitcraps-node/venv"
UNITS = "/usr/lib/systemd/system"
# bluez-firmware: BCM43430A1 (Pi 3 B, Zero W, Zero 2 W), BCM4345C0 (Pi 3 B+, Pi 4, 400).
BLUETOOTH_FIRMWARE = ("BCM43430A1.hcd", "BCM4345C0.hcd")
# firmware-brcm80211 (+ raspi-firmware's NVRAM .txt files): the on-board Wi-Fi.
WIFI_FIRMWARE = ("brcmfmac43430-sdio.bin", "brcmfmac43455-sdio.bin")


def _fstab(root_ext4: Path) -> dict[str, str]:
    """mount point -> device, from /etc/fstab."""
    lines = diskimage.ext4_read(root_ext4, "/etc/fstab").splitlines()
    fields = [line.split() for line in lines if line.strip() and not line.startswith("#")]
    return {f[1]: f[0] for f in fields}


def test_fstab_mounts_both_partitions_by_their_labels(root_ext4: Path, boot_fat: Path) -> None:
    fstab = _fstab(root_ext4)
    assert fstab["/"] == f"LABEL={ROOT_LABEL}" == f"LABEL={diskimage.ext4_label(root_ext4)}"
    assert fstab["/boot/firmware"] == f"LABEL={BOOT_LABEL}" == f"LABEL={diskimage.fat_label(boot_fat)}"
    # The FAT partition's files live there, not underneath in the root filesystem.
    assert diskimage.ext4_list(root_ext4, "/boot/firmware") == set()


@pytest.mark.parametrize(
    ("link", "unit"),
    [
        ("/etc/systemd/system/multi-user.target.wants/bitcraps-node.service", "bitcraps-node.service"),
        (
            "/etc/systemd/system/multi-user.target.wants/bitcraps-node-console.service",
            "bitcraps-node-console.service",
        ),
        ("/etc/systemd/system/sysinit.target.wants/bitcraps-firstboot.service", "bitcraps-firstboot.service"),
        ("/etc/systemd/system/multi-user.target.wants/systemd-networkd.service", "systemd-networkd.service"),
        ("/etc/systemd/system/sysinit.target.wants/bitcraps-growroot.service", "bitcraps-growroot.service"),
    ],
)
def test_units_are_installed_and_enabled(root_ext4: Path, link: str, unit: str) -> None:
    # systemctl writes /lib/... (merged /usr: the same directory).
    assert diskimage.ext4_symlink_target(root_ext4, link) in {
        f"{UNITS}/{unit}",
        f"/lib/systemd/system/{unit}",
    }
    assert diskimage.ext4_exists(root_ext4, f"{UNITS}/{unit}")


def test_node_unit_is_the_one_the_package_ships(root_ext4: Path) -> None:
    shipped = (Path(__file__).parents[2] / "node/data/systemd/bitcraps-node.service").read_text()
    assert diskimage.ext4_read(root_ext4, f"{UNITS}/bitcraps-node.service") == shipped
    assert "ExecStart=/opt/bitcraps-node/venv/bin/bitcraps-node run" in shipped


def test_node_is_installed_in_its_venv_and_its_user_exists(root_ext4: Path) -> None:
    assert diskimage.ext4_exists(root_ext4, f"{VENV}/bin/bitcraps-node")
    assert diskimage.ext4_exists(root_ext4, f"{VENV}/bin/python3")
    users = [line.split(":")[0] for line in diskimage.ext4_read(root_ext4, "/etc/passwd").splitlines()]
    assert "bitcraps" in users


def test_default_config_is_valid(root_ext4: Path, tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(diskimage.ext4_read(root_ext4, "/etc/bitcraps/node.toml"))
    assert "udp_port" in config.read_text()
    cli = "import sys; from node.cli.main import main; sys.exit(main())"
    check = subprocess.run(
        [sys.executable, "-c", cli, "config", "check", str(config)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("name", BLUETOOTH_FIRMWARE + WIFI_FIRMWARE)
def test_pi_bluetooth_and_wifi_firmware(root_ext4: Path, name: str) -> None:
    assert name in diskimage.ext4_list(root_ext4, "/usr/lib/firmware/brcm")


def test_kernel_drives_the_pi_bluetooth_uart(root_ext4: Path) -> None:
    # The on-board controller hangs off the PL011 as a serdev device: hci_uart attaches it and
    # btbcm loads the .hcd patch above.
    (version,) = diskimage.ext4_list(root_ext4, "/usr/lib/modules")
    drivers = diskimage.ext4_list(root_ext4, f"/usr/lib/modules/{version}/kernel/drivers/bluetooth")
    assert {"hci_uart.ko", "btbcm.ko"} <= drivers


def test_nothing_board_specific_is_baked_in(root_ext4: Path) -> None:
    assert diskimage.ext4_read(root_ext4, "/etc/machine-id").strip() == "uninitialized"
    assert not {n for n in diskimage.ext4_list(root_ext4, "/etc/ssh") if n.startswith("ssh_host_")}
    assert diskimage.ext4_list(root_ext4, "/var/lib") >= {"dpkg"}
    assert not diskimage.ext4_exists(root_ext4, "/var/lib/bitcraps/identity.key")
    assert diskimage.ext4_read(root_ext4, "/etc/hostname").strip() == "bitcraps-unnamed"


def test_manifest_records_packages_and_python_dependencies(root_ext4: Path, image_dir: Path) -> None:
    manifest = diskimage.ext4_read(root_ext4, "/usr/share/bitcraps-node/image-manifest.txt")
    assert manifest == (image_dir / "manifest-arm64.txt").read_text()
    lines = manifest.splitlines()
    packages = {line.split()[0] for line in lines if line.count(" ") == 2 and not line.startswith("#")}
    assert {"linux-image-arm64", "raspi-firmware", "bluez", "bluez-firmware", "python3"} <= packages
    frozen = {line.split("==")[0].lower() for line in lines if "==" in line}
    assert {"bitcraps-node", "uvloop", "cryptography", "dbus-fast"} <= frozen
