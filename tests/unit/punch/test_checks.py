"""The check state machine on its own, fed datagrams by hand: pacing and the simultaneous start,
nomination, bad input (counted, never raised, never nominated), misuse (typed errors)."""

from __future__ import annotations

import ipaddress
import itertools
import random

import pytest

from node.proto.natprobe.types import Endpoint
from node.proto.punch import wire
from node.proto.punch.agent import PunchAgent, PunchSetup, PunchTiming
from node.proto.punch.candidates import Candidate, CandidateKind
from node.proto.punch.errors import PunchDrop, PunchFailure, PunchMisuse, PunchUsageError
from node.proto.punch.events import Nominated, Outgoing, PunchFailed
from node.proto.punch.plan import Plan, Role, Technique

IP = ipaddress.IPv4Address
TOKEN = b"t" * 16
PEER_X: Endpoint = (IP("203.0.113.22"), 40000)
PEER_Y: Endpoint = (IP("203.0.113.22"), 40001)
STRANGER: Endpoint = (IP("203.0.113.12"), 9999)
PUNCH = Plan(Technique.PUNCH, Role.PEER)


def agent(
    side: wire.Side, remote: tuple[Endpoint, ...] = (PEER_X,), fire_at: float = 1.0, **timing: float
) -> PunchAgent:
    candidates = tuple(Candidate.of(CandidateKind.SRFLX, r) for r in remote)
    setup = PunchSetup(side, TOKEN, b"me", PUNCH, candidates, 1, fire_at)
    return PunchAgent(setup, random.Random(7), PunchTiming(**timing))  # type: ignore[arg-type]


def drain(a: PunchAgent, until: float, now: float = 0.0) -> list[tuple[float, Outgoing]]:
    """Run ``a``'s timers with nothing answering; every datagram with its send time."""
    sent = [(now, o) for o in a.datagrams_to_send(now)]
    while (timer := a.get_timer()) is not None and timer <= until:
        now = max(now, timer)
        a.handle_timer(now)
        sent += [(now, o) for o in a.datagrams_to_send(now)]
    return sent


def check(kind: wire.Kind, side: wire.Side, transaction: int = 1, token: bytes = TOKEN) -> bytes:
    return wire.encode(wire.Check(kind, side, token, transaction, b"peer"))


def test_checks_start_at_the_fire_time_paced_by_ta_and_fail_after_the_attempts() -> None:
    a = agent(wire.Side.A, remote=(PEER_X, PEER_Y))
    sent = drain(a, until=100.0)
    times = [t for t, _ in sent]
    assert times[0] == 1.0  # nothing before the agreed fire time: both sides start together
    assert all(b - a_ >= 0.05 - 1e-9 for a_, b in itertools.pairwise(times))  # RFC 8445 §14.2
    # Each pair: 3 rounds in each of 3 attempts.
    assert sorted(o.destination for _, o in sent) == [PEER_X] * 9 + [PEER_Y] * 9
    got = a.next_event()
    assert isinstance(got, PunchFailed) and got.reason is PunchFailure.NO_ANSWER and got.requests_sent == 18
    assert got.at >= times[-1] + 1.0 and a.finished


def _answer_to(out: Outgoing) -> bytes:
    sent = wire.decode(out.data)
    return check(wire.Kind.ANSWER, wire.Side.B if sent.side is wire.Side.A else wire.Side.A, sent.transaction)


def test_the_controlled_side_follows_the_nomination_even_when_its_own_first_success_differs() -> None:
    b = agent(wire.Side.B, remote=(PEER_X, PEER_Y))
    first = b.datagrams_to_send(1.0)
    assert [o.destination for o in first] == [PEER_X]
    b.receive_datagram(0, _answer_to(first[0]), PEER_X, 1.01)  # B's check on X succeeds
    assert not b.finished  # B does not nominate on its own, nor ask to
    assert all(wire.decode(o.data).kind is not wire.Kind.NOMINATE for o in b.datagrams_to_send(1.01))
    b.receive_datagram(0, check(wire.Kind.NOMINATE, wire.Side.A, 55), PEER_Y, 1.02)
    got = b.next_event()
    assert isinstance(got, Nominated) and got.remote == PEER_Y and got.payload == b"peer"
    out = b.datagrams_to_send(1.02)
    assert [wire.decode(o.data).kind for o in out] == [wire.Kind.ANSWER]
    assert all(wire.decode(o.data).kind is not wire.Kind.NOMINATE for _, o in drain(b, 100.0, 1.02))


def test_the_controlling_side_nominates_its_first_success_until_answered() -> None:
    a = agent(wire.Side.A, remote=(PEER_X, PEER_Y))
    [first] = a.datagrams_to_send(1.0)
    a.receive_datagram(0, _answer_to(first), PEER_X, 1.01)
    [nominate] = a.datagrams_to_send(1.01)
    assert wire.decode(nominate.data).kind is wire.Kind.NOMINATE and nominate.destination == PEER_X
    assert not a.finished
    # Lost: it is sent again Ta later, and its answer nominates.
    again = [o for _, o in drain(a, 1.07, 1.01) if wire.decode(o.data).kind is wire.Kind.NOMINATE]
    assert again and all(o.destination == PEER_X for o in again)
    a.receive_datagram(0, _answer_to(again[-1]), PEER_X, 1.08)
    got = a.next_event()
    assert isinstance(got, Nominated) and got.remote == PEER_X and got.socket == 0


