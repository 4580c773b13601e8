"""The BLE transport between two node-side stacks on fake adapters (one process, one cache):
the handshake proves both ids over a central link, messages cross both ways (a 100 KB one
fragmented into chunks of the link's MTU and intact), a wrong id fails PEER_MISMATCH, a link
lost mid-transfer ends the session typed, and malformed chunks are dropped and counted."""

from __future__ import annotations

import asyncio
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bluez.links import LinkRole
from bluez.objects import ObjectCache
from bluez.proto.errors import ChunkDrop
from bluez.transport import BleDrop, BleSettings
from node.proto.identity import Identity
from node.proto.vocabulary import (
    BleEndpoint,
    DisconnectReason,
    Frame,
    PeerConnected,
    PeerDisconnected,
    TransportReason,
)
from node.transports.base import TransportPeerError
from tests.ble.nodes import node_stack
from tests.ble.transports import ble_node
from tests.fakes.bluez import FakeBluetoothd

pytestmark = pytest.mark.ble


async def test_handshake_proves_both_ids_and_frames_cross_both_ways(fake_bluez: FakeBluetoothd) -> None:
    async with ObjectCache() as cache, ble_node(cache, 0) as a, ble_node(cache, 1) as b:
        await a.find(b)
        await a.transport.connect(b.identity.peer_id, BleEndpoint(b.address))
        up_a = await a.next_event(PeerConnected)
        up_b = await b.next_event(PeerConnected)
        assert isinstance(up_a, PeerConnected) and up_a.peer == b.identity.peer_id
        assert up_a.endpoint == BleEndpoint(b.address)
        assert isinstance(up_b, PeerConnected) and up_b.peer == a.identity.peer_id
        assert up_b.endpoint == BleEndpoint(a.address)  # the inbound link, the central's address
        (link,) = a.transport.peers().values()
        assert link.role is LinkRole.OUTBOUND
        (back,) = b.transport.peers().values()
        assert back.role is LinkRole.INBOUND

        await a.transport.send(b.identity.peer_id, Frame(1, b"to b"))
        await b.transport.send(a.identity.peer_id, Frame(2, b"to a"))
        got_b, got_a = await b.message(), await a.message()
        assert (got_b.peer, got_b.frame) == (a.identity.peer_id, Frame(1, b"to b"))
        assert (got_a.peer, got_a.frame) == (b.identity.peer_id, Frame(2, b"to a"))


@pytest.mark.parametrize("mtu", [23, 185])
async def test_a_100_kb_message_crosses_fragmented_and_intact(fake_bluez: FakeBluetoothd, mtu: int) -> None:
    fake_bluez.set_mtu("hci0", mtu)
    fake_bluez.set_mtu("hci1", mtu)
    payload = os.urandom(100_000)
    async with ObjectCache() as cache, ble_node(cache, 0) as a, ble_node(cache, 1) as b:
        await a.find(b)
        await a.transport.connect(b.identity.peer_id, BleEndpoint(b.address))
        (link,) = a.transport.peers().values()
        assert link.mtu == mtu
        await a.transport.send(b.identity.peer_id, Frame(7, payload))
        got = await b.message(within=60)
        assert got.frame == Frame(7, payload)
        await b.transport.send(a.identity.peer_id, Frame(8, payload[::-1]))
        assert (await a.message(within=60)).frame == Frame(8, payload[::-1])
        # Every chunk fit the link's MTU: the fake refuses a longer write (gatt-api.txt).
        counts = a.transport.counters()
        assert counts["chunks_sent"] > 100_000 // (mtu - 3) and not counts["write_failures"]


async def test_a_wrong_peer_id_fails_peer_mismatch(fake_bluez: FakeBluetoothd) -> None:
    async with ObjectCache() as cache, ble_node(cache, 0) as a, ble_node(cache, 1) as b:
        await a.find(b)
        with pytest.raises(TransportPeerError) as failed:
            await a.transport.connect(a.identity.peer_id[::-1], BleEndpoint(b.address))
        assert failed.value.reason is TransportReason.PEER_MISMATCH
        assert not a.transport.peers()
        # The link stays; the right id connects on it.
        await a.transport.connect(b.identity.peer_id, BleEndpoint(b.address))
        assert list(a.transport.peers()) == [b.identity.peer_id]


