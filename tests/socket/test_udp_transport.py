"""The UDP transport between two real sockets on loopback: handshake, 10,000 messages, identity.

UDP is unreliable by design (capabilities say so), and loopback drops datagrams when a receiver's
socket buffer overflows. So the sender is paced: it keeps at most WINDOW bytes sent and not yet
delivered (it watches the receiver's events, both in this process), and when nothing arrives for
STALL seconds it counts what is missing as lost and goes on. The assertions are on content: every
message that arrived is exactly one that was sent (same id, same bytes, once), and nearly all did.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import random
import socket
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.proto import stun
from node.proto.identity import Identity
from node.proto.session.table_types import TableConfig
from node.proto.vocabulary import (
    DisconnectReason,
    Frame,
    IpEndpoint,
    MessageReceived,
    PeerConnected,
    PeerDisconnected,
    Priority,
    TransportReason,
)
from node.security.trust import SessionVerifier, TrustMode, TrustPolicy
from node.transports.base import TransportPeerError
from node.transports.udp.transport import UdpSettings, UdpTransport
from tests.support.nodeproc import RunningNode, cli

MESSAGES = 10_000
WINDOW = 2 << 20
STALL = 3.0


def _identity() -> Identity:
    return Identity.from_private_key(Ed25519PrivateKey.generate())


def _dev() -> SessionVerifier:
    return SessionVerifier(TrustPolicy(TrustMode.DEVELOPMENT))


def _size(rng: random.Random, i: int) -> int:
    if i % 2000 == 1999:
        return 1 << 20  # five of 1 MiB: about 900 datagrams each
    if i % 10 == 0:
        return rng.randint(1201, 64 << 10)  # a tenth of them up to 64 KiB: many fragments
    return rng.randint(0, 1200)  # the rest of one to two datagrams


def _payload(i: int, size: int) -> bytes:
    seed = hashlib.sha256(i.to_bytes(8, "big")).digest()
    return (seed * (size // 32 + 1))[:size]


async def test_ten_thousand_mixed_messages_arrive_uncorrupted() -> None:
    alice, bob = _identity(), _identity()
    rng = random.Random(13)
    sizes = [_size(rng, i) for i in range(MESSAGES)]
    async with UdpTransport(alice, _dev()) as a, UdpTransport(bob, _dev()) as b:
        assert b.local is not None
        events = b.events()
        await a.connect(bob.peer_id, b.local)
        connected = await anext(events)
        assert isinstance(connected, PeerConnected) and connected.peer == alice.peer_id
        assert a.capabilities.reliable is False and a.capabilities.ordered is False

        received: dict[int, bytes] = {}
        delivered_bytes = 0
        progress = asyncio.Event()

        async def receive() -> None:
            nonlocal delivered_bytes
            async for event in events:
                assert isinstance(event, MessageReceived), event
                assert event.peer == alice.peer_id
                assert event.frame.message_id not in received, "delivered twice"
                received[event.frame.message_id] = event.frame.payload
                delivered_bytes += len(event.frame.payload)
                progress.set()

        async def wait_below(limit: int, sent_bytes: int) -> None:
            while sent_bytes - delivered_bytes > limit:
                progress.clear()
                try:
                    async with asyncio.timeout(STALL):
                        await progress.wait()
                except TimeoutError:
                    return  # what is outstanding was lost: go on

        async with asyncio.TaskGroup() as tasks:
            receiver = tasks.create_task(receive())
            sent_bytes = 0
            for i, size in enumerate(sizes):
                await a.send(bob.peer_id, Frame(i, _payload(i, size), Priority(i % 4)))
                sent_bytes += size
                await wait_below(WINDOW, sent_bytes)
            await wait_below(0, sent_bytes)
            receiver.cancel()

        for message_id, payload in received.items():
            assert payload == _payload(message_id, sizes[message_id]), f"message {message_id} corrupted"
        assert len(received) >= MESSAGES * 0.98, f"only {len(received)} of {MESSAGES} arrived"
        assert sum(1 for i in received if sizes[i] == 1 << 20) >= 1
        health = a.health()
        assert health.messages_sent == MESSAGES and health.rtt_ms is not None
        assert b.metrics().malformed == 0


async def test_a_wrong_expected_peer_id_is_refused_with_the_typed_reason() -> None:
    alice, bob, carol = _identity(), _identity(), _identity()
    async with UdpTransport(alice, _dev()) as a, UdpTransport(bob, _dev()) as b:
        assert b.local is not None
        with pytest.raises(TransportPeerError) as info:
            await a.connect(carol.peer_id, b.local)  # bob answers: he proves bob, not carol
        assert info.value.reason is TransportReason.PEER_MISMATCH
        assert a.peers() == ()
        await a.connect(bob.peer_id, b.local)  # the right id still goes through
        assert a.peers() == (bob.peer_id,)


async def test_closing_says_shutdown_for_every_peer_and_sends_what_it_held() -> None:
    """The Transport contract (node.transports.base): on close each peer gets SHUTDOWN, and a
    message sent just before the close still goes out."""
    alice, bob = _identity(), _identity()
    async with UdpTransport(bob, _dev()) as b:
        assert b.local is not None
        events_b = b.events()
        async with UdpTransport(alice, _dev()) as a:
            await a.connect(bob.peer_id, b.local)
            await a.send(bob.peer_id, Frame(7, b"last words"))
            events_a = a.events()
        assert [e async for e in events_a][-1] == PeerDisconnected(bob.peer_id, DisconnectReason.SHUTDOWN)
        async with asyncio.timeout(5):
            while not isinstance(event := await anext(events_b), MessageReceived):
                pass
        assert event.frame.payload == b"last words"


async def test_probes_measure_rtt_and_loss_and_consent_loss_is_a_timeout() -> None:
    alice, bob = _identity(), _identity()
    quick = UdpSettings(
        health_check_interval=0.05,
        probe_timeout=0.2,
        table=TableConfig(keepalive_after=0.2, consent_timeout=0.6),
    )
    async with UdpTransport(alice, _dev(), quick) as a:
        events = a.events()
        async with UdpTransport(bob, _dev(), quick) as b:
            assert b.local is not None
            await a.connect(bob.peer_id, b.local)
            assert await a.ping(bob.peer_id) >= 0.0
            assert isinstance(await anext(events), PeerConnected)
        # bob is gone without a word: probes go unanswered, then consent expires.
        async with asyncio.timeout(10):
            gone = await anext(events)
        assert isinstance(gone, PeerDisconnected) and gone.peer == bob.peer_id
        assert gone.reason.value == "timeout"
        health = a.health()
        assert health.rtt_ms is not None and health.loss is not None and health.loss > 0.0


def _binding(port: int) -> stun.Message:
    request = stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, stun.new_transaction_id())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        client.sendto(stun.encode(request), ("127.0.0.1", port))
        return stun.decode(client.recv(2048))


def _status(node: RunningNode) -> dict[str, Any]:
    done = cli("status", "--json", "--runtime-dir", str(node.runtime_dir))
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert isinstance(reply, dict)
    return reply


@pytest.mark.process
async def test_the_node_process_answers_stun_and_sessions_on_one_port(running_node: RunningNode) -> None:
    node = running_node
    response = await asyncio.to_thread(_binding, node.udp_port)
    assert response.message_class is stun.MessageClass.SUCCESS
    async with UdpTransport(_identity(), _dev()) as t:
        await t.connect(node.peer_id, IpEndpoint(ipaddress.ip_address("127.0.0.1"), node.udp_port))
        assert await t.ping(node.peer_id) >= 0.0
        status = await asyncio.to_thread(_status, node)
    udp = status["udp"]
    assert udp == {
        "trust": "development (INSECURE: any peer is accepted)",
        "sessions": 1,
        "handshakes": 1,
        "cookies_sent": 0,
        "malformed": 0,
        "reassembly_drops": 0,
        "punch_unknown": 0,
        "faults": {},
    }
    assert status["stun"]["answered"] == 1
