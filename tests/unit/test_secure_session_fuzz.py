"""Bytes from the network never raise out of the session, in any state: they are counted drops."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.proto.session.messages import INIT_SIZE, MessageType
from node.proto.session.secure_session import DatagramReceived, SecureSession, SessionState
from tests.support.session_verifiers import DevVerifier
from tests.unit.session_harness import Pair, established_pair, make_identity, make_pair, seeded


def _captured() -> list[bytes]:
    pair = established_pair()
    pair.alice.send(b"payload", pair.now)
    pair.flush()
    return [d for _, d in pair.wire]


CAPTURED = _captured()


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    """Real datagrams mutated, truncated or extended, and plain noise with a valid type word."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.binary(max_size=300))
    if choice == 1:
        kind = draw(st.sampled_from(list(MessageType)))
        return kind.to_bytes(4, "little") + draw(st.binary(max_size=INIT_SIZE + 10))
    data = bytearray(draw(st.sampled_from(CAPTURED)))
    if choice == 2 and data:
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        return bytes(data)
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=8))


def _sessions() -> list[tuple[str, SecureSession]]:
    idle = SecureSession(make_identity(5), DevVerifier(), random_bytes=seeded(5))
    dialling = SecureSession(make_identity(6), DevVerifier(), random_bytes=seeded(6))
    dialling.connect(0.0)
    pending = make_pair()
    pending.alice.connect(0.0)
    for datagram in pending.alice.datagrams_to_send(0.0):
        pending.bob.receive_datagram(datagram, 0.0)
    pair: Pair = established_pair()
    return [
        ("idle", idle),
        ("dialling", dialling),
        ("responding", pending.bob),
        ("established-initiator", pair.alice),
        ("established-responder", pair.bob),
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile(), min_size=1, max_size=20))
def test_hostile_bytes_never_raise_and_never_deliver(datagrams: list[bytes]) -> None:
    for _, session in _sessions():
        before = session.state
        for data in datagrams:
            session.receive_datagram(data, 1.0)
        while (event := session.next_event()) is not None:
            # A forgery never opens; only a replay of the one real payload could, and it was
            # never delivered to these fresh sessions' keys (a different seed per session).
            assert not isinstance(event, DatagramReceived) or event.payload == b"payload"
        session.datagrams_to_send(1.0)
        if before is SessionState.ESTABLISHED:
            assert session.state is SessionState.ESTABLISHED