async def test_a_link_lost_mid_transfer_disconnects_the_peer_typed(fake_bluez: FakeBluetoothd) -> None:
    async with ObjectCache() as cache, ble_node(cache, 0) as a, ble_node(cache, 1) as b:
        await a.find(b)
        await a.transport.connect(b.identity.peer_id, BleEndpoint(b.address))
        await a.transport.send(b.identity.peer_id, Frame(1, os.urandom(200_000)))
        await asyncio.sleep(0.05)  # chunks in flight
        await fake_bluez.vanish("hci0", b.address)
        gone = await a.next_event(PeerDisconnected)
        assert isinstance(gone, PeerDisconnected) and gone.reason is DisconnectReason.NETWORK_DOWN
        gone_b = await b.next_event(PeerDisconnected)
        assert isinstance(gone_b, PeerDisconnected) and gone_b.peer == a.identity.peer_id
        assert not a.transport.peers() and not a.transport.links
        # Both transports go on: B (which still knows A's device) links and connects again.
        await b.find(a)
        await b.transport.connect(a.identity.peer_id, BleEndpoint(a.address))
        await b.transport.send(a.identity.peer_id, Frame(2, b"again"))
        assert (await a.message()).frame == Frame(2, b"again")


async def test_malformed_chunks_and_datagrams_are_dropped_and_counted(fake_bluez: FakeBluetoothd) -> None:
    async with ObjectCache() as cache, ble_node(cache, 0) as a, ble_node(cache, 1) as b:
        await a.find(b)
        await a.transport.connect(b.identity.peer_id, BleEndpoint(b.address))
        link = a.transport.peers()[b.identity.peer_id]
        before = b.transport.health().malformed_dropped
        for chunk in (
            b"",  # no header
            bytes([0x05]) + b"orphan",  # a continuation without its first chunk
            # Datagram numbers far from the few A's own pipe has used on this link (HELLO,
            # announces, handshake), so A's next datagram is no DUPLICATE of the last of these.
            bytes([0xC1, 0xFF, 0xFF]) + b"x",  # a first chunk claiming 65535 bytes
            bytes([0xC2, 0x00, 0x02]) + b"xyz",  # more bytes than its length
            bytes([0xC3, 0x00, 0x02, 9, 1]),  # a whole datagram of unknown kind 9
            bytes([0xC4, 0x00, 0x03, 2, 1, 2]),  # a HELLO naming no peer id
            bytes([0xC5, 0x00, 0x05, 0]) + b"junk",  # a session datagram that is garbage
        ):
            if chunk:
                await link.send(chunk)
        await a.transport.send(b.identity.peer_id, Frame(3, b"still fine"))
        assert (await b.message()).frame == Frame(3, b"still fine")
        drops = b.transport.pool.stats().drops
        assert drops[ChunkDrop.ORPHAN] >= 1 and drops[ChunkDrop.TOO_LARGE] == 1
        assert drops[ChunkDrop.BAD_LENGTH] == 1
        assert b.transport.drops[BleDrop.UNKNOWN_KIND] == 1 and b.transport.drops[BleDrop.BAD_HELLO] == 1
        assert b.transport.health().malformed_dropped >= before + 6
        assert list(b.transport.peers()) == [a.identity.peer_id]


async def test_auto_handshake_makes_a_linked_node_a_peer(fake_bluez: FakeBluetoothd) -> None:
    settings = BleSettings(auto_handshake=True)
    async with ObjectCache() as cache, ble_node(cache, 0, settings) as a, ble_node(cache, 1, settings) as b:
        await a.find(b)
        await a.transport.open_link(b.address)
        up = await a.next_event(PeerConnected)
        assert isinstance(up, PeerConnected) and up.peer == b.identity.peer_id
        up_b = await b.next_event(PeerConnected)
        assert isinstance(up_b, PeerConnected) and up_b.peer == a.identity.peer_id


async def test_a_link_lost_mid_handshake_fails_the_connect_at_once(fake_bluez: FakeBluetoothd) -> None:
    """B is a bare stack that never answers a handshake: A's dial would retransmit for ~26 s and
    fail CONNECT_TIMEOUT. Its link dropping ends the dial at once, CONNECT_FAILED."""
    async with ObjectCache() as cache, ble_node(cache, 0) as a, node_stack(cache, 1) as b:
        async with asyncio.timeout(10):
            while b.address not in a.found:  # noqa: ASYNC110 - filled by the scanner
                await asyncio.sleep(0.01)
        nobody = Identity.from_private_key(Ed25519PrivateKey.generate()).peer_id
        dial = asyncio.create_task(a.transport.connect(nobody, BleEndpoint(b.address)))
        try:
            await b.handler.next_chunk()  # A's first link datagram reached B
            await fake_bluez.vanish("hci0", b.address)
            with pytest.raises(TransportPeerError) as failed:
                await dial
            assert failed.value.reason is TransportReason.CONNECT_FAILED
        finally:
            dial.cancel()
