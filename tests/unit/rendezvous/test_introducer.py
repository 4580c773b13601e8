"""The introducer: the A/B flow, sources stamped from the link, every refusal and bound, expiry
and links going down mid-exchange."""

from __future__ import annotations

import pytest

from node.proto.rendezvous import (
    Accept,
    Accepted,
    Decline,
    Introduce,
    Introduced,
    Introducer,
    IntroducerDrop,
    IntroducerLimits,
    Message,
    Outgoing,
    Refusal,
    Refused,
    Register,
    Registered,
    RendezvousUsageError,
    Sync,
    Synced,
)
from tests.unit.rendezvous.harness import CONE, HOST_A, HOST_B, SYMMETRIC, TOKEN, A, B, C, peer, token


def registered(*peers: str, limits: IntroducerLimits | None = None) -> Introducer:
    introducer = Introducer(limits)
    for p in peers:
        introducer.handle(p, Register(HOST_A, CONE), 0.0)
    return introducer


def introduce(
    introducer: Introducer,
    source: str,
    target: str,
    tok: bytes = TOKEN,
    request: int = 1,
    *,
    now: float = 0.0,
) -> Outgoing:
    return introducer.handle(source, Introduce(request, target, tok, HOST_A, CONE), now)


def refusals(introducer: Introducer) -> dict[Refusal, int]:
    return dict(introducer.stats().refusals)


def drops(introducer: Introducer) -> dict[IntroducerDrop, int]:
    return dict(introducer.stats().drops)


def test_full_flow_relays_each_step_to_the_right_peer() -> None:
    introducer = Introducer()
    assert introducer.handle(A, Register(HOST_A, CONE), 0.0) == [(A, Registered(1))]
    assert introducer.handle(B, Register(HOST_B, SYMMETRIC), 0.0) == [(B, Registered(2))]
    assert introduce(introducer, A, B, request=7) == [(B, Introduced(A, TOKEN, HOST_A, CONE))]
    assert introducer.handle(B, Accept(TOKEN, HOST_B, SYMMETRIC), 0.1) == [
        (A, Accepted(7, TOKEN, HOST_B, SYMMETRIC))
    ]
    assert introducer.handle(A, Sync(TOKEN), 0.2) == [(B, Synced(TOKEN))]
    stats = introducer.stats()
    assert (stats.registered_peers, stats.pending, stats.introductions, stats.relayed) == (2, 0, 1, 3)
    assert stats.refusals == ()
    assert stats.drops == ()
    assert introducer.get_timer() is None


def test_register_again_replaces_and_does_not_count_twice() -> None:
    introducer = registered(A)
    assert introducer.handle(A, Register(HOST_B, SYMMETRIC), 1.0) == [(A, Registered(1))]


def test_the_source_is_the_link_never_a_field() -> None:
    # Introduced names the link's peer (C), whatever C would like B to believe.
    introducer = registered(A, B, C)
    assert introduce(introducer, C, B) == [(B, Introduced(C, TOKEN, HOST_A, CONE))]


def test_a_third_peer_cannot_answer_or_sync_an_introduction_not_its_own() -> None:
    introducer = registered(A, B, C)
    introduce(introducer, A, B)
    assert introducer.handle(C, Accept(TOKEN, HOST_B, CONE), 0.0) == []  # C forges B's answer
    assert introducer.handle(C, Decline(TOKEN, Refusal.DECLINED), 0.0) == []
    assert introducer.handle(A, Accept(TOKEN, HOST_B, CONE), 0.0) == []  # A answers its own
    assert introducer.handle(B, Accept(TOKEN, HOST_B, CONE), 0.0) == [(A, Accepted(1, TOKEN, HOST_B, CONE))]
    assert introducer.handle(C, Sync(TOKEN), 0.0) == []  # only A may sync
    assert introducer.handle(B, Sync(TOKEN), 0.0) == []
    assert drops(introducer) == {IntroducerDrop.WRONG_PEER: 5}
    assert introducer.handle(A, Sync(TOKEN), 0.0) == [(B, Synced(TOKEN))]


