"""Switching rules: no flapping under noise, the 2 s hold at 10 % better, at once on failure, and
the direct upgrade of a relayed active path."""

from __future__ import annotations

import random
from collections.abc import Sequence

from node.proto.coordinator import (
    ActivePathChanged,
    ChangeReason,
    Coordinator,
    DownReason,
    PathState,
)
from node.proto.coordinator.health import Health
from node.proto.coordinator.hysteresis import ActiveSelector, Candidate
from node.proto.coordinator.settings import CoordinatorSettings
from node.proto.natprobe.types import NatType
from node.proto.vocabulary import Priority

from .harness import PEER, TLS, TURN, UDP, every_nth, simulate, steady

NORMAL = Priority.NORMAL


def moves(events: Sequence[tuple[float, object]]) -> list[tuple[float, ActivePathChanged]]:
    return [(t, e) for t, e in events if isinstance(e, ActivePathChanged)]


def started(*keys: object, nat: NatType = NatType.OPEN) -> Coordinator:
    c = Coordinator(nat=nat)
    for key in keys:
        c.add_path(PEER, key, 0.0)  # type: ignore[arg-type]
    return c


def test_no_flapping_between_equal_paths_under_noise() -> None:
    c = started(UDP, TLS)
    rng = random.Random(7)

    def jitter(t: float) -> float:
        return 0.02 + rng.uniform(0.0, 0.015)

    events = simulate(c, 0.0, 60.0, {UDP: (jitter, every_nth(40)), TLS: (jitter, every_nth(35))})
    changes = moves(events)
    assert [e.reason for _, e in changes] == [ChangeReason.FIRST]


def test_a_better_path_takes_over_after_the_two_second_hold() -> None:
    c = started(UDP, TLS)
    simulate(c, 0.0, 3.0, {UDP: steady(0.02), TLS: steady(0.02)})
    assert c.choose(PEER, NORMAL, 3.0).primary == UDP
    # From t=3 s UDP's RTT is 150 ms: its score drops by well over 10 %.
    events = moves(simulate(c, 3.0, 9.0, {UDP: steady(0.15), TLS: steady(0.02)}))
    (at, change), *_ = events
    assert (change.old, change.new, change.reason) == (UDP, TLS, ChangeReason.BETTER)
    # It qualified at some tick after 3 s and moved 2 s (one tick's rounding aside) later.
    assert 5.0 <= at <= 7.0
    first_qualified = at - 2.0
    assert c.choose(PEER, NORMAL, at).primary == TLS
    assert first_qualified >= 3.0


def test_the_hold_restarts_when_the_challenger_lapses() -> None:
    settings = CoordinatorSettings()
    sel = ActiveSelector()
    a = Candidate(UDP, 0.80, Health.OPTIMAL, Health.OPTIMAL, True)
    better = Candidate(TLS, 0.90, Health.OPTIMAL, Health.OPTIMAL, True)
    close = Candidate(TLS, 0.85, Health.OPTIMAL, Health.OPTIMAL, True)
    assert sel.update([a], 0.0, settings) is not None  # FIRST
    assert sel.update([better, a], 0.0, settings) is None
    assert sel.update([better, a], 1.9, settings) is None
    assert sel.update([close, a], 2.0, settings) is None  # only 6 % better: the hold is lost
    assert sel.update([better, a], 2.1, settings) is None
    assert sel.update([better, a], 4.0, settings) is None
    switch = sel.update([better, a], 4.1, settings)
    assert switch is not None and switch.new == TLS and switch.reason is ChangeReason.BETTER


def test_failure_moves_traffic_at_once_without_a_tick() -> None:
    c = started(UDP, TLS)
    simulate(c, 0.0, 1.0, {UDP: steady(), TLS: steady(0.03)})
    assert c.choose(PEER, NORMAL, 1.0).primary == UDP
    c.path_failed(PEER, UDP, DownReason.CONSENT_LOST, 1.01)
    assert c.choose(PEER, NORMAL, 1.01).primary == TLS
    changes = [e for e in c.tick(1.02) if isinstance(e, ActivePathChanged)]
    assert [(e.old, e.new, e.reason) for e in changes] == [(UDP, TLS, ChangeReason.FAILED)]
    assert changes[0].priorities == frozenset(Priority)  # one event for every class that moved
    (view,) = c.snapshot(1.02)
    assert {p.endpoint: p.state for p in view.paths}[UDP.remote] is PathState.FAILED
    # Proof of life brings it back as a candidate; the move back needs the hold.
    c.record_rtt(PEER, UDP, 0.02, 1.1)
    assert c.choose(PEER, NORMAL, 1.1).primary == TLS


def test_a_proven_direct_path_replaces_a_relayed_one_after_the_hold() -> None:
    c = started(TURN, UDP, nat=NatType.SYMMETRIC)
    assert c.choose(PEER, NORMAL, 0.0).primary == TURN  # the matrix's pick before measurements
    # Both measured alike: UDP scores only ~2 % higher, yet it takes over after 2 s.
    events = moves(simulate(c, 0.0, 4.0, {TURN: steady(), UDP: steady()}))
    (at, change), *_ = [(t, e) for t, e in events if e.reason is not ChangeReason.FIRST]
    assert (change.old, change.new, change.reason) == (TURN, UDP, ChangeReason.DIRECT_UPGRADE)
    assert at >= 2.0


def test_an_unproven_path_never_takes_over_a_working_one() -> None:
    c = started(TLS, nat=NatType.PORT_RESTRICTED)
    simulate(c, 0.0, 1.0, {TLS: steady(0.05)})
    c.add_path(PEER, UDP, 1.0)  # never answered anything
    events = moves(simulate(c, 1.0, 10.0, {TLS: steady(0.05)}))
    assert events == []
    assert c.choose(PEER, NORMAL, 10.0).primary == TLS


def test_a_direct_path_as_degraded_as_the_relay_still_replaces_it() -> None:
    # Both lose 1 in 10 (DEGRADED): the direct path is no healthier, and no worse, than the relay.
    c = started(TURN, UDP, nat=NatType.SYMMETRIC)
    lossy = (lambda t: 0.02, every_nth(10))
    events = moves(simulate(c, 0.0, 6.0, {TURN: lossy, UDP: lossy}))
    changes = [(t, e) for t, e in events if e.reason is not ChangeReason.FIRST]
    assert changes, events
    (_, change), *_ = changes
    assert (change.old, change.new, change.reason) == (TURN, UDP, ChangeReason.DIRECT_UPGRADE)
