"""A UDP session whose source address the link monitor reports gone ends at once as NETWORK_DOWN."""

from __future__ import annotations

import ipaddress

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.proto.identity import Identity
from node.proto.vocabulary import DisconnectReason, Frame, MessageReceived, PeerConnected, PeerDisconnected
from node.security.trust import SessionVerifier, TrustMode, TrustPolicy
from node.transports.route import source_address
from node.transports.udp.transport import UdpTransport


def _identity() -> Identity:
    return Identity.from_private_key(Ed25519PrivateKey.generate())


def _dev() -> SessionVerifier:
    return SessionVerifier(TrustPolicy(TrustMode.DEVELOPMENT))


def test_the_kernel_source_for_loopback_is_loopback_and_nothing_for_an_unroutable_address() -> None:
    assert source_address(("127.0.0.1", 9)) == ipaddress.ip_address("127.0.0.1")
    assert source_address(("::1", 9, 0, 0)) == ipaddress.ip_address("::1")
    assert source_address(("not an address", 9)) is None


async def test_sessions_on_a_lost_source_address_close_as_network_down() -> None:
    alice, bob = _identity(), _identity()
    async with UdpTransport(alice, _dev()) as a, UdpTransport(bob, _dev()) as b:
        assert b.local is not None
        await a.connect(bob.peer_id, b.local)
        events = a.events()
        assert isinstance(await anext(events), PeerConnected)
        loopback = ipaddress.ip_address("127.0.0.1")
        assert a.source_of(bob.peer_id) == loopback
        # Another address going changes nothing: the session still carries a message.
        assert a.network_down({ipaddress.ip_address("192.0.2.5")}) == ()
        bob_events = b.events()
        assert isinstance(await anext(bob_events), PeerConnected)
        await a.send(bob.peer_id, Frame(1, b"still here"))
        got = await anext(bob_events)
        assert isinstance(got, MessageReceived) and got.frame.payload == b"still here"
        # Its own source address goes: closed at once, with the reason the coordinator acts on.
        assert a.network_down({loopback}) == (bob.peer_id,)
        assert await anext(events) == PeerDisconnected(bob.peer_id, DisconnectReason.NETWORK_DOWN)
        assert a.peers() == () and a.source_of(bob.peer_id) is None
        # The transport itself goes on: a new handshake works.
        await a.connect(bob.peer_id, b.local)
        assert a.source_of(bob.peer_id) == loopback
