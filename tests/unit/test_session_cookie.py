"""Cookies under load (issue 13): the responder's CookieChecker and the initiator's cookie round trip.

Bob's node puts a ``CookieChecker`` in front of his session, as the UDP driver will: every INIT
from Alice's address is checked; PROCEED hands it to Bob's session, SEND_COOKIE answers with the
checker's COOKIE_REPLY and nothing else. Bob's key agreements are counted by his session's draws
of 32 random bytes (each responder handshake draws one fresh X25519 ephemeral, then does its DH).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.proto.session.cookie import (
    COOKIE_LIFETIME,
    CookieChecker,
    CookieConfig,
    CookieCount,
    CookieDecision,
    Source,
    source_bytes,
)
from node.proto.session.errors import DropReason, SessionConfigError
from node.proto.session.messages import (
    COOKIE_REPLY_SIZE,
    INIT_SIZE,
    MessageType,
    encode_init,
    receiver_index,
    with_mac2,
)
from node.proto.session.secure_session import (
    DEFAULT_SESSION_CONFIG,
    SecureSession,
    SessionConfig,
    SessionState,
)
from tests.support.session_verifiers import DevVerifier
from tests.unit.session_harness import Pair, make_identity, make_pair, seeded

ALICE: Final = ("127.0.0.1", 40001)
MALLORY: Final = ("127.0.0.1", 40002)
ALWAYS_LOADED = CookieConfig(handshakes_per_second=0.0, burst=0.0)  # every stranger needs a cookie


def kind(datagram: bytes) -> MessageType:
    return MessageType(int.from_bytes(datagram[:4], "little"))


class Draws:
    """A session's randomness, counting the 32-byte draws (one per X25519 ephemeral)."""

    def __init__(self, source: Callable[[int], bytes]) -> None:
        self._source = source
        self.ephemerals = 0

    def __call__(self, size: int) -> bytes:
        self.ephemerals += size == 32
        return self._source(size)


def gated_pair(
    config: CookieConfig, session_config: SessionConfig | None = None
) -> tuple[Pair, CookieChecker, Draws]:
    """Alice dials Bob; Bob's INITs pass his checker first (Alice's datagrams come from ALICE)."""
    pair = make_pair(session_config)
    draws = Draws(seeded(22))
    pair.bob = SecureSession(
        pair.bob_id,
        DevVerifier(),
        config=session_config or DEFAULT_SESSION_CONFIG,
        random_bytes=draws,
    )
    checker = CookieChecker(config, random_bytes=seeded(44))

    def gate(sender: str, datagram: bytes) -> list[bytes]:
        if sender != "alice" or kind(datagram) is not MessageType.INIT:
            return [datagram]
        decision = checker.check(datagram, ALICE, pair.now)
        if decision is CookieDecision.SEND_COOKIE:
            reply = checker.make_reply(datagram, ALICE, pair.now)
            pair.wire.append(("bob", reply))
            pair.alice.receive_datagram(reply, pair.now)
        return [datagram] if decision is CookieDecision.PROCEED else []

    pair.tap = gate
    return pair, checker, draws


def stranger_init(seed: int) -> bytes:
    rng = random.Random(seed)
    return encode_init(rng.getrandbits(32), rng.randbytes(32))


def test_below_the_rate_an_init_is_answered_as_without_a_checker() -> None:
    pair, checker, draws = gated_pair(CookieConfig())
    pair.alice.connect(0.0)
    pair.flush()
    assert pair.alice.state is pair.bob.state is SessionState.ESTABLISHED
    assert [kind(d) for _, d in pair.wire] == [
        MessageType.INIT,
        MessageType.RESPONSE,
        MessageType.CONFIRM,
        MessageType.TRANSPORT,
    ]
    assert checker.counts == {CookieCount.ADMITTED: 1}
    assert draws.ephemerals == 1


