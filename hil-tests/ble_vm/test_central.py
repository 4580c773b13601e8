"""Our Connector (bleak on the real bluetoothd, hci0) to a bumble peripheral serving the node's
GATT service on the other emulated controller: found by our scanner, linked, writes both ways."""

from __future__ import annotations

import asyncio
import time

import pytest
from bumble.device import Device
from gatt import PeripheralSide
from vm import figure

from bluez.central import Connector
from bluez.objects import ObjectCache
from bluez.scanner import FoundNode, NodeScanner
from tests.ble.nodes import Recorder

pytestmark = [pytest.mark.ble_vm, pytest.mark.timeout(120)]

PREFIX = bytes.fromhex("b0b1b2b3b4b5b6b7")
CHUNKS = 100


async def test_connector_links_to_a_bumble_peripheral_and_writes_both_ways(
    cache: ObjectCache, bumble: Device, pytestconfig: pytest.Config
) -> None:
    side = PeripheralSide(bumble)
    await side.advertise(PREFIX)
    found: asyncio.Queue[FoundNode] = asyncio.Queue()
    handler = Recorder()
    async with (
        asyncio.TaskGroup() as tasks,
        NodeScanner(cache, "hci0", found.put_nowait) as scanner,
        Connector(cache, "hci0", handler, quiet_radio=scanner.paused) as connector,
    ):
        async with asyncio.timeout(30):
            node = await found.get()
            while node.peer_id_prefix is None:  # its scan response not merged in yet
                node = await found.get()
        assert node.peer_id_prefix == PREFIX
        announcing = tasks.create_task(side.keep_advertising())
        t0 = time.monotonic()
        link = await connector.connect(node.address)
        announcing.cancel()
        figure(pytestconfig, f"central: linked in {time.monotonic() - t0:.2f} s, ATT MTU {link.mtu}")
        assert link.mtu > 23
        # Central -> peripheral: RX writes without response, in order.
        out = [bytes([i % 256]) * link.max_chunk for i in range(CHUNKS)]
        t0 = time.monotonic()
        for chunk in out:
            await link.send(chunk)
        assert [await side.next_write() for _ in out] == out
        took = time.monotonic() - t0
        figure(
            pytestconfig,
            f"central: {CHUNKS} x {link.max_chunk} B writes without response in {took:.2f} s = "
            f"{CHUNKS * link.max_chunk / took / 1000:.1f} kB/s",
        )
        # Peripheral -> central: TX notifications tagged with the tag we read from LINK.
        size = link.max_chunk - 1
        back = [bytes([0x80 + i % 64]) * size for i in range(CHUNKS // 2)]
        t0 = time.monotonic()
        for chunk in back:
            await side.notify(chunk)
        assert [(await handler.next_chunk())[1] for _ in back] == back
        took = time.monotonic() - t0
        figure(
            pytestconfig,
            f"central: {len(back)} x {size} B notifications in {took:.2f} s = "
            f"{len(back) * size / took / 1000:.1f} kB/s",
        )