def test_bad_input_is_counted_never_answered_and_never_nominates() -> None:
    a = agent(wire.Side.A, max_prflx=2)
    [first] = a.datagrams_to_send(1.0)
    good = wire.decode(first.data).transaction
    assert a.receive_datagram(0, b"\x00\x01 a STUN or session datagram", STRANGER, 1.0) is False
    assert a.receive_datagram(0, wire.MAGIC + b"\x01", STRANGER, 1.0)  # truncated
    a.receive_datagram(0, check(wire.Kind.ANSWER, wire.Side.B, good, token=b"x" * 16), PEER_X, 1.0)
    a.receive_datagram(0, check(wire.Kind.REQUEST, wire.Side.B, 3, token=b"x" * 16), STRANGER, 1.0)
    a.receive_datagram(0, check(wire.Kind.ANSWER, wire.Side.B, good + 1), PEER_X, 1.0)  # stale id
    a.receive_datagram(0, check(wire.Kind.ANSWER, wire.Side.B, good), STRANGER, 1.0)  # wrong origin
    a.receive_datagram(0, check(wire.Kind.REQUEST, wire.Side.A, 4), PEER_X, 1.0)  # our own, hairpinned
    assert a.datagrams_to_send(1.0) == []  # none of them was answered
    for port in range(3):  # the right token from three new addresses: two learned, one refused
        a.receive_datagram(0, check(wire.Kind.REQUEST, wire.Side.B, 10 + port), (STRANGER[0], port + 1), 1.0)
    stats = a.stats()
    assert dict(stats.drops) == {
        PunchDrop.MALFORMED: 1,
        PunchDrop.UNKNOWN_TOKEN: 2,
        PunchDrop.UNMATCHED: 1,
        PunchDrop.ASYMMETRIC: 1,
        PunchDrop.REFLECTED: 1,
        PunchDrop.TOO_MANY_PRFLX: 1,
    }
    assert stats.learned == 2 and stats.answers_sent == 3
    assert not a.finished and a.next_event() is None
    # The real answer still nominates afterwards.
    a.receive_datagram(0, check(wire.Kind.ANSWER, wire.Side.B, good), PEER_X, 1.01)
    assert any(wire.decode(o.data).kind is wire.Kind.NOMINATE for o in a.datagrams_to_send(1.01))


def test_an_answer_on_another_socket_is_counted_not_used() -> None:
    setup = PunchSetup(wire.Side.B, TOKEN, b"", PUNCH, (Candidate.of(CandidateKind.SRFLX, PEER_X),), 2, 0.0)
    b = PunchAgent(setup, random.Random(1))
    [first] = b.datagrams_to_send(0.0)
    b.receive_datagram(1, _answer_to(first), PEER_X, 0.01)
    assert dict(b.stats().drops) == {PunchDrop.WRONG_SOCKET: 1}


def test_a_learned_peer_reflexive_candidate_is_checked_when_punching_again() -> None:
    a = agent(wire.Side.A)
    a.receive_datagram(0, check(wire.Kind.REQUEST, wire.Side.B, 9), PEER_Y, 0.5)
    drain(a, 100.0, 0.5)
    assert a.finished
    a.restart(200.0)
    destinations = {o.destination for _, o in drain(a, 300.0, 150.0)}
    assert destinations == {PEER_X, PEER_Y}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"token": b"short"}, PunchMisuse.BAD_TOKEN),
        ({"payload": b"x" * (wire.MAX_PAYLOAD + 1)}, PunchMisuse.PAYLOAD_TOO_LARGE),
        ({"sockets": 0}, PunchMisuse.BAD_SOCKET),
        ({"plan": Plan(Technique.RELAY, Role.PEER)}, PunchMisuse.NO_PATH),
    ],
)
def test_misuse_is_a_typed_local_error(change: dict[str, object], reason: PunchMisuse) -> None:
    fields: dict[str, object] = {
        "side": wire.Side.A,
        "token": TOKEN,
        "payload": b"",
        "plan": PUNCH,
        "remote": (),
        "sockets": 1,
        "fire_at": 0.0,
    }
    fields.update(change)
    with pytest.raises(PunchUsageError) as caught:
        PunchAgent(PunchSetup(**fields), random.Random(1))  # type: ignore[arg-type]
    assert caught.value.reason is reason and str(caught.value).startswith(reason.value + ": ")
    with pytest.raises(PunchUsageError) as bad_timing:
        PunchTiming(ta=0.0)
    assert bad_timing.value.reason is PunchMisuse.BAD_TIMING


def test_a_datagram_on_a_socket_the_agent_does_not_have_is_misuse() -> None:
    with pytest.raises(PunchUsageError) as caught:
        agent(wire.Side.A).receive_datagram(3, check(wire.Kind.REQUEST, wire.Side.B), PEER_X, 1.0)
    assert caught.value.reason is PunchMisuse.BAD_SOCKET
