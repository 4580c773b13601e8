"""At ATT_MTU 517 a chunk is capped at 510 bytes: a bluetoothd 5.66 peripheral (the boards')
drops a longer Write Command without a word (bluez/defs.py ATT_VALUE_MAX; the fake does too)."""

from __future__ import annotations

import pytest

from bluez.defs import ATT_VALUE_MAX
from bluez.objects import ObjectCache
from tests.ble.nodes import node_stack
from tests.fakes.bluez import FakeBluetoothd

pytestmark = pytest.mark.ble


async def test_a_full_chunk_at_mtu_517_reaches_a_bluez_566_peripheral(fake_bluez: FakeBluetoothd) -> None:
    async with ObjectCache() as cache, node_stack(cache, 0) as a, node_stack(cache, 1) as b:
        await a.find(b)
        link = await a.connector.connect(b.address)
        assert link.mtu == 517 and link.max_chunk == ATT_VALUE_MAX
        chunks = [bytes([i]) * link.max_chunk for i in range(3)]
        for chunk in chunks:
            await link.send(chunk)
        got = [await b.handler.next_chunk() for _ in chunks]
        assert [data for _, data in got] == chunks
        assert fake_bluez.oversize_writes == 0
        (inbound,) = {peer_link for peer_link, _ in got}
        assert inbound.max_chunk == ATT_VALUE_MAX - 1  # one byte of tag
        await inbound.send(b"n" * inbound.max_chunk)
        assert await a.handler.next_chunk() == (link, b"n" * inbound.max_chunk)
