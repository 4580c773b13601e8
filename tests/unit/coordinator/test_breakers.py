"""Breakers per transport and per remote: open means failed, half-open is a trial."""

from __future__ import annotations

import pytest

from node.proto.breaker import BreakerState, CircuitBreaker
from node.proto.coordinator import (
    ActivePathChanged,
    ChangeReason,
    Coordinator,
    CoordinatorError,
    CoordinatorReason,
    DownReason,
    Health,
    Outcome,
    TrialDue,
)
from node.proto.natprobe.types import NatType
from node.proto.vocabulary import DisconnectReason, Priority

from .harness import OTHER, PEER, TLS, UDP, feed

NORMAL = Priority.NORMAL


def udp_row(c: Coordinator, now: float, peer: str = PEER) -> tuple[Health, BreakerState]:
    view = next(v for v in c.snapshot(now) if v.peer == peer)
    row = next(p for p in view.paths if p.kind == "udp")
    return row.health, row.breaker


def lose(c: Coordinator, n: int, now: float, peer: str = PEER) -> None:
    for _ in range(n):
        c.record_sent(peer, UDP, now)
        c.record_outcome(peer, UDP, Outcome.LOST, now)


def test_five_losses_in_a_row_open_the_breaker_and_move_traffic_at_once() -> None:
    c = Coordinator(nat=NatType.OPEN)
    c.add_path(PEER, UDP, 0.0)
    c.add_path(PEER, TLS, 0.0)
    feed(c, UDP, 0.0, 1.0)
    feed(c, TLS, 0.0, 1.0, rtt=lambda t: 0.03)
    assert c.choose(PEER, NORMAL, 1.0).primary == UDP
    lose(c, 5, 1.0)
    assert c.choose(PEER, NORMAL, 1.0).primary == TLS
    assert udp_row(c, 1.0) == (Health.FAILED, BreakerState.OPEN)
    events = c.tick(1.0)
    assert [e.reason for e in events if isinstance(e, ActivePathChanged)] == [
        ChangeReason.FIRST,
        ChangeReason.FAILED,
    ]


def test_half_open_asks_for_a_trial_and_a_success_closes_it() -> None:
    c = Coordinator(nat=NatType.OPEN, breaker=lambda: CircuitBreaker(5, recovery_timeout=30.0))
    c.add_path(PEER, UDP, 0.0)
    c.add_path(PEER, TLS, 0.0)
    feed(c, TLS, 0.0, 1.0, rtt=lambda t: 0.03)
    lose(c, 5, 1.0)
    c.tick(1.0)
    assert not any(isinstance(e, TrialDue) for e in c.tick(30.9))
    events = c.tick(31.0)
    assert TrialDue(PEER, UDP) in events
    assert udp_row(c, 31.0) == (Health.CRITICAL, BreakerState.HALF_OPEN)
    assert c.choose(PEER, NORMAL, 31.0).primary == TLS  # on trial: never preferred
    c.record_rtt(PEER, UDP, 0.02, 31.1)
    c.record_outcome(PEER, UDP, Outcome.ACKED, 31.1)
    c.tick(31.1)
    health, breaker = udp_row(c, 31.1)
    assert breaker is BreakerState.CLOSED and health > Health.CRITICAL


def test_a_failed_trial_reopens() -> None:
    c = Coordinator(nat=NatType.OPEN)
    c.add_path(PEER, UDP, 0.0)
    lose(c, 5, 0.0)
    c.tick(30.0)
    lose(c, 1, 30.0)
    assert udp_row(c, 30.0)[1] is BreakerState.OPEN
    c.tick(30.0)
    assert udp_row(c, 30.0)[0] is Health.FAILED


def test_the_transport_breaker_covers_every_peer_on_that_transport() -> None:
    # Per-remote breakers see 4 and 1 losses (below 5); the transport (udp, LAN) sees 5 in a row.
    c = Coordinator(nat=NatType.OPEN)
    for peer in (PEER, OTHER):
        c.add_path(peer, UDP, 0.0)
        c.add_path(peer, TLS, 0.0)
    lose(c, 4, 1.0, PEER)
    lose(c, 1, 1.0, OTHER)
    c.tick(1.0)
    for peer in (PEER, OTHER):
        assert udp_row(c, 1.0, peer) == (Health.FAILED, BreakerState.OPEN)
        assert c.choose(peer, NORMAL, 1.0).primary == TLS


def test_a_removed_and_re_added_path_keeps_its_open_breaker() -> None:
    c = Coordinator(nat=NatType.OPEN)
    c.add_path(PEER, UDP, 0.0)
    c.add_path(PEER, TLS, 0.0)
    lose(c, 5, 0.0)
    c.remove_path(PEER, UDP, DisconnectReason.TIMEOUT, 0.0)
    c.add_path(PEER, UDP, 1.0)
    c.tick(1.0)
    assert udp_row(c, 1.0)[1] is BreakerState.OPEN


def test_with_every_breaker_open_a_connected_path_is_the_last_resort_and_a_down_one_never() -> None:
    c = Coordinator(nat=NatType.OPEN)
    c.add_path(PEER, UDP, 0.0)
    c.add_path(PEER, TLS, 0.0)
    feed(c, UDP, 0.0, 1.0)
    feed(c, TLS, 0.0, 1.0, rtt=lambda t: 0.03)
    lose(c, 5, 1.0)  # UDP's breaker opens: TCP-TLS carries the traffic
    for _ in range(5):
        c.record_sent(PEER, TLS, 1.5)
        c.record_outcome(PEER, TLS, Outcome.LOST, 1.5)
    assert udp_row(c, 1.0) == (Health.FAILED, BreakerState.OPEN)
    # Both breakers open, both transports still connected: not NO_PATH but the path whose
    # trouble is the oldest (UDP's; TCP-TLS is failing now).
    resort = c.choose(PEER, NORMAL, 2.0).primary
    assert resort == UDP
    # A path its transport lost is never a last resort.
    c.path_failed(PEER, resort, DownReason.DISCONNECTED, 1.0)
    other = TLS if resort == UDP else UDP
    assert c.choose(PEER, NORMAL, 1.0).primary == other
    c.path_failed(PEER, other, DownReason.DISCONNECTED, 1.0)
    with pytest.raises(CoordinatorError) as failed:
        c.choose(PEER, NORMAL, 1.0)
    assert failed.value.reason is CoordinatorReason.NO_PATH