def test_out_of_order_and_unknown_tokens_are_dropped() -> None:
    introducer = registered(A, B)
    introduce(introducer, A, B)
    assert introducer.handle(A, Sync(TOKEN), 0.0) == []  # before B accepted
    introducer.handle(B, Accept(TOKEN, HOST_B, CONE), 0.0)
    assert introducer.handle(B, Accept(TOKEN, HOST_B, CONE), 0.0) == []  # answered already
    assert introducer.handle(B, Decline(token(9), Refusal.DECLINED), 0.0) == []
    assert introducer.handle(A, Sync(token(9)), 0.0) == []
    assert drops(introducer) == {IntroducerDrop.OUT_OF_ORDER: 2, IntroducerDrop.UNKNOWN_TOKEN: 2}


@pytest.mark.parametrize(
    "message",
    [
        Registered(1),
        Introduced(A, TOKEN, (), CONE),
        Accepted(1, TOKEN, (), CONE),
        Refused(1, Refusal.SELF),
        Synced(TOKEN),
    ],
)
def test_messages_only_the_introducer_sends_are_counted_and_dropped(message: Message) -> None:
    introducer = registered(A, B)
    assert introducer.handle(A, message, 0.0) == []
    assert drops(introducer) == {IntroducerDrop.NOT_FROM_CLIENT: 1}


def test_a_reused_token_is_dropped_and_does_not_take_over() -> None:
    introducer = registered(A, B, C)
    introduce(introducer, A, B)
    assert introduce(introducer, C, B, request=5) == []
    assert drops(introducer) == {IntroducerDrop.DUPLICATE_TOKEN: 1}
    assert introducer.handle(B, Accept(TOKEN, HOST_B, CONE), 0.0) == [(A, Accepted(1, TOKEN, HOST_B, CONE))]


def test_decline_refuses_the_requester_with_the_targets_reason() -> None:
    introducer = registered(A, B)
    introduce(introducer, A, B, request=3)
    assert introducer.handle(B, Decline(TOKEN, Refusal.DECLINED), 0.0) == [(A, Refused(3, Refusal.DECLINED))]
    assert introducer.stats().pending == 0
    assert refusals(introducer) == {Refusal.DECLINED: 1}


def test_refusals_not_registered_self_unknown_peer() -> None:
    introducer = registered(A)
    assert introduce(introducer, C, A, request=2) == [(C, Refused(2, Refusal.NOT_REGISTERED))]
    assert introduce(introducer, A, A, request=3) == [(A, Refused(3, Refusal.SELF))]
    assert introduce(introducer, A, B, request=4) == [(A, Refused(4, Refusal.UNKNOWN_PEER))]
    assert refusals(introducer) == {Refusal.NOT_REGISTERED: 1, Refusal.SELF: 1, Refusal.UNKNOWN_PEER: 1}


def test_registrations_are_bounded() -> None:
    introducer = registered(A, B, limits=IntroducerLimits(max_registrations=2))
    assert introducer.handle(C, Register((), CONE), 0.0) == [(C, Refused(0, Refusal.TOO_MANY_REGISTRATIONS))]
    assert introducer.handle(A, Register((), CONE), 0.0) == [(A, Registered(2))]  # an update still fits
    introducer.link_down(B)
    assert introducer.handle(C, Register((), CONE), 0.0) == [(C, Registered(2))]


def test_pending_per_source_and_in_total_are_bounded() -> None:
    limits = IntroducerLimits(max_pending_per_source=2, max_pending=3)
    introducer = registered(A, B, C, limits=limits)
    assert introduce(introducer, A, B, token(1), 1) != []
    assert introduce(introducer, A, C, token(2), 2) != []
    assert introduce(introducer, A, B, token(3), 3) == [(A, Refused(3, Refusal.TOO_MANY_PENDING))]
    assert introduce(introducer, B, C, token(4), 4) == [(C, Introduced(B, token(4), HOST_A, CONE))]
    assert introduce(introducer, C, A, token(5), 5) == [(C, Refused(5, Refusal.TOO_MANY_PENDING))]
    # An answered introduction frees its place.
    introducer.handle(B, Decline(token(1), Refusal.DECLINED), 0.0)
    assert introduce(introducer, A, B, token(6), 6) == [(B, Introduced(A, token(6), HOST_A, CONE))]


