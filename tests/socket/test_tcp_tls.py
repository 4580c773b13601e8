"""TCP + TLS 1.3 between real transports on loopback: mutual authentication and refusals."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from node.proto.link.frames import HEADER_SIZE
from node.proto.vocabulary import (
    DisconnectReason,
    Frame,
    MessageReceived,
    MessagesReceived,
    PeerConnected,
    PeerDisconnected,
    Priority,
    TransportReason,
)
from node.security import certs
from node.security.trust import TrustReason
from node.transports.base import TransportUsageError
from node.transports.tcp_tls.link import READ_SIZE, TlsPeerError, dial
from node.transports.tcp_tls.transport import EVENT_QUEUE
from tests.support.tlsnodes import (
    endpoint_of,
    eventually,
    expired_issue,
    fleet_creds,
    new_node,
    next_event,
    pinned_creds,
    rogue_creds,
    transport,
)


async def test_two_nodes_mutual_auth_then_messages_both_ways(tmp_path: Path) -> None:
    ca = certs.make_ca()
    a, b = new_node(tmp_path, "a", ca), new_node(tmp_path, "b", ca)
    async with transport(fleet_creds(a, ca)) as ta, transport(fleet_creds(b, ca)) as tb:
        proven = await tb.dial(endpoint_of(ta), a.ident.peer_id)
        assert proven == a.ident.peer_id
        connected = await next_event(ta, PeerConnected)
        assert connected.peer == b.ident.peer_id  # type: ignore[attr-defined]
        await tb.send(a.ident.peer_id, Frame(1, b"hello a", Priority.HIGH))
        got = await next_event(ta, MessageReceived)
        assert got == MessageReceived(b.ident.peer_id, Frame(1, b"hello a", Priority.HIGH))
        await ta.send(b.ident.peer_id, Frame(2, b"hello b"))
        assert (await next_event(tb, MessageReceived)).frame.payload == b"hello b"  # type: ignore[attr-defined]
        assert await tb.ping(a.ident.peer_id) > 0
        # A second connect to the same peer reuses the connection.
        await tb.connect(a.ident.peer_id, endpoint_of(ta))
        assert tb.metrics().pool_reuses == 1
        assert tb.health().connections == 1


async def test_batched_events_carry_every_message_in_order_with_the_connection_events(tmp_path: Path) -> None:
    a, b = new_node(tmp_path, "a"), new_node(tmp_path, "b")
    sizes = [0, 1, 1000, 70_000, 5, 300_000, 20] * 60  # small ones share reads, large ones span them
    async with transport(pinned_creds(a, frozenset())) as ta, transport(pinned_creds(b, frozenset())) as tb:
        await tb.dial(endpoint_of(ta), a.ident.peer_id)
        for i, size in enumerate(sizes):
            await tb.send(a.ident.peer_id, Frame(i, bytes([i % 256]) * size, Priority(i % 4)))
        got: list[Frame] = []
        batches: list[int] = []
        async with asyncio.timeout(30):
            stream = ta.batched_events()
            first = await anext(stream)
            assert isinstance(first, PeerConnected) and first.peer == b.ident.peer_id
            async for event in stream:
                assert isinstance(event, MessagesReceived)
                assert event.peer == b.ident.peer_id
                got += event.frames
                batches.append(len(event.frames))
                if len(got) >= len(sizes):
                    break
        assert got == [Frame(i, bytes([i % 256]) * n, Priority(i % 4)) for i, n in enumerate(sizes)]
        assert max(batches) > 1  # a read with several messages is one event
        assert ta.health().messages_received == len(sizes)
        await tb.disconnect(a.ident.peer_id)
        async with asyncio.timeout(10):
            assert await anext(stream) == PeerDisconnected(b.ident.peer_id, DisconnectReason.CLOSED_BY_PEER)


async def test_send_errors_are_typed_and_an_oversize_send_leaves_the_link_working(tmp_path: Path) -> None:
    a, b = new_node(tmp_path, "a"), new_node(tmp_path, "b")
    creds_a, creds_b = pinned_creds(a, frozenset()), pinned_creds(b, frozenset())
    async with transport(creds_a, max_message=1000) as ta, transport(creds_b, max_message=1000) as tb:
        peer = await tb.dial(endpoint_of(ta))
        for target in (peer, "nobody"):
            with pytest.raises(TransportUsageError) as too_big:
                await tb.send(target, Frame(1, b"x" * 1001))
            assert too_big.value.reason is TransportReason.MESSAGE_TOO_LARGE
        with pytest.raises(TransportUsageError) as nobody:
            await tb.send("nobody", Frame(2, b"x"))
        assert nobody.value.reason is TransportReason.NOT_CONNECTED
        await tb.send(peer, Frame(3, b"x" * 1000))  # exactly the maximum
        assert (await next_event(ta, MessageReceived)).frame == Frame(3, b"x" * 1000)  # type: ignore[attr-defined]
        tb._links[peer].close()  # closed under the transport's feet: the next send is refused, typed
        with pytest.raises(TransportUsageError) as closed:
            await tb.send(peer, Frame(4, b"x"))
        assert closed.value.reason is TransportReason.NOT_CONNECTED


async def test_a_consumer_that_falls_behind_stops_the_reads_not_the_memory(tmp_path: Path) -> None:
    """The event channel holds at most EVENT_QUEUE messages and one read more; then the link
    stops reading, TCP fills, and the sender's send() waits. Nothing is lost."""
    a, b = new_node(tmp_path, "a"), new_node(tmp_path, "b")
    count, payload = 40_000, b"m" * 1000  # 40 MB: far more than the sockets and buffers hold
    most = EVENT_QUEUE + READ_SIZE // (HEADER_SIZE + len(payload)) + 1
    async with transport(pinned_creds(a, frozenset())) as ta, transport(pinned_creds(b, frozenset())) as tb:
        peer = await tb.dial(endpoint_of(ta))

        async def produce() -> None:
            for i in range(count):
                await tb.send(peer, Frame(i, payload))

        async with asyncio.TaskGroup() as tasks:
            producer = tasks.create_task(produce())
            await eventually(lambda: ta.health().messages_received >= EVENT_QUEUE)
            for _ in range(20):
                await asyncio.sleep(0.01)
                assert ta.health().messages_received <= most  # nobody took any: the reads stopped
            assert not producer.done()
            got = 0
            async with asyncio.timeout(60):
                async for event in ta.events():
                    if isinstance(event, MessageReceived):
                        assert event.frame.message_id == got
                        got += 1
                        if got == count:
                            break
        assert producer.done()


