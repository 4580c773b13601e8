"""A link whose local address the link monitor reports gone ends at once with NETWORK_DOWN."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from node.proto.vocabulary import DisconnectReason, Frame, PeerDisconnected
from tests.support.tlsnodes import endpoint_of, new_node, next_event, pinned_creds, transport

LOOPBACK = ipaddress.ip_address("127.0.0.1")


async def test_links_on_a_lost_local_address_end_with_network_down_and_others_stay(tmp_path: Path) -> None:
    a, b = new_node(tmp_path, "a"), new_node(tmp_path, "b")
    async with transport(pinned_creds(a, frozenset())) as ta, transport(pinned_creds(b, frozenset())) as tb:
        await tb.dial(endpoint_of(ta), a.ident.peer_id)
        # An address this link does not use: nothing happens, the link still carries traffic.
        assert tb.network_down({ipaddress.ip_address("192.0.2.7")}) == ()
        assert await tb.ping(a.ident.peer_id) > 0
        # Its own local address goes: the link is reset and reported as NETWORK_DOWN at once.
        assert tb.network_down({LOOPBACK}) == (a.ident.peer_id,)
        gone = await next_event(tb, PeerDisconnected)
        assert gone == PeerDisconnected(a.ident.peer_id, DisconnectReason.NETWORK_DOWN)
        assert tb.peers() == ()
        # The far end sees the reset as the peer going away, not as its own network.
        far = await next_event(ta, PeerDisconnected)
        assert far.reason is not DisconnectReason.NETWORK_DOWN  # type: ignore[attr-defined]
        # The transport itself is fine: a new dial works and carries a message.
        await tb.dial(endpoint_of(ta), a.ident.peer_id)
        await tb.send(a.ident.peer_id, Frame(1, b"after"))
        assert await tb.ping(a.ident.peer_id) > 0
