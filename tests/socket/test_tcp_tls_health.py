"""Breaker per remote, health monitoring with recovery, and the pool, over real TCP-TLS."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from node.config import BreakerSection
from node.proto.vocabulary import (
    DisconnectReason,
    Frame,
    MessageReceived,
    PeerConnected,
    PeerDisconnected,
    TransportReason,
    TransportState,
)
from node.transports.base import BreakerOpenError
from tests.support.tlsnodes import endpoint_of, eventually, new_node, next_event, pinned_creds, transport


async def test_lost_path_opens_the_breaker_then_recovers(tmp_path: Path) -> None:
    a, b = new_node(tmp_path, "a"), new_node(tmp_path, "b")
    breaker = BreakerSection(failure_threshold=2, recovery_timeout_s=0.5).new_breaker
    async with transport(
        pinned_creds(a, frozenset()), listen=False, health_check_interval=0.1, breaker=breaker
    ) as ta:
        async with transport(pinned_creds(b, frozenset())) as tb:
            target = endpoint_of(tb)
            await ta.connect(b.ident.peer_id, target)
            assert await next_event(ta, PeerConnected) == PeerConnected(b.ident.peer_id, target)
        # B is gone: the link drops, the health loop's re-dials fail and open the breaker.
        lost = await next_event(ta, PeerDisconnected)
        assert lost == PeerDisconnected(b.ident.peer_id, DisconnectReason.SHUTDOWN)
        await eventually(lambda: ta.state is TransportState.DEGRADED)
        with pytest.raises(BreakerOpenError) as refused:
            await ta.dial(target, b.ident.peer_id)
        assert refused.value.reason is TransportReason.BREAKER_OPEN
        # When the breaker half-opens: what a redial loop waits instead of its own backoff.
        assert 0 < refused.value.retry_in_s <= 0.5
        # B comes back on the same port: after the recovery timeout a trial succeeds.
        async with transport(pinned_creds(b, frozenset()), port=target.port):
            assert await next_event(ta, PeerConnected) == PeerConnected(b.ident.peer_id, target)
            await eventually(lambda: ta.state is TransportState.READY)
            assert b.ident.peer_id in ta.peers()
            await eventually(lambda: ta.health().rtt_ms is not None)  # the health loop pings live links


async def test_idle_dialled_links_beyond_the_pool_are_closed_connected_peers_kept(tmp_path: Path) -> None:
    a = new_node(tmp_path, "a")
    others = [new_node(tmp_path, f"p{i}") for i in range(4)]
    async with transport(
        pinned_creds(a, frozenset()), listen=False, health_check_interval=0.1, pool_size=1
    ) as ta:
        servers = [transport(pinned_creds(o, frozenset())) for o in others]
        for s in servers:
            await s.__aenter__()
        try:
            kept = others[0].ident.peer_id
            await ta.connect(kept, endpoint_of(servers[0]))
            for s in servers[1:]:
                await ta.dial(endpoint_of(s))
            assert len(ta.peers()) == 4
            # One idle dialled link stays warm (pool_size 1); the connected peer is never pooled out.
            await eventually(lambda: len(ta.peers()) == 2)
            assert kept in ta.peers()
        finally:
            for s in servers:
                await s.__aexit__(None, None, None)


async def test_both_sides_dialling_at_once_keep_exactly_one_connection(tmp_path: Path) -> None:
    a, b = new_node(tmp_path, "a"), new_node(tmp_path, "b")
    async with transport(pinned_creds(a, frozenset())) as ta, transport(pinned_creds(b, frozenset())) as tb:
        for _ in range(5):
            await asyncio.gather(
                ta.dial(endpoint_of(tb), b.ident.peer_id), tb.dial(endpoint_of(ta), a.ident.peer_id)
            )
            await eventually(lambda: ta.health().connections == 1 and tb.health().connections == 1)
            assert ta.peers() == (b.ident.peer_id,) and tb.peers() == (a.ident.peer_id,)
            await ta.send(b.ident.peer_id, Frame(1, b"over the one that survived"))
            got = await next_event(tb, MessageReceived)
            assert got == MessageReceived(a.ident.peer_id, Frame(1, b"over the one that survived"))
            await ta.disconnect(b.ident.peer_id)
            await eventually(lambda: ta.health().connections == 0 and tb.health().connections == 0)
