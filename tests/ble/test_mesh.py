"""The mesh relay in the BLE transport: three transports in a line A - B - C on three fake
adapters, A and C out of each other's range. A reaches C through B: the session handshake and
frames both ways run end to end through B, which relays sealed datagrams it cannot read (B has
no session with the A-C pair: only A and C are peers there); a frame B hears twice is relayed
once; the coordinator's endpoint for C is A's first hop, B."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from bluez.objects import ObjectCache
from bluez.proto.errors import MeshDrop
from bluez.proto.linkframes import LinkKind, encode, peer_prefix
from bluez.proto.mesh import MeshFrame, encode_frame
from bluez.relay import MeshPeer
from bluez.transport import BleSettings
from node.proto.vocabulary import BleEndpoint, DisconnectReason, Frame, PeerConnected, PeerDisconnected
from tests.ble.transports import BleNode, ble_node
from tests.fakes.bluez import FakeBluetoothd, PrivateBus

pytestmark = pytest.mark.ble

SETTINGS = BleSettings(auto_handshake=True)


@pytest.fixture
async def line(private_bus: PrivateBus) -> AsyncIterator[FakeBluetoothd]:
    async with FakeBluetoothd(private_bus.address, adapters=3) as daemon:
        await daemon.set_range("hci0", "hci2", False)
        yield daemon


async def _peer_up(node: BleNode, other: BleNode) -> PeerConnected:
    while True:
        event = await node.next_event(PeerConnected, within=30)
        assert isinstance(event, PeerConnected)
        if event.peer == other.identity.peer_id:
            return event


async def _link_line(a: BleNode, b: BleNode, c: BleNode) -> None:
    """A and C each link to B (the only node both hear)."""
    await a.find(b)
    await c.find(b)
    assert c.address not in a.found and a.address not in c.found  # out of range
    await a.transport.open_link(b.address)
    await c.transport.open_link(b.address)


async def test_a_reaches_c_through_b_and_frames_cross_both_ways(line: FakeBluetoothd) -> None:
    async with (
        ObjectCache() as cache,
        ble_node(cache, 0, SETTINGS) as a,
        ble_node(cache, 1, SETTINGS) as b,
        ble_node(cache, 2, SETTINGS) as c,
    ):
        await _link_line(a, b, c)
        up_a = await _peer_up(a, c)
        up_c = await _peer_up(c, a)
        assert up_a.endpoint == BleEndpoint(b.address)  # A's first hop towards C
        assert up_c.endpoint == BleEndpoint(b.address)
        assert a.transport.peers()[c.identity.peer_id] == MeshPeer(peer_prefix(c.identity.peer_id))
        assert a.transport.mesh_hops() == {c.identity.peer_id: 2}
        # B relays but holds no session for the pair: only its two neighbours are its peers.
        assert set(b.transport.peers()) == {a.identity.peer_id, c.identity.peer_id}
        assert not b.transport.mesh_hops()

        payload = os.urandom(5_000)  # several session datagrams, each relayed
        await a.transport.send(c.identity.peer_id, Frame(1, payload))
        await c.transport.send(a.identity.peer_id, Frame(2, b"back from c"))
        got_c = await c.message()
        while got_c.peer != a.identity.peer_id:
            got_c = await c.message()
        assert got_c.frame == Frame(1, payload)
        got_a = await a.message()
        while got_a.peer != c.identity.peer_id:
            got_a = await a.message()
        assert got_a.frame == Frame(2, b"back from c")
        relayed = b.transport.relay.router.stats().relayed
        assert relayed >= 5  # the handshake's and the data's datagrams, both ways
        assert a.transport.relay.router.stats().relayed == 0


async def test_a_frame_heard_twice_is_relayed_once(line: FakeBluetoothd) -> None:
    async with (
        ObjectCache() as cache,
        ble_node(cache, 0, SETTINGS) as a,
        ble_node(cache, 1, SETTINGS) as b,
        ble_node(cache, 2, SETTINGS) as c,
    ):
        await _link_line(a, b, c)
        await _peer_up(a, c)
        link = next(iter(a.transport.links))
        frame = MeshFrame(
            0x1234, peer_prefix(a.identity.peer_id), peer_prefix(c.identity.peer_id), 7, 0, b"sealed?"
        )
        router = b.transport.relay.router
        before = router.stats()
        delivered_c = c.transport.relay.router.stats().delivered
        pipe = a.transport.links[link]
        assert pipe.put(encode(LinkKind.MESH, encode_frame(frame)))
        assert pipe.put(encode(LinkKind.MESH, encode_frame(frame)))

        async def seen() -> None:
            while router.stats().drops.get(MeshDrop.SEEN, 0) <= before.drops.get(MeshDrop.SEEN, 0):  # noqa: ASYNC110
                await asyncio.sleep(0.01)

        async with asyncio.timeout(10):
            await seen()
        after = router.stats()
        assert after.drops[MeshDrop.SEEN] == before.drops.get(MeshDrop.SEEN, 0) + 1
        # C got the one copy and its session dropped it (not a datagram it can open).
        async with asyncio.timeout(10):
            while c.transport.relay.router.stats().delivered <= delivered_c:  # noqa: ASYNC110
                await asyncio.sleep(0.01)


async def test_peers_through_relays_go_at_once_when_the_last_link_goes(line: FakeBluetoothd) -> None:
    """A's one link (to B) drops: B and C, reached only through it, are both gone at once as
    NETWORK_DOWN (not later, when C's session would time out)."""
    async with (
        ObjectCache() as cache,
        ble_node(cache, 0, SETTINGS) as a,
        ble_node(cache, 1, SETTINGS) as b,
        ble_node(cache, 2, SETTINGS) as c,
    ):
        await _link_line(a, b, c)
        await _peer_up(a, c)
        assert c.identity.peer_id in a.transport.mesh_hops()
        await line.vanish("hci0", b.address)
        gone = {}
        while set(gone) != {b.identity.peer_id, c.identity.peer_id}:
            event = await a.next_event(PeerDisconnected, within=30)
            assert isinstance(event, PeerDisconnected)
            gone[event.peer] = event.reason
        assert set(gone.values()) == {DisconnectReason.NETWORK_DOWN}
        assert not a.transport.peers()