async def test_refusals_are_typed_and_the_node_keeps_serving(tmp_path: Path) -> None:
    ca, other_ca = certs.make_ca(), certs.make_ca()
    server, good = new_node(tmp_path, "server", ca), new_node(tmp_path, "good", ca)
    foreign = new_node(tmp_path, "foreign", other_ca)
    expired = new_node(tmp_path, "expired", ca)
    assert expired.cert_file is not None
    expired.cert_file.write_bytes(expired_issue(ca, expired.ident))
    liar = new_node(tmp_path, "liar", ca, san_peer_id=good.ident.peer_id)  # SAN names another peer
    async with transport(fleet_creds(server, ca)) as ts:
        target = endpoint_of(ts)
        cases = [
            (foreign, TrustReason.UNKNOWN_CA),
            (expired, TrustReason.EXPIRED),
            (liar, TrustReason.SAN_MISMATCH),
        ]
        for node, reason in cases:
            with pytest.raises(TlsPeerError) as err:
                await dial(target, None, rogue_creds(node, ca), ts.settings.link)
            assert err.value.reason is TransportReason.AUTH_FAILED, node
            assert err.value.trust is reason
        # A client of another fleet refuses our node's certificate in TLS, by OpenSSL's code.
        with pytest.raises(TlsPeerError) as err:
            await dial(target, None, fleet_creds(foreign, other_ca), ts.settings.link)
        assert err.value.trust is TrustReason.UNKNOWN_CA
        # A TLS 1.2-only client.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        # The server names the reason; the client (uvloop closes without sending its alert) sees
        # a TLS error or a reset, and never a connection.
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            await asyncio.open_connection(str(target.ip), target.port, ssl=ctx)
        # The node refused each with a typed reason and still serves a good peer.
        async with transport(fleet_creds(good, ca), listen=False) as tg:
            assert await tg.dial(target, server.ident.peer_id) == server.ident.peer_id
        await eventually(lambda: ts.metrics().failures(TrustReason.PROTOCOL_VERSION) == 1)
        metrics = ts.metrics()
        assert metrics.failures(TrustReason.UNKNOWN_CA) == 1
        assert metrics.failures(TrustReason.EXPIRED) == 1
        assert metrics.failures(TrustReason.SAN_MISMATCH) == 1
        assert metrics.handshakes == 1
