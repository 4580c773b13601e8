"""The coordinator service with real transports on loopback: two nodes' coordinators in one
process, each over its own UdpTransport and TcpTlsTransport (tests/socket/coordinator_nodes.py).

Each message carries its index, so the receiver can check exactly once and in order per class.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from pathlib import Path

import pytest

from node.config import CoordinatorSection, TransportSection
from node.proto.delivery.events import FailReason
from node.proto.vocabulary import Frame, Priority, TransportKind
from node.services.coordinator import (
    ApiReason,
    ApiUsageError,
    InboundMessage,
    NodeApi,
    PeerState,
    PeerUnreachableError,
)
from node.transports.udp.transport import UdpTransport
from tests.socket.coordinator_nodes import LocalNode, config, local_node
from tests.support.tlsnodes import eventually

COUNT = 1000


def _payload(index: int, rng: random.Random) -> bytes:
    # Mixed sizes: most small game messages, some spanning many UDP fragments.
    size = rng.choice((0, 16, 200, 1500, 5000, 40_000))
    return index.to_bytes(4, "big") + rng.randbytes(size)


def _priority(index: int) -> Priority:
    return Priority(index % len(Priority))


async def _collect(api: NodeApi, count: int, into: list[InboundMessage]) -> None:
    async for message in api.messages():
        into.append(message)
        if len(into) == count:
            return


def _check_exactly_once_in_order(received: list[InboundMessage], count: int, sent: dict[int, bytes]) -> None:
    indices = [int.from_bytes(m.data[:4], "big") for m in received]
    assert sorted(indices) == list(range(count))  # every one, once
    by_class: dict[Priority, list[int]] = defaultdict(list)
    for index, message in zip(indices, received, strict=True):
        assert message.data == sent[index]
        assert message.priority is _priority(index)
        by_class[message.priority].append(index)
    for indices_of_class in by_class.values():
        assert indices_of_class == sorted(indices_of_class)  # in order within each class
    assert len({m.message_id for m in received}) == count


async def _connect_both_paths(a: LocalNode, b: LocalNode) -> None:
    connected = await a.api.connect(b.peer_id, [b.udp_uri, b.tls_uri], timeout=20)
    assert connected.peer == b.peer_id
    await eventually(lambda: len(a.coordinator.coordinator.paths(b.peer_id)) == 2)
    await eventually(
        lambda: b.peer_id in a.coordinator.coordinator.peers() and a.active_kind(b.peer_id) is not None
    )


async def _send_all(a: LocalNode, b: LocalNode, sent: dict[int, bytes]) -> None:
    # All at once: the window (and its FIFO of waiting callers) orders them.
    async with asyncio.TaskGroup() as tasks:
        for index in range(COUNT):
            tasks.create_task(a.api.send(b.peer_id, sent[index], _priority(index)))


async def test_connect_by_peer_id_and_a_thousand_messages_arrive_exactly_once_in_order(
    tmp_path: Path,
) -> None:
    rng = random.Random(15)
    sent = {i: _payload(i, rng) for i in range(COUNT)}
    async with local_node(tmp_path, "a") as a, local_node(tmp_path, "b") as b:
        events = a.api.peer_events()
        await _connect_both_paths(a, b)
        first = await anext(events)
        assert first.peer == b.peer_id and first.state is PeerState.CONNECTED
        kinds = {key.kind for key in a.coordinator.coordinator.paths(b.peer_id)}
        assert kinds == {TransportKind.UDP, TransportKind.TCP_TLS}
        received: list[InboundMessage] = []
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_collect(b.api, COUNT, received))
            await _send_all(a, b, sent)
        _check_exactly_once_in_order(received, COUNT, sent)
        assert {m.peer for m in received} == {a.peer_id}
        status = a.coordinator.status().to_json()
        assert status["messages"]["sent"] == COUNT
        assert status["messages"]["acknowledged"] == COUNT
        assert status["messages"]["failed"] == 0
        assert status["peers"][0]["peer_id"] == b.peer_id
        assert status["peers"][0]["paths"] == 2
        assert b.coordinator.status().to_json()["messages"]["received"] == COUNT


@pytest.mark.parametrize("kill_udp_first", [True, False])
async def test_killing_the_active_path_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, kill_udp_first: bool
) -> None:
    rng = random.Random(16)
    sent = {i: _payload(i, rng) for i in range(COUNT)}
    async with local_node(tmp_path, "a") as a, local_node(tmp_path, "b") as b:
        await _connect_both_paths(a, b)
        # Make the path under test the active one: drop the other and let it come back.
        if kill_udp_first:
            await a.api.connect(b.peer_id, [b.udp_uri], timeout=20)
        received: list[InboundMessage] = []
        killed: list[TransportKind] = []

        async def kill_active_mid_stream() -> None:
            await eventually(lambda: len(received) >= COUNT // 3)
            kind = a.active_kind(b.peer_id)
            assert kind is not None
            if kind is TransportKind.UDP:
                await a.udp.transport.disconnect(b.peer_id)
            else:
                await a.tls.transport.disconnect(b.peer_id)
            killed.append(kind)

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_collect(b.api, COUNT, received))
            tasks.create_task(kill_active_mid_stream())
            await _send_all(a, b, sent)
        _check_exactly_once_in_order(received, COUNT, sent)
        assert killed  # the path was killed with messages still to send
        status = a.coordinator.status().to_json()
        assert status["messages"]["acknowledged"] == COUNT
        assert status["messages"]["failed"] == 0
        # The traffic moved to the surviving path.
        assert a.active_kind(b.peer_id) not in (None, killed[0])


async def test_unreliable_messages_are_sent_once_and_delivered_at_most_once(tmp_path: Path) -> None:
    async with local_node(tmp_path, "a") as a, local_node(tmp_path, "b") as b:
        await a.api.connect(b.peer_id, [b.udp_uri], timeout=20)
        ids = [
            await a.api.send(b.peer_id, bytes([i]) * 100, Priority.HIGH, reliable=False) for i in range(50)
        ]
        assert len(set(ids)) == 50
        received: list[InboundMessage] = []
        # Loopback rarely drops one; nothing resends them, so wait for what comes within a bound.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(3):
                await _collect(b.api, 51, received)
        assert received and len({m.message_id for m in received}) == len(received)
        assert {m.message_id for m in received} <= set(ids)
        status = a.coordinator.status().to_json()["messages"]
        assert status["sent"] == 50 and status["resent"] == 0 and status["acknowledged"] == 0


async def test_a_full_inbox_makes_the_sender_wait_and_nothing_is_lost(tmp_path: Path) -> None:
    small_inbox = config(coordinator=CoordinatorSection(inbox_max_messages=8, window_max_messages=16))
    count = 300
    async with local_node(tmp_path, "a", small_inbox) as a, local_node(tmp_path, "b", small_inbox) as b:
        await a.api.connect(b.peer_id, [b.udp_uri, b.tls_uri], timeout=20)
        out_seen = {"in_flight": 0, "waiting": 0, "inbox": 0}
        received: list[InboundMessage] = []

        async def slow_subscriber() -> None:
            async for message in b.api.messages():
                received.append(message)
                out = a.coordinator.sending.out[b.peer_id]
                out_seen["in_flight"] = max(out_seen["in_flight"], out.sender.stats().in_flight)
                out_seen["waiting"] = max(out_seen["waiting"], len(out.room))
                held = max(len(b.coordinator.inbox), b.coordinator.receiver.stats().inbox_messages)
                out_seen["inbox"] = max(out_seen["inbox"], held)
                await asyncio.sleep(0.002)
                if len(received) == count:
                    return

        sent = {i: i.to_bytes(4, "big") + b"x" * 300 for i in range(count)}
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(slow_subscriber())
            async with asyncio.TaskGroup() as senders:
                for i in range(count):
                    senders.create_task(a.api.send(b.peer_id, sent[i], _priority(i)))
        indices = [int.from_bytes(m.data[:4], "big") for m in received]
        assert sorted(indices) == list(range(count))
        assert out_seen["inbox"] <= 8  # the inbox bound held
        assert out_seen["in_flight"] <= 16  # the window bound held
        assert out_seen["waiting"] > 0  # senders waited for room
        assert a.coordinator.status().counters.failed == 0


async def test_a_peer_that_never_acknowledges_fails_the_send_after_the_retries(tmp_path: Path) -> None:
    quick = config(transport=TransportSection(retries=2, retry_backoff_s=0.1, failover_timeout_s=1.0))
    async with local_node(tmp_path, "a", quick) as a, local_node(tmp_path, "mute", quick) as mute:
        # The mute peer's transports run, its sessions answer, but nothing reads its events.
        await mute.coordinator.__aexit__(None, None, None)
        await a.api.connect(mute.peer_id, [mute.udp_uri], timeout=20)
        with pytest.raises(PeerUnreachableError) as caught:
            await a.api.send(mute.peer_id, b"hello?")
        assert caught.value.reason is ApiReason.DELIVERY_FAILED
        assert caught.value.failure is FailReason.RETRIES_EXHAUSTED
        assert a.coordinator.status().counters.failed == 1
        assert a.coordinator.status().counters.resent >= 2


async def test_bad_sends_raise_typed_errors(tmp_path: Path) -> None:
    async with local_node(tmp_path, "a") as a:
        with pytest.raises(PeerUnreachableError) as unknown:
            await a.api.send("a" * 52, b"x")
        assert unknown.value.reason is ApiReason.UNKNOWN_PEER
        with pytest.raises(ApiUsageError) as large:
            await a.api.send("a" * 52, b"x" * ((1 << 20) + 1))  # 1 MiB itself is allowed
        assert large.value.reason is ApiReason.TOO_LARGE


async def test_garbage_delivery_payload_from_an_authenticated_peer_is_counted(tmp_path: Path) -> None:
    async with local_node(tmp_path, "a") as a, local_node(tmp_path, "b") as b:
        await a.api.connect(b.peer_id, [b.udp_uri], timeout=20)
        await eventually(lambda: a.peer_id in b.coordinator.coordinator.peers())
        udp: UdpTransport = b.udp.transport
        junk = (b"", b"\x07junk", b"\x01\x00", b"\x02" + b"\xff" * 30)
        for n, data in enumerate(junk):
            await udp.send(a.peer_id, Frame(1 << 40 | n, data))  # ids of their own: not taken for copies
        await eventually(lambda: a.coordinator.status().counters.malformed == 4)
        # The node is fine: the same peer's real messages still arrive.
        await b.api.send(a.peer_id, b"after the garbage")
        message = await anext(a.api.messages())
        assert message.data == b"after the garbage" and message.peer == b.peer_id