def test_under_load_the_initiator_completes_through_a_cookie_round_trip() -> None:
    pair, checker, draws = gated_pair(ALWAYS_LOADED)
    pair.alice.connect(0.0)
    pair.flush()
    assert pair.alice.state is pair.bob.state is SessionState.ESTABLISHED
    assert [(s, kind(d)) for s, d in pair.wire] == [
        ("alice", MessageType.INIT),
        ("bob", MessageType.COOKIE_REPLY),  # from the checker: Bob's session never saw that INIT
        ("alice", MessageType.INIT),  # again at once, with mac2
        ("bob", MessageType.RESPONSE),
        ("alice", MessageType.CONFIRM),
        ("bob", MessageType.TRANSPORT),
    ]
    first, reply, second = (d for _, d in pair.wire[:3])
    assert len(reply) == COOKIE_REPLY_SIZE < len(first) == INIT_SIZE
    assert receiver_index(reply) == int.from_bytes(first[4:8], "little")
    assert first[:-16] == second[:-16] and second[-16:] != bytes(16)
    assert checker.counts == {CookieCount.COOKIES_SENT: 1, CookieCount.COOKIE_VALIDATED: 1}
    assert draws.ephemerals == 1  # one key agreement, for the INIT that carried the cookie
    assert not pair.alice.drops and not pair.bob.drops
    pair.alice.send(b"through", pair.now)
    pair.flush()
    assert pair.received("bob") == [b"through"]


def test_under_load_strangers_get_cookies_and_the_responder_does_no_key_agreement() -> None:
    pair, checker, draws = gated_pair(ALWAYS_LOADED)
    for seed in range(50):  # a flood from many ports, Alice's session not involved
        init = stranger_init(seed)
        source = ("127.0.0.1", 50000 + seed)
        assert checker.check(init, source, 0.0) is CookieDecision.SEND_COOKIE
        assert len(checker.make_reply(init, source, 0.0)) == COOKIE_REPLY_SIZE < len(init)
    pair.alice.connect(0.0)  # and a legitimate peer still gets through, with one key agreement
    pair.flush()
    assert pair.bob.state is SessionState.ESTABLISHED
    assert draws.ephemerals == 1
    assert checker.counts == {CookieCount.COOKIES_SENT: 51, CookieCount.COOKIE_VALIDATED: 1}


def test_a_rekey_within_the_cookies_life_needs_no_new_cookie() -> None:
    config = SessionConfig(rekey_after_time=20.0, reject_after_time=40.0, responder_rekey_delay=5.0)
    pair, checker, draws = gated_pair(ALWAYS_LOADED, config)
    pair.alice.connect(0.0)
    pair.flush()
    pair.advance(21.0)
    assert pair.alice.generation == pair.bob.generation == 1
    assert checker.counts == {CookieCount.COOKIES_SENT: 1, CookieCount.COOKIE_VALIDATED: 2}
    assert draws.ephemerals == 2


def test_the_rate_decides_when_load_starts_and_ends() -> None:
    checker = CookieChecker(CookieConfig(handshakes_per_second=10.0, burst=10.0), random_bytes=seeded(1))
    decisions = [checker.check(stranger_init(i), ("127.0.0.1", 1000 + i), 0.0) for i in range(30)]
    assert decisions == [CookieDecision.PROCEED] * 10 + [CookieDecision.SEND_COOKIE] * 20
    assert checker.under_load(0.5)
    # The flood goes on at 20/s for 3 s: no stranger gets a key agreement while it lasts.
    for step in range(60):
        now = 0.05 * (step + 1)
        assert checker.check(stranger_init(100 + step), MALLORY, now) is CookieDecision.SEND_COOKIE
    # Quiet for the hold: the bucket refilled, load is over, strangers proceed again.
    assert not checker.under_load(3.0 + 1.0)
    assert checker.check(stranger_init(999), MALLORY, 4.0) is CookieDecision.PROCEED
    assert checker.counts == {CookieCount.ADMITTED: 11}


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(0.0, 50.0),
    burst=st.floats(0.0, 20.0),
    gaps=st.lists(st.floats(0.0, 0.5), min_size=1, max_size=200),
)
def test_strangers_never_get_more_key_agreements_than_the_bucket_allows(
    rate: float, burst: float, gaps: list[float]
) -> None:
    checker = CookieChecker(CookieConfig(handshakes_per_second=rate, burst=burst), random_bytes=seeded(2))
    now = 0.0
    for i, gap in enumerate(gaps):
        now += gap
        checker.check(stranger_init(i), MALLORY, now)
    assert checker.counts[CookieCount.ADMITTED] <= math.floor(burst + rate * now) + 1e-9


