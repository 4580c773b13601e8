"""Predictive failover: a path whose loss trend reaches critical within 5 s is left before it does."""

from __future__ import annotations

import pytest

from node.proto.breaker import BreakerState
from node.proto.coordinator import ActivePathChanged, ChangeReason, Coordinator, Health
from node.proto.natprobe.types import NatType
from node.proto.vocabulary import Priority

from .harness import PEER, TLS, UDP, bernoulli, simulate, steady

RAMP_START = 2.0
RAMP_S = 10.0  # loss 0 -> 30 % over 10 s
CRITICAL_AT = RAMP_START + RAMP_S * 0.20 / 0.30  # when the true loss passes 20 %


def ramp(t: float) -> float:
    return 0.0 if t < RAMP_START else min(0.30, 0.30 * (t - RAMP_START) / RAMP_S)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_loss_ramping_to_thirty_percent_moves_traffic_before_the_breaker_opens(seed: int) -> None:
    c = Coordinator(nat=NatType.OPEN)
    c.add_path(PEER, UDP, 0.0)
    c.add_path(PEER, TLS, 0.0)
    lost = bernoulli(ramp, seed)
    moved_at: float | None = None
    breaker_opened_at: float | None = None
    health_when_moved: Health | None = None
    t = 0.0
    while t < RAMP_START + RAMP_S:
        for at, event in simulate(c, t, t + 0.1, {UDP: (lambda _t: 0.02, lost), TLS: steady(0.03)}, rate=50):
            if isinstance(event, ActivePathChanged) and event.old == UDP and moved_at is None:
                assert event.new == TLS and event.reason is ChangeReason.PREDICTED
                moved_at = at
                health_when_moved = next(p.health for p in c.snapshot(at)[0].paths if p.kind == "udp")
        t += 0.1
        udp = next(p for p in c.snapshot(t)[0].paths if p.kind == "udp")
        if udp.breaker is not BreakerState.CLOSED and breaker_opened_at is None:
            breaker_opened_at = t
    assert moved_at is not None
    assert moved_at < CRITICAL_AT
    assert breaker_opened_at is None or moved_at < breaker_opened_at
    # Demoted by the projection, measured loss still below critical when traffic left.
    assert health_when_moved is Health.CRITICAL
    assert c.choose(PEER, Priority.NORMAL, t).primary == TLS


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_steady_random_loss_is_not_mistaken_for_a_trend(seed: int) -> None:
    c = Coordinator(nat=NatType.OPEN)
    c.add_path(PEER, UDP, 0.0)
    c.add_path(PEER, TLS, 0.0)
    events = simulate(
        c, 0.0, 60.0, {UDP: (lambda _t: 0.02, bernoulli(lambda _t: 0.04, seed)), TLS: steady(0.03)}
    )
    reasons = [e.reason for _, e in events if isinstance(e, ActivePathChanged)]
    assert ChangeReason.PREDICTED not in reasons


@pytest.mark.parametrize("seed", range(20))
def test_the_ramp_never_reaches_the_breaker_or_critical_on_the_active_path(seed: int) -> None:
    # Whichever rule moves it (the projection, or the 10 % rule once loss passes 5 %), traffic
    # leaves before the true loss reaches 20 % and before five losses in a row open the breaker.
    c = Coordinator(nat=NatType.OPEN)
    c.add_path(PEER, UDP, 0.0)
    c.add_path(PEER, TLS, 0.0)
    lost = bernoulli(ramp, seed)
    t = 0.0
    while c.choose(PEER, Priority.NORMAL, t).primary == UDP:
        assert t < CRITICAL_AT
        simulate(c, t, t + 0.1, {UDP: (lambda _t: 0.02, lost), TLS: steady(0.03)}, rate=50)
        t += 0.1
        udp = next(p for p in c.snapshot(t)[0].paths if p.kind == "udp")
        assert udp.breaker is BreakerState.CLOSED
