"""The BLE roles against the REAL bluetoothd, on emulated controllers inside a qemu VM.

scripts/ci-ble-vm.sh boots the VM (virtme-ng) and runs hil-tests/ble_vm/guest.sh there, which
starts dbus-daemon, btvirt and bluetoothd and then these tests with ``BLE_VM_BUMBLE`` set to the
bumble transport of the other side's controller. Outside the VM they skip with that reason.
Figures (MTU, throughput) go to ``BLE_VM_FIGURES`` and the "hil figures" summary.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from bumble.device import Device
from bumble.hci import Address
from bumble.transport import open_transport
from vm import BUMBLE_ADDRESS

from bluez.objects import ObjectCache


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("BLE_VM_BUMBLE"):
        return
    skip = pytest.mark.skip(reason="runs inside the BLE VM only: bash scripts/ci-ble-vm.sh")
    for item in items:
        if "ble_vm" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
async def cache() -> AsyncIterator[ObjectCache]:
    async with ObjectCache() as objects:
        yield objects


@pytest.fixture
async def bumble() -> AsyncIterator[Device]:
    """A bumble host on the other emulated controller (btvirt's socket server), powered on."""
    async with await open_transport(os.environ["BLE_VM_BUMBLE"]) as transport:
        device = Device.with_hci("bumble", Address(BUMBLE_ADDRESS), transport.source, transport.sink)
        await device.power_on()
        yield device
