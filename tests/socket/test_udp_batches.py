"""The UDP transport handles a read as one batch: what one read brings is demultiplexed datagram by
datagram, the session datagrams go to the table together and come out as one event per peer, and
what is sent in one turn of the loop goes out in one batched write.

A batch is made exactly as the loop makes one: the datagrams handed to the transport's protocol
one after another, with no turn of the loop in between. The session datagrams are real ones,
sealed by real client transports whose writes the test catches instead of sending.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.proto import stun
from node.proto.identity import Identity
from node.proto.stun.responder import BindingResponder, IPAddress, Outcome
from node.proto.vocabulary import BatchedEvent, Frame, MessagesReceived, PeerDisconnected
from node.security.trust import SessionVerifier, TrustMode, TrustPolicy
from node.transports.udp.transport import UdpSettings, UdpTransport
from tests.support.tlsnodes import eventually

Addr = tuple[Any, ...]


def _transport(responder: BindingResponder | None = None) -> UdpTransport:
    identity = Identity.from_private_key(Ed25519PrivateKey.generate())
    verifier = SessionVerifier(TrustPolicy(TrustMode.DEVELOPMENT))
    return UdpTransport(identity, verifier, UdpSettings(health_check_interval=3600), responder=responder)


class _TripsOnBoom(BindingResponder):
    """A responder with a bug that one datagram trips (``boom``): the wall's business."""

    def handle(self, data: bytes, source: tuple[IPAddress, int]) -> tuple[Outcome, bytes | None]:
        if data == b"boom":
            raise KeyError("a bug in the responder")
        return super().handle(data, source)


class _Caught:
    """A client transport whose session datagrams are caught instead of written."""

    def __init__(self, client: UdpTransport) -> None:
        self.client = client
        self.datagrams: list[bytes] = []
        client._path._transmit = self._catch

    def _catch(self, out: list[tuple[bytes, Addr]]) -> None:
        self.datagrams.extend(data for data, _ in out)

    @property
    def addr(self) -> Addr:
        local = self.client.local
        assert local is not None
        return (str(local.ip), local.port)

    async def seal(self, server: UdpTransport, *frames: Frame) -> list[bytes]:
        """The datagrams that carry ``frames`` to ``server``, sealed and caught."""
        self.datagrams.clear()
        for frame in frames:
            await self.client.send(server.identity.peer_id, frame)
        await asyncio.sleep(0)  # the turn's end, where the held datagrams are written
        return list(self.datagrams)


@asynccontextmanager
async def _server_and_clients(
    count: int, responder: BindingResponder | None = None
) -> AsyncIterator[tuple[UdpTransport, list[UdpTransport]]]:
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(_transport(responder))
        clients = [await stack.enter_async_context(_transport()) for _ in range(count)]
        local = server.local
        assert local is not None
        for client in clients:
            await client.connect(server.identity.peer_id, local)
        # The server counts a peer once its CONFIRM came, after the client's connect returned.
        await eventually(lambda: len(server.peers()) == count)
        yield server, clients


def _feed(server: UdpTransport, batch: list[tuple[bytes, Addr]]) -> None:
    """Hand ``batch`` to the server's protocol as one read of its socket does."""
    assert server._udp is not None
    protocol = server._udp.get_protocol()
    for data, addr in batch:
        protocol.datagram_received(data, addr)  # type: ignore[attr-defined]


async def _messages(server: UdpTransport, count: int) -> list[MessagesReceived]:
    """The server's next ``count`` messages, as the batches they came in."""
    batches: list[MessagesReceived] = []
    got = 0
    events: AsyncIterator[BatchedEvent] = server.batched_events()
    async with asyncio.timeout(10):
        async for event in events:
            if isinstance(event, MessagesReceived):
                batches.append(event)
                got += len(event.frames)
                if got >= count:
                    return batches
    return batches


def _binding_request() -> tuple[bytes, bytes]:
    transaction = stun.new_transaction_id()
    request = stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, transaction)
    return stun.encode(request), transaction