def test_a_valid_cookie_proceeds_under_load_and_only_from_its_own_address() -> None:
    checker = CookieChecker(ALWAYS_LOADED, random_bytes=seeded(3))
    alice = SecureSession(make_identity(1), DevVerifier(), random_bytes=seeded(11))
    alice.connect(0.0)
    (init,) = alice.datagrams_to_send(0.0)
    assert checker.check(init, ALICE, 0.0) is CookieDecision.SEND_COOKIE
    alice.receive_datagram(checker.make_reply(init, ALICE, 0.0), 0.0)
    (with_cookie,) = alice.datagrams_to_send(0.0)
    assert checker.check(with_cookie, ALICE, 1.0) is CookieDecision.PROCEED
    assert checker.check(with_cookie, MALLORY, 1.0) is CookieDecision.SEND_COOKIE  # another port
    assert checker.check(with_cookie, ("127.0.0.2", ALICE[1]), 1.0) is CookieDecision.SEND_COOKIE
    assert (
        checker.check(with_cookie, ALICE, COOKIE_LIFETIME + 1.0) is CookieDecision.SEND_COOKIE
    )  # new secret
    assert checker.counts == {
        CookieCount.COOKIES_SENT: 1,
        CookieCount.COOKIE_VALIDATED: 1,
        CookieCount.COOKIE_REFUSED: 3,
    }


def test_a_forged_mac2_is_refused() -> None:
    checker = CookieChecker(ALWAYS_LOADED, random_bytes=seeded(4))
    forged = with_mac2(stranger_init(1), bytes(16))  # a cookie of zeros, not the checker's
    assert checker.check(forged, ALICE, 0.0) is CookieDecision.SEND_COOKIE
    assert checker.counts == {CookieCount.COOKIE_REFUSED: 1}


@pytest.mark.parametrize(
    "data",
    [b"", b"\x01\x00\x00\x00", stranger_init(1)[:-1], stranger_init(1) + b"\x00", bytes(INIT_SIZE)],
)
def test_what_is_not_an_init_is_dropped_without_a_reply(data: bytes) -> None:
    checker = CookieChecker(ALWAYS_LOADED, random_bytes=seeded(5))
    assert checker.check(data, ALICE, 0.0) is CookieDecision.DROP
    damaged = bytearray(stranger_init(2))
    damaged[20] ^= 1  # mac1 no longer verifies
    assert checker.check(bytes(damaged), ALICE, 0.0) is CookieDecision.DROP
    assert checker.counts == {CookieCount.DROPPED: 2}


@settings(max_examples=100, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=INIT_SIZE + 8),
        st.builds(encode_init, st.integers(0, 2**32 - 1), st.binary(min_size=32, max_size=32)),
    ),
    port=st.integers(0, 65535),
    v6=st.booleans(),
)
def test_any_bytes_get_a_decision_and_every_reply_is_smaller_than_its_init(
    data: bytes, port: int, v6: bool
) -> None:
    checker = CookieChecker(ALWAYS_LOADED, random_bytes=seeded(6))
    source: Source = ("::1", port, 0, 0) if v6 else ("127.0.0.1", port)
    decision = checker.check(data, source, 0.0)
    if decision is CookieDecision.SEND_COOKIE:
        assert len(checker.make_reply(data, source, 0.0)) == COOKIE_REPLY_SIZE <= len(data)
    else:
        assert decision is CookieDecision.DROP