def test_introduce_requests_are_rate_limited_per_source() -> None:
    limits = IntroducerLimits(introduce_rate=10.0, introduce_burst=3, max_pending_per_source=100)
    introducer = registered(A, B, C, limits=limits)
    answers = [introduce(introducer, A, A, request=n, now=0.0)[0][1] for n in range(1, 5)]
    assert answers[:3] == [Refused(n, Refusal.SELF) for n in (1, 2, 3)]  # the burst
    assert answers[3] == Refused(4, Refusal.TOO_MANY_REQUESTS)
    # Another source has its own bucket; A's refills at 10/s.
    assert introduce(introducer, C, B, token(1), now=0.0) != [(C, Refused(1, Refusal.TOO_MANY_REQUESTS))]
    assert introduce(introducer, A, B, token(2), request=5, now=0.05)[0][1] == Refused(
        5, Refusal.TOO_MANY_REQUESTS
    )
    assert introduce(introducer, A, B, token(3), request=6, now=0.1)[0][0] == B


def test_unanswered_introductions_expire_with_timed_out() -> None:
    introducer = registered(A, B)
    introduce(introducer, A, B, request=9, now=1.0)
    assert introducer.get_timer() == 11.0
    assert introducer.handle_timer(10.9) == []
    assert introducer.handle_timer(11.0) == [(A, Refused(9, Refusal.TIMED_OUT))]
    assert introducer.handle(B, Accept(TOKEN, HOST_B, CONE), 11.5) == []  # too late
    assert introducer.get_timer() is None


def test_accepted_but_never_synced_is_forgotten_silently() -> None:
    introducer = registered(A, B)
    introduce(introducer, A, B, now=0.0)
    introducer.handle(B, Accept(TOKEN, HOST_B, CONE), 4.0)
    assert introducer.get_timer() == 14.0  # the Sync gets a lifetime of its own
    assert introducer.handle_timer(14.0) == []
    assert introducer.stats().pending == 0
    assert refusals(introducer) == {}


def test_target_link_down_mid_exchange_refuses_with_unknown_peer() -> None:
    # Documented choice: UNKNOWN_PEER at once (the target is gone), not TIMED_OUT later.
    introducer = registered(A, B, C)
    introduce(introducer, A, B, token(1), 1)
    introduce(introducer, C, B, token(2), 2)
    introducer.handle(B, Accept(token(2), HOST_B, CONE), 0.0)  # C's is answered already
    assert introducer.link_down(B) == [(A, Refused(1, Refusal.UNKNOWN_PEER))]
    assert introducer.stats().pending == 0
    assert introducer.stats().registered_peers == 2
    assert introduce(introducer, A, B, token(3), 3) == [(A, Refused(3, Refusal.UNKNOWN_PEER))]


def test_requester_link_down_forgets_its_introductions_and_registration() -> None:
    introducer = registered(A, B)
    introduce(introducer, A, B)
    assert introducer.link_down(A) == []
    assert introducer.handle(B, Accept(TOKEN, HOST_B, CONE), 0.0) == []  # B's answer goes nowhere
    assert introducer.stats().registered_peers == 1
    assert introduce(introducer, A, B) == [(A, Refused(1, Refusal.NOT_REGISTERED))]


def test_bad_limits_are_refused() -> None:
    with pytest.raises(RendezvousUsageError):
        IntroducerLimits(max_pending=0)
    with pytest.raises(RendezvousUsageError):
        IntroducerLimits(introduce_rate=0.0)


def test_many_peers_stay_within_the_registration_bound() -> None:
    introducer = Introducer(IntroducerLimits(max_registrations=10))
    for n in range(30):
        introducer.handle(peer("abcdefghijklmnopqrstuvwxyz234567"[n]), Register((), CONE), 0.0)
    assert introducer.stats().registered_peers == 10
    assert refusals(introducer) == {Refusal.TOO_MANY_REGISTRATIONS: 20}