async def test_a_batch_of_two_sessions_stun_and_garbage_interleaved() -> None:
    async with _server_and_clients(2) as (server, (one, two)):
        a, b = _Caught(one), _Caught(two)
        a_first = await a.seal(server, Frame(1, b"a1"))
        a_rest = await a.seal(server, Frame(2, b"a2"), Frame(3, b"a3" * 1000))  # the 2nd: 2 fragments
        b_only = await b.seal(server, Frame(1, b"b1"))
        assert len(a_rest) == 3
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stun_client:
            stun_client.bind(("127.0.0.1", 0))
            stun_client.settimeout(5)
            request, transaction = _binding_request()
            before = server.metrics()
            _feed(
                server,
                [
                    (a_first[0], a.addr),
                    (request, stun_client.getsockname()),
                    (b"\x99 garbage, neither STUN nor a session", ("127.0.0.1", 9)),
                    (b_only[0], b.addr),
                    (a_rest[0], a.addr),
                    (a_rest[1], a.addr),
                    (a_rest[2], a.addr),
                ],
            )
            batches = await _messages(server, 4)
            answer = stun.decode(await asyncio.to_thread(stun_client.recv, 2048))
        after = server.metrics()
    assert answer.transaction_id == transaction  # the STUN request in the batch was answered
    assert after.malformed == before.malformed + 1  # the garbage counted, nothing else
    assert after.session_datagrams == before.session_datagrams + 5
    # One event per peer's run of datagrams in the batch, in the batch's order.
    by_peer = [(batch.peer, [(f.message_id, f.payload) for f in batch.frames]) for batch in batches]
    assert by_peer == [
        (one.identity.peer_id, [(1, b"a1")]),
        (two.identity.peer_id, [(1, b"b1")]),
        (one.identity.peer_id, [(2, b"a2"), (3, b"a3" * 1000)]),
    ]


async def test_a_batch_that_ends_with_a_fault_still_delivers_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _server_and_clients(1, responder=_TripsOnBoom()) as (server, (one,)):
        a = _Caught(one)
        sealed = await a.seal(server, Frame(1, b"first"), Frame(2, b"second"))
        with caplog.at_level(logging.ERROR, logger="node.transports.isolation"):
            _feed(
                server,
                [(sealed[0], a.addr), (b"boom", ("127.0.0.1", 9)), (sealed[1], a.addr), (b"boom", a.addr)],
            )
            (batch,) = await _messages(server, 2)
        assert [f.payload for f in batch.frames] == [b"first", b"second"]
        assert server.wall.snapshot() == {"KeyError": 2}
    faults = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert faults and "datagram from 127.0.0.1" in faults[0].getMessage()


async def test_messages_sent_in_one_turn_go_out_in_one_batched_write() -> None:
    async with _server_and_clients(1) as (server, (client,)):
        writer = client._writer
        assert writer is not None
        writes = writer.gso_writes
        for i in range(20):
            await client.send(server.identity.peer_id, Frame(i, b"m" * 500))
        got = sum(len(batch.frames) for batch in await _messages(server, 20))
        assert got == 20
        assert writer.gso_writes == writes + 1 or not writer.gso  # one write, unless GSO is refused


async def test_what_was_sent_just_before_a_close_still_goes_out() -> None:
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(_transport())
        local = server.local
        assert local is not None
        async with _transport() as client:
            await client.connect(server.identity.peer_id, local)
            await client.send(server.identity.peer_id, Frame(7, b"last words"))
        (batch,) = await _messages(server, 1)
        assert [f.payload for f in batch.frames] == [b"last words"]


async def test_messages_come_before_the_disconnect_that_follows_them() -> None:
    async with _server_and_clients(1) as (server, (one,)):
        a = _Caught(one)
        (sealed,) = await a.seal(server, Frame(1, b"before"))
        path = server._path
        now = path.now()
        path.table.receive_datagram(sealed, a.addr, now)  # read, then closed, in one turn
        path.table.close(one.identity.peer_id, now)
        path.pump()
        events: list[BatchedEvent] = []
        async with asyncio.timeout(10):
            async for event in server.batched_events():
                events.append(event)
                if isinstance(event, PeerDisconnected):
                    break
    assert [type(e) for e in events[-2:]] == [MessagesReceived, PeerDisconnected]
