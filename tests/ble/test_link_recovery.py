"""The node's BLE stack comes back by itself: the adapter unplugged and plugged again, and
bluetoothd restarted; the peripheral registers again, scanning resumes, links are made anew."""

from __future__ import annotations

import asyncio

import pytest

from bluez.links import LinkFailed, LinkFailReason
from bluez.objects import ObjectCache
from bluez.scanner import FoundNode, NodeScanner
from tests.ble.nodes import Stack, node_stack
from tests.fakes.bluez import FakeBluetoothd
from tests.support.tlsnodes import eventually

pytestmark = pytest.mark.ble


async def exchange(a: Stack, b: Stack, reports_before: int) -> None:
    """A hears B anew (its scan resumed, or B's advertisement came back), connects, and the two
    exchange a chunk each way."""
    await a.find(b, more_than=reports_before)
    link = await a.connector.connect(b.address)
    await link.send(b"again")
    inbound, data = await b.handler.next_chunk()
    assert data == b"again" and inbound.address == a.address
    await inbound.send(b"back")
    assert await a.handler.next_chunk() == (link, b"back")
    # Closed before the reverse direction connects, so that it makes an LE link of its own
    # (it would otherwise share this one, as BlueZ does for a device already connected).
    await link.aclose()
    async with asyncio.timeout(10):
        await inbound.closed.wait()


async def test_adapter_removed_and_readded(fake_bluez: FakeBluetoothd) -> None:
    async with ObjectCache() as cache, node_stack(cache, 0) as a, node_stack(cache, 1) as b:
        await a.find(b)
        await b.find(a)
        before = (a.reports[b.address], b.reports[a.address])
        link = await a.connector.connect(b.address)
        await link.send(b"before")
        inbound, _ = await b.handler.next_chunk()

        fake_bluez.remove_adapter("hci1")
        await eventually(lambda: not b.peripheral.ready.is_set() and not b.scanner.scanning.is_set())
        async with asyncio.timeout(10):
            await link.closed.wait()
            await inbound.closed.wait()
        for closed in (link, inbound):
            assert isinstance(closed.close_error, LinkFailed)
            assert closed.close_error.reason is LinkFailReason.LOST

        fake_bluez.add_adapter(1)
        async with asyncio.timeout(10):
            await b.peripheral.ready.wait()
            await b.scanner.scanning.wait()
        assert b.peripheral.registrations == 2 and b.scanner.starts == 2
        await exchange(a, b, before[0])
        await exchange(b, a, before[1])  # B's scanner and connector work on the new adapter too


async def test_bluetoothd_restarted(fake_bluez: FakeBluetoothd) -> None:
    async with ObjectCache() as cache, node_stack(cache, 0) as a, node_stack(cache, 1) as b:
        await a.find(b)
        await b.find(a)
        before = (a.reports[b.address], b.reports[a.address])
        link = await a.connector.connect(b.address)
        await fake_bluez.restart()
        async with asyncio.timeout(10):
            await link.closed.wait()
        await eventually(lambda: a.peripheral.registrations == 2 and b.peripheral.registrations == 2)
        await eventually(lambda: a.scanner.starts == 2 and b.scanner.starts == 2)
        assert a.peripheral.ready.is_set() and b.scanner.scanning.is_set()
        await exchange(a, b, before[0])
        await exchange(b, a, before[1])


async def test_adapter_powered_off_and_on(fake_bluez: FakeBluetoothd) -> None:
    async with ObjectCache() as cache, node_stack(cache, 0) as a, node_stack(cache, 1) as b:
        await a.find(b)
        before = b.reports[a.address]
        link = await a.connector.connect(b.address)
        await link.send(b"before")
        inbound, _ = await b.handler.next_chunk()

        fake_bluez.set_powered(fake_bluez.adapter("hci1"), False)
        async with asyncio.timeout(10):
            await link.closed.wait()
            await inbound.closed.wait()
        assert isinstance(inbound.close_error, LinkFailed)
        assert inbound.close_error.reason is LinkFailReason.LOST
        await eventually(lambda: not b.scanner.scanning.is_set())
        assert cache.unavailable("hci1") is not None

        fake_bluez.set_powered(fake_bluez.adapter("hci1"), True)
        async with asyncio.timeout(10):
            await b.scanner.scanning.wait()
        assert b.scanner.starts == 2
        # Its registrations held through the power cycle: A hears it and links again.
        await exchange(b, a, before)


async def test_a_scanner_that_hears_nothing_restarts_discovery(fake_bluez: FakeBluetoothd) -> None:
    """HA's lesson: BlueZ discovery can stall; a scanner quiet for quiet_restart s starts again
    (the fake reports a device at each discovery start, so each restart is heard)."""
    heard: list[FoundNode] = []
    async with (
        ObjectCache() as cache,
        node_stack(cache, 1),
        NodeScanner(cache, "hci0", heard.append, quiet_restart=0.3) as scanner,
    ):
        await eventually(lambda: scanner.quiet_restarts >= 2 and scanner.starts >= 3)
        assert len(heard) >= 3
        assert scanner.start_failures == 0
