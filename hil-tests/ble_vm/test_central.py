"""Our Connector (bleak on the real bluetoothd, hci0) to a bumble peripheral serving the node's
GATT service on the other emulated controller: found by our scanner, linked, writes both ways."""

from __future__ import annotations

import asyncio

import pytest
from bumble.device import Device
from gatt import PeripheralSide

from bluez.central import Connector
from bluez.objects import ObjectCache
from bluez.scanner import FoundNode, NodeScanner
from tests.ble.nodes import Recorder

pytestmark = [pytest.mark.ble_vm, pytest.mark.timeout(120)]

PREFIX = bytes.fromhex("b0b1b2b3b4b5b6b7")


async def test_connector_links_to_a_bumble_peripheral_and_writes_both_ways(
    cache: ObjectCache, bumble: Device
) -> None:
    side = PeripheralSide(bumble)
    await side.advertise(PREFIX)
    found: asyncio.Queue[FoundNode] = asyncio.Queue()
    handler = Recorder()
    async with NodeScanner(cache, "hci0", found.put_nowait), Connector(cache, "hci0", handler) as connector:
        async with asyncio.timeout(30):
            node = await found.get()
        link = await connector.connect(node.address)
        assert link.mtu > 23
        # Central -> peripheral: RX writes without response, in order.
        out = [bytes([i]) * link.max_chunk for i in range(10)]
        for chunk in out:
            await link.send(chunk)
        assert [await side.next_write() for _ in out] == out
        # Peripheral -> central: TX notifications tagged with the tag we read from LINK.
        back = [bytes([0x80 + i]) * 20 for i in range(5)]
        for chunk in back:
            await side.notify(chunk)
        assert [(await handler.next_chunk())[1] for _ in back] == back
