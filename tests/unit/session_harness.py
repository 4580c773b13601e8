"""Two secure-session cores back to back in virtual time, with a wire the test can tamper with."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.proto.identity import Identity
from node.proto.session.secure_session import (
    DatagramReceived,
    SecureSession,
    SessionConfig,
    SessionEvent,
)
from node.proto.session.trust import PeerVerifier
from tests.support.session_verifiers import DevVerifier

# (sender name, datagram) -> the datagrams to deliver instead (none: lost, two: duplicated)
Tap = Callable[[str, bytes], list[bytes]]


def make_identity(seed: int) -> Identity:
    return Identity.from_private_key(Ed25519PrivateKey.from_private_bytes(random.Random(seed).randbytes(32)))


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


@dataclass
class Pair:
    alice: SecureSession
    bob: SecureSession
    alice_id: Identity
    bob_id: Identity
    now: float = 0.0
    wire: list[tuple[str, bytes]] = field(default_factory=list)
    events: dict[str, list[SessionEvent]] = field(default_factory=lambda: {"alice": [], "bob": []})
    tap: Tap | None = None

    def session(self, name: str) -> SecureSession:
        return self.alice if name == "alice" else self.bob

    def drain(self) -> None:
        for name in ("alice", "bob"):
            session = self.session(name)
            while (event := session.next_event()) is not None:
                self.events[name].append(event)

    def flush(self) -> None:
        """Deliver until nobody has anything to send (datagrams the tap returns go through it once)."""
        while True:
            moved = False
            for name, peer in (("alice", self.bob), ("bob", self.alice)):
                for datagram in self.session(name).datagrams_to_send(self.now):
                    moved = True
                    self.wire.append((name, datagram))
                    delivered = [datagram] if self.tap is None else self.tap(name, datagram)
                    for copy in delivered:
                        peer.receive_datagram(copy, self.now)
            self.drain()
            if not moved:
                return

    def advance(self, until: float) -> None:
        """Move virtual time to ``until``, firing every timer that falls due on the way."""
        while True:
            timers = [t for t in (self.alice.get_timer(), self.bob.get_timer()) if t is not None]
            due = min(timers, default=None)
            if due is None or due > until:
                break
            self.now = max(self.now, due)
            self.alice.handle_timer(self.now)
            self.bob.handle_timer(self.now)
            self.flush()
        self.now = until
        self.flush()

    def received(self, name: str) -> list[bytes]:
        return [e.payload for e in self.events[name] if isinstance(e, DatagramReceived)]

    def of_type(self, name: str, kind: type) -> list[SessionEvent]:
        return [e for e in self.events[name] if isinstance(e, kind)]


def make_pair(
    config: SessionConfig | None = None,
    *,
    alice_verifier: PeerVerifier | None = None,
    bob_verifier: PeerVerifier | None = None,
    expected: str | None = None,
    bob_identity: Identity | None = None,
    credentials: tuple[bytes, bytes] = (b"", b""),
) -> Pair:
    alice_id, bob_id = make_identity(1), bob_identity or make_identity(2)
    kwargs = {} if config is None else {"config": config}
    alice = SecureSession(
        alice_id,
        alice_verifier or DevVerifier(),
        credential=credentials[0],
        expected_peer_id=expected if expected is not None else bob_id.peer_id,
        random_bytes=seeded(11),
        **kwargs,  # type: ignore[arg-type]
    )
    bob = SecureSession(
        bob_id,
        bob_verifier or DevVerifier(),
        credential=credentials[1],
        random_bytes=seeded(22),
        **kwargs,  # type: ignore[arg-type]
    )
    return Pair(alice, bob, alice_id, bob_id)


def established_pair(config: SessionConfig | None = None) -> Pair:
    pair = make_pair(config)
    pair.alice.connect(pair.now)
    pair.flush()
    return pair
