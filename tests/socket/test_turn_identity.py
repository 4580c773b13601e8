"""TURN with identity: two relay transports on loopback, through the TURN server model (every
relay-to-relay datagram recorded), prove each other's ids in the secure session; a wrong expected
id is refused; the relay's address-to-peer map comes only from authenticated sessions."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.proto.identity import Identity
from node.proto.session.table_types import TableCount
from node.proto.turn.credentials import Credentials
from node.proto.turn.uri import TurnServerAddress, TurnTransport
from node.proto.vocabulary import (
    Frame,
    IpEndpoint,
    MessagesReceived,
    PeerConnected,
    RelayEndpoint,
    TransportReason,
)
from node.security.trust import SessionVerifier, TrustMode, TrustPolicy
from node.transports.base import TransportPeerError
from node.transports.turn.relay import TurnRelayTransport
from tests.socket.test_turn_connection import ModelServer, served
from tests.support.tlsnodes import eventually

__all__ = ["served"]  # the fixture, shared with the TURN driver's tests

GOOD = Credentials("alice", "wonderland")
MARKER = b"MARKER-7f3c-turn-identity-payload"


def _identity() -> Identity:
    return Identity.from_private_key(Ed25519PrivateKey.generate())


def _dev() -> SessionVerifier:
    return SessionVerifier(TrustPolicy(TrustMode.DEVELOPMENT))


class Pair:
    def __init__(self, server: ModelServer, port: int, stack: AsyncExitStack) -> None:
        self.server = server
        self.port = port
        self.stack = stack

    async def relay(self, identity: Identity) -> TurnRelayTransport:
        servers = [TurnServerAddress("127.0.0.1", self.port, TurnTransport.UDP)]
        return await self.stack.enter_async_context(
            TurnRelayTransport(servers, lambda: GOOD, identity, _dev())
        )

    def at(self, transport: TurnRelayTransport) -> RelayEndpoint:
        assert transport.relayed is not None
        return RelayEndpoint(
            IpEndpoint(ipaddress.IPv4Address("127.0.0.1"), self.port), IpEndpoint(*transport.relayed)
        )


@pytest.fixture
async def pair(served: tuple[ModelServer, dict[TurnTransport, int]]) -> AsyncIterator[Pair]:
    server, ports = served
    server.echo = False
    async with AsyncExitStack() as stack:
        yield Pair(server, ports[TurnTransport.UDP], stack)


async def test_two_relays_prove_each_others_ids_and_the_relay_sees_no_payload(pair: Pair) -> None:
    alice, bob = _identity(), _identity()
    a, b = await pair.relay(alice), await pair.relay(bob)
    await asyncio.gather(a.connect(bob.peer_id, pair.at(b)), b.connect(alice.peer_id, pair.at(a)))
    # Each side's map holds the proven id at the address its session authenticated from.
    assert a.peers() == {bob.peer_id: b.relayed}
    assert b.peers() == {alice.peer_id: a.relayed}
    events = b.batched_events()
    assert await anext(events) == PeerConnected(alice.peer_id, pair.at(a))
    big = MARKER + bytes(range(256)) * 20  # several fragments
    await a.send(bob.peer_id, Frame(1, MARKER))
    await a.send(bob.peer_id, Frame(2, big))
    got: list[Frame] = []
    async with asyncio.timeout(5):
        while len(got) < 2:
            event = await anext(events)
            assert isinstance(event, MessagesReceived) and event.peer == alice.peer_id
            got.extend(event.frames)
    assert sorted(got, key=lambda f: f.message_id) == [Frame(1, MARKER), Frame(2, big)]
    # What the TURN server relayed between the two allocations: sealed session messages only.
    relayed = b"".join(data for _, _, data in pair.server.relayed)
    assert len(pair.server.relayed) >= 5  # the handshake and the data went through the relay
    for secret in (MARKER, alice.peer_id.encode(), bob.peer_id.encode(), alice.public_key, bob.public_key):
        assert secret not in relayed


async def test_a_wrong_expected_id_through_the_relay_is_refused(pair: Pair) -> None:
    alice, bob, someone = _identity(), _identity(), _identity()
    a, b = await pair.relay(alice), await pair.relay(bob)
    # Bob only lets Alice's relayed address in (signalling's part); Alice dials bob expecting someone.
    assert a.relayed is not None
    b.relay.open_peer(a.relayed)
    async with asyncio.timeout(5):
        await b.relay.peer_ready(a.relayed)
    with pytest.raises(TransportPeerError) as refused:
        await a.connect(someone.peer_id, pair.at(b))
    assert refused.value.reason is TransportReason.PEER_MISMATCH
    # Nobody was taken on the caller's word: no peer on either side.
    assert a.peers() == {} and b.peers() == {}
    assert a.health().connections == 0
    # The right id through the same relay is proven.
    await a.connect(bob.peer_id, pair.at(b))
    assert a.peers() == {bob.peer_id: b.relayed}


async def test_the_callers_address_never_moves_a_proven_peer(pair: Pair) -> None:
    alice, bob, carol = _identity(), _identity(), _identity()
    a, b, c = await pair.relay(alice), await pair.relay(bob), await pair.relay(carol)
    await asyncio.gather(a.connect(bob.peer_id, pair.at(b)), b.connect(alice.peer_id, pair.at(a)))
    # Claiming that Bob is now at Carol's relayed address changes nothing: Bob's session says where he is.
    await a.connect(bob.peer_id, pair.at(c))
    assert a.peers() == {bob.peer_id: b.relayed}
    # Carol replays one of Bob's sealed datagrams to Alice from her own address: it does not
    # authenticate anew, so Bob stays where his session is and Carol is nobody.
    assert a.relayed is not None and b.relayed is not None and c.relayed is not None
    sealed = [data for src, dst, data in pair.server.relayed if src == b.relayed and dst == a.relayed]
    c.relay.open_peer(a.relayed)
    a.relay.open_peer(c.relayed)
    async with asyncio.timeout(5):
        await c.relay.peer_ready(a.relayed)
        await a.relay.peer_ready(c.relayed)
    before = a._path.table.counts[TableCount.UNAUTHENTICATED]
    assert c.relay.connection is not None
    c.relay.connection.send(a.relayed, sealed[-1])
    await eventually(lambda: a._path.table.counts[TableCount.UNAUTHENTICATED] > before)
    assert a.peers() == {bob.peer_id: b.relayed}
    await a.send(bob.peer_id, Frame(5, b"still to bob"))
    async with asyncio.timeout(5):
        async for event in b.batched_events():
            if isinstance(event, MessagesReceived):
                assert event.frames == (Frame(5, b"still to bob"),)
                break
