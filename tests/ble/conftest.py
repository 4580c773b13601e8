"""BLE tier: the code under test against the fake BlueZ on a private system-type bus.

Fixtures: ``private_bus`` (a dbus-daemon; DBUS_SYSTEM_BUS_ADDRESS points at it for the test),
``fake_bluez`` (a FakeBluetoothd with hci0 and hci1 in the test's loop), ``fake_bluez_process``
(the same as a subprocess, as node processes need it; ``.hook("remove hci1")`` drives it).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.fakes.bluez import FakeBluetoothd, PrivateBus
from tests.support.prerequisites import require_tools

REPO = Path(__file__).resolve().parents[2]  # python -m tests.fakes.bluez runs from here


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


class FakeBluezProcess:
    """The fake bluetoothd as a subprocess (``python -m tests.fakes.bluez``); ``hook("remove
    hci1")`` etc. drives its test hooks through stdin."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def hook(self, line: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{line}\n".encode())
        await self.proc.stdin.drain()
        async with asyncio.timeout(10):
            answer = (await self.proc.stdout.readline()).decode().strip()
        assert answer == "ok", f"{line}: {answer}"


@pytest.fixture
async def fake_bluez_process(private_bus: PrivateBus) -> AsyncIterator[FakeBluezProcess]:
    async with fake_bluez_subprocess(private_bus) as fake:
        yield fake


@contextlib.asynccontextmanager
async def fake_bluez_subprocess(
    bus: PrivateBus, adapters: int = 2, *options: str
) -> AsyncIterator[FakeBluezProcess]:
    """The fake bluetoothd process with ``adapters`` adapters (``options``: its other flags)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.bluez",
        "--bus",
        bus.address,
        "--adapters",
        str(adapters),
        *options,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            ready = await proc.stdout.readline()
        assert ready == b"ready\n", ready
        yield FakeBluezProcess(proc)
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