def test_source_addresses_are_packed_with_their_port() -> None:
    assert source_bytes(("127.0.0.1", 47474)) == bytes([127, 0, 0, 1]) + (47474).to_bytes(2, "big")
    assert source_bytes(("::1", 1, 0, 0)) == bytes(15) + b"\x01" + b"\x00\x01"
    assert source_bytes(b"opaque") == b"opaque"


# -- the initiator refuses cookie replies that do not answer its INIT -----------------------------


def dialling() -> tuple[SecureSession, bytes, CookieChecker]:
    alice = SecureSession(make_identity(1), DevVerifier(), random_bytes=seeded(11))
    alice.connect(0.0)
    (init,) = alice.datagrams_to_send(0.0)
    return alice, init, CookieChecker(ALWAYS_LOADED, random_bytes=seeded(7))


def test_a_forged_cookie_reply_is_dropped_and_sends_nothing() -> None:
    alice, init, _ = dialling()
    forged = MessageType.COOKIE_REPLY.to_bytes(4, "little") + init[4:8] + bytes(COOKIE_REPLY_SIZE - 8)
    alice.receive_datagram(forged, 0.0)
    assert alice.drops == {DropReason.BAD_COOKIE_REPLY: 1}
    assert alice.datagrams_to_send(0.0) == []


def test_a_cookie_reply_for_another_init_is_dropped() -> None:
    alice, init, checker = dialling()
    other = encode_init(int.from_bytes(init[4:8], "little"), bytes(range(32)))  # same index, not ours
    alice.receive_datagram(checker.make_reply(other, ALICE, 0.0), 0.0)
    assert alice.drops == {DropReason.BAD_COOKIE_REPLY: 1}
    assert alice.datagrams_to_send(0.0) == []


def test_a_replayed_cookie_reply_is_taken_once_per_init_sent() -> None:
    alice, init, checker = dialling()
    reply = checker.make_reply(init, ALICE, 0.0)
    alice.receive_datagram(reply, 0.0)
    assert len(alice.datagrams_to_send(0.0)) == 1  # the INIT again, with mac2
    for _ in range(5):
        alice.receive_datagram(reply, 0.1)
    assert alice.datagrams_to_send(0.1) == []  # a replay cannot make Alice send
    assert alice.drops == {DropReason.BAD_COOKIE_REPLY: 5}
    alice.handle_timer(0.5)  # the scheduled retransmission goes out: one more reply is welcome
    (retransmitted,) = alice.datagrams_to_send(0.5)
    assert checker.check(retransmitted, ALICE, 0.5) is CookieDecision.PROCEED


def test_a_cookie_reply_with_no_init_pending_is_unexpected() -> None:
    alice, init, checker = dialling()
    stray = checker.make_reply(stranger_init(3), ALICE, 0.0)  # another receiver index
    alice.receive_datagram(stray, 0.0)
    idle = SecureSession(make_identity(5), DevVerifier(), random_bytes=seeded(5))
    idle.receive_datagram(checker.make_reply(init, ALICE, 0.0), 0.0)
    assert alice.drops == idle.drops == {DropReason.UNEXPECTED: 1}
    alice.receive_datagram(checker.make_reply(init, ALICE, 0.0)[:-1], 0.0)
    assert alice.drops == {DropReason.UNEXPECTED: 1, DropReason.BAD_LENGTH: 1}


@pytest.mark.parametrize(
    "bad",
    [
        {"handshakes_per_second": -1.0},
        {"burst": math.inf},
        {"under_load_hold": 0.0},
        {"secret_lifetime": math.nan},
    ],
)
def test_cookie_config_is_validated(bad: dict[str, float]) -> None:
    with pytest.raises(SessionConfigError):
        CookieConfig(**bad)
    with pytest.raises(SessionConfigError):
        SessionConfig(max_pending_responses=0)
