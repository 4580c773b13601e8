"""BLE tier: the code under test against the fake BlueZ on a private system-type bus.

Fixtures: ``private_bus`` (a dbus-daemon; DBUS_SYSTEM_BUS_ADDRESS points at it for the test),
``fake_bluez`` (a FakeBluetoothd with hci0 and hci1 in the test's loop).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.fakes.bluez import FakeBluetoothd, PrivateBus
from tests.support.prerequisites import require_tools


@pytest.fixture
def private_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateBus]:
    require_tools(("dbus-daemon",), "apt-get install dbus")
    bus = PrivateBus(tmp_path / "dbus").start()
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
    try:
        yield bus
    finally:
        bus.stop()


@pytest.fixture
async def fake_bluez(private_bus: PrivateBus) -> AsyncIterator[FakeBluetoothd]:
    async with FakeBluetoothd(private_bus.address, adapters=2) as daemon:
        yield daemon
