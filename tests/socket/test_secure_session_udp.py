"""The secure session over a real UDP socket pair on loopback: what crosses the wire is sealed.

A thin asyncio driver (one DatagramProtocol per core, one re-armed timer, the shape the UDP, TURN
and BLE transports will use) runs a handshake, application traffic both ways and a rekey, and
records every datagram as it arrives. Neither the payloads, nor the credentials, nor either
peer's id or public key may appear in those bytes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.proto.identity import Identity
from node.proto.session.messages import TRANSPORT_OVERHEAD, MessageType
from node.proto.session.secure_session import (
    DatagramReceived,
    SecureSession,
    SessionConfig,
    SessionEstablished,
    SessionEvent,
)
from tests.support.session_verifiers import PinnedVerifier

Address = tuple[str, int]


class SessionDriver(asyncio.DatagramProtocol):
    """Feed the core, drain its events and datagrams, keep one timer armed. Nothing else."""

    def __init__(self, session: SecureSession) -> None:
        self.session = session
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.DatagramTransport | None = None
        self.remote: Address | None = None
        self.events: asyncio.Queue[SessionEvent] = asyncio.Queue()
        self.wire: list[bytes] = []  # every datagram that arrived here, as it crossed
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's UDPTransport is no subclass

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.wire.append(data)
        self.remote = self.remote or addr
        self.session.receive_datagram(data, self.loop.time())
        self.pump()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def pump(self) -> None:
        now = self.loop.time()
        assert self.transport is not None
        for datagram in self.session.datagrams_to_send(now):
            if self.remote is not None:
                self.transport.sendto(datagram, self.remote)
        while (event := self.session.next_event()) is not None:
            self.events.put_nowait(event)
        if self._timer is not None:
            self._timer.cancel()
        deadline = self.session.get_timer()
        self._timer = None if deadline is None else self.loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self.session.handle_timer(self.loop.time())
        self.pump()

    async def next_of(self, kind: type) -> SessionEvent:
        async with asyncio.timeout(10):
            while True:
                event = await self.events.get()
                if isinstance(event, kind):
                    return event


def _identity() -> Identity:
    return Identity.from_private_key(Ed25519PrivateKey.generate())


async def test_nothing_readable_crosses_the_wire() -> None:
    loop = asyncio.get_running_loop()
    alice, bob = _identity(), _identity()
    config = SessionConfig(rekey_after_messages=40, reject_after_messages=100)
    alice_cred, bob_cred = (
        b"fleet certificate of alice " + os.urandom(8),
        b"fleet certificate of bob " + os.urandom(8),
    )
    alice_session = SecureSession(
        alice,
        PinnedVerifier([bob.peer_id]),
        credential=alice_cred,
        expected_peer_id=bob.peer_id,
        config=config,
    )
    bob_session = SecureSession(bob, PinnedVerifier([alice.peer_id]), credential=bob_cred, config=config)
    a_transport, a = await loop.create_datagram_endpoint(
        lambda: SessionDriver(alice_session), local_addr=("127.0.0.1", 0)
    )
    b_transport, b = await loop.create_datagram_endpoint(
        lambda: SessionDriver(bob_session), local_addr=("127.0.0.1", 0)
    )
    try:
        a.remote = b_transport.get_extra_info("sockname")
        alice_session.connect(loop.time())
        a.pump()
        established = await a.next_of(SessionEstablished)
        assert isinstance(established, SessionEstablished) and established.peer_id == bob.peer_id

        secret = b"BITCRAPS-PLAINTEXT-MARKER:" + os.urandom(16).hex().encode()
        payloads = [secret + b":%d" % i for i in range(100)]
        for payload in payloads:  # 100 each way: the rekey after 40 datagrams happens twice
            alice_session.send(payload, loop.time())
            a.pump()
            got = await b.next_of(DatagramReceived)
            assert isinstance(got, DatagramReceived) and got.payload == payload
            bob_session.send(payload[::-1], loop.time())
            b.pump()
            back = await a.next_of(DatagramReceived)
            assert isinstance(back, DatagramReceived) and back.payload == payload[::-1]
        assert alice_session.generation >= 2 and bob_session.peer_id == alice.peer_id
    finally:
        a_transport.close()
        b_transport.close()

    captured = a.wire + b.wire
    kinds = [int.from_bytes(d[:4], "little") for d in captured]
    assert kinds.count(MessageType.TRANSPORT) >= 200
    assert kinds.count(MessageType.INIT) >= 3 and kinds.count(MessageType.CONFIRM) >= 3
    blob = b"\n".join(captured)
    secrets = {
        "payload marker": secret[:26],
        "payload random part": secret[26:],
        "reversed payload": secret[::-1][:20],
        "alice's credential": alice_cred,
        "bob's credential": bob_cred,
    }
    for identity, name in ((alice, "alice"), (bob, "bob")):
        digest = hashlib.sha256(identity.public_key).digest()
        secrets[f"{name}'s public key"] = identity.public_key
        secrets[f"{name}'s peer id"] = identity.peer_id.encode()
        secrets[f"{name}'s peer id (upper case)"] = identity.peer_id.upper().encode()
        secrets[f"{name}'s id digest"] = digest
        secrets[f"{name}'s id digest in base64"] = base64.b64encode(digest)[:20]
    leaked = [what for what, value in secrets.items() if value in blob]
    assert leaked == []
    # Sealed transport datagrams are exactly header + payload + tag: nothing else rides along.
    sizes = {len(d) - TRANSPORT_OVERHEAD for d in captured if d[:4] == b"\x04\x00\x00\x00"}
    assert sizes <= {0, len(payloads[0]), len(payloads[-1])}
