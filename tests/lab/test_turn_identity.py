"""TURN with identity in the namespace lab: two hosts behind symmetric NATs (only a relay joins
them) reach each other through coturn, each relay transport proving the other's peer id in the
secure session; a raw capture on the lab's public bridge sees neither the payload's marker nor
either peer id (nor either public key) in any byte."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from netlink.lab.builder import Lab
from netlink.lab.nat import NatBehaviour
from node.proto.identity import Identity
from node.proto.turn.credentials import Credentials
from node.proto.turn.uri import TurnTransport
from node.proto.vocabulary import Frame, IpEndpoint, MessagesReceived, RelayEndpoint
from node.security.trust import SessionVerifier, TrustMode, TrustPolicy
from node.transports.turn.relay import TurnRelayTransport
from tests.lab.conftest import LabFactory
from tests.lab.turn_helpers import LAB_TIMING, coturn, server_address

pytestmark = pytest.mark.lab

MARKER = b"BITCRAPS-MARKER-5d1e9a-through-coturn"
ETH_P_ALL = 0x0003  # linux/if_ether.h: every protocol


class BridgeCapture:
    """Every frame on every interface of the bridge namespace (the bridge's ports included), read
    by a raw packet socket (packet(7)) on a thread of its own until ``stop``."""

    def __init__(self, lab: Lab) -> None:
        self.sock: socket.socket = lab.run_in(
            "pub", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        )
        self.sock.settimeout(0.1)
        self.frames: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="bridge-capture", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.frames.append(self.sock.recv(65535))
            except TimeoutError:
                continue
            except OSError:
                return

    def stop(self) -> bytes:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        return b"".join(self.frames)


def _relay(lab: Lab, host: str, identity: Identity) -> TurnRelayTransport:
    config = coturn(lab)
    return TurnRelayTransport(
        [server_address(lab, TurnTransport.UDP)],
        lambda: Credentials(config.username, config.password),
        identity,
        SessionVerifier(TrustPolicy(TrustMode.DEVELOPMENT)),
        timing=LAB_TIMING,
        socket_factory=lambda _family, kind: lab.socket(host, kind),
        connect_timeout=3.0,
    )


@pytest.mark.timeout(120)
async def test_two_symmetric_hosts_prove_ids_through_coturn_and_the_bridge_sees_no_secret(
    lab_factory: LabFactory,
) -> None:
    lab = lab_factory(nats=(("A", NatBehaviour.SYMMETRIC), ("B", NatBehaviour.SYMMETRIC)))
    alice = Identity.from_private_key(Ed25519PrivateKey.generate())
    bob = Identity.from_private_key(Ed25519PrivateKey.generate())
    turn = coturn(lab)
    server = IpEndpoint(turn.primary, turn.port)
    capture = BridgeCapture(lab)
    captured = b""
    try:
        async with _relay(lab, "A1", alice) as a, _relay(lab, "B1", bob) as b:
            assert a.relayed is not None and b.relayed is not None
            a_at, b_at = (
                RelayEndpoint(server, IpEndpoint(*a.relayed)),
                RelayEndpoint(server, IpEndpoint(*b.relayed)),
            )
            async with asyncio.timeout(30):
                await asyncio.gather(a.connect(bob.peer_id, b_at), b.connect(alice.peer_id, a_at))
            assert a.peers() == {bob.peer_id: b.relayed}
            assert b.peers() == {alice.peer_id: a.relayed}
            payloads = [MARKER, MARKER * 100]  # one datagram, and several fragments
            for i, payload in enumerate(payloads):
                await a.send(bob.peer_id, Frame(i, payload))
            got: dict[int, bytes] = {}
            async with asyncio.timeout(10):
                async for event in b.batched_events():
                    if isinstance(event, MessagesReceived):
                        assert event.peer == alice.peer_id
                        got.update((f.message_id, f.payload) for f in event.frames)
                        if len(got) == len(payloads):
                            break
            assert got == dict(enumerate(payloads))
            assert b.health().messages_received == 2
    finally:
        with contextlib.suppress(OSError):
            captured = capture.stop()
    # The capture saw the traffic (the relayed addresses' port bytes are in it) ...
    assert len(capture.frames) > 10
    assert turn.primary.packed in captured
    # ... and none of what the session hides.
    for secret in (MARKER, alice.peer_id.encode(), bob.peer_id.encode(), alice.public_key, bob.public_key):
        assert secret not in captured
