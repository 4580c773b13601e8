"""Load balancing above the threshold, multipath for CONTROL and HIGH, the link monitor's hint,
the in-use limit and the snapshot."""

from __future__ import annotations

from collections import Counter

import pytest

from node.proto.coordinator import (
    ActivePathChanged,
    ChangeReason,
    Coordinator,
    CoordinatorError,
    CoordinatorReason,
    CoordinatorSettings,
    DownReason,
    PathKey,
    PathState,
)
from node.proto.coordinator.balance import SmoothRoundRobin
from node.proto.natprobe.types import NatType
from node.proto.vocabulary import Priority, TransportKind

from .harness import LAN, OTHER, PEER, TLS, TURN, UDP, UDP_WIFI, WIFI, every_nth, feed

NORMAL = Priority.NORMAL


# Distinct RTTs so that the ranking is UDP, UDP_WIFI, TURN, TLS and no test leans on tie-breaks.
RTT = {UDP: 0.020, UDP_WIFI: 0.022, TURN: 0.025, TLS: 0.030}


def measured(*keys: PathKey, nat: NatType = NatType.OPEN, peer: str = PEER) -> Coordinator:
    c = Coordinator(nat=nat)
    for key in keys:
        c.add_path(peer, key, 0.0)
        feed(c, key, 0.0, 1.0, peer=peer, rtt=lambda t, key=key: RTT.get(key, 0.04))  # type: ignore[misc]
    c.tick(1.0)
    return c


def test_smooth_round_robin_is_exact() -> None:
    rr = SmoothRoundRobin([("a", 5.0), ("b", 1.0), ("c", 1.0)])
    assert [rr.pick() for _ in range(7)] == ["a", "a", "b", "a", "c", "a", "a"]


def test_below_the_threshold_everything_takes_the_active_path() -> None:
    c = measured(UDP, UDP_WIFI)
    c.set_load(TransportKind.UDP, LAN, 80, 100)  # 0.8 is not above 0.8
    picks = Counter(c.choose(PEER, NORMAL, 1.0).primary for _ in range(100))
    assert len(picks) == 1


def test_above_the_threshold_traffic_spreads_by_score() -> None:
    c = measured(UDP, UDP_WIFI, TURN)
    assert c.choose(PEER, NORMAL, 1.0).primary == UDP
    c.set_load(TransportKind.UDP, LAN, 90, 100)
    c.set_load(TransportKind.UDP, WIFI, 10, 100)
    c.tick(1.0)
    picks = Counter(c.choose(PEER, NORMAL, 1.0).primary for _ in range(1000))
    (view,) = c.snapshot(1.0)
    scores = {PathKey(TransportKind(p.kind), p.local, p.endpoint): p.score for p in view.paths}
    # The busy LAN path now scores lower; Wi-Fi and TURN score higher: all three share.
    members = [k for k in scores if k in picks]
    assert set(members) == {UDP, UDP_WIFI, TURN}
    total = sum(scores[k] for k in members)
    for key in members:
        assert abs(picks[key] - 1000 * scores[key] / total) <= 1


def test_a_path_outside_the_margin_gets_no_share() -> None:
    c = measured(UDP)
    c.add_path(PEER, TLS, 0.0)
    feed(c, TLS, 0.0, 1.0, rtt=lambda t: 0.15, lost=every_nth(10))  # 10 % loss: degraded
    c.set_load(TransportKind.UDP, LAN, 85, 100)
    c.tick(1.0)
    (view,) = c.snapshot(1.0)
    udp, tls = (next(p.score for p in view.paths if p.kind == kind) for kind in ("udp", "tcp_tls"))
    assert tls < udp / 1.1
    assert {c.choose(PEER, NORMAL, 1.0).primary for _ in range(50)} == {UDP}


@pytest.mark.parametrize("priority", [Priority.CONTROL, Priority.HIGH])
def test_control_and_high_go_on_the_two_best_paths(priority: Priority) -> None:
    c = measured(UDP, TLS, TURN)
    choice = c.choose(PEER, priority, 1.0)
    # TURN answers faster than TCP+TLS (25 ms against 30 ms) but its fit pays for the relay.
    assert (choice.primary, choice.extra) == (UDP, TLS)


@pytest.mark.parametrize("priority", [Priority.NORMAL, Priority.BULK])
def test_normal_and_bulk_take_one_path(priority: Priority) -> None:
    assert measured(UDP, TLS).choose(PEER, priority, 1.0).extra is None


def test_multipath_never_uses_a_failed_path_and_needs_two() -> None:
    c = measured(UDP, TLS)
    c.path_failed(PEER, TLS, DownReason.DISCONNECTED, 1.0)
    assert c.choose(PEER, Priority.CONTROL, 1.0).extra is None


def test_link_down_fails_every_path_on_that_address_at_once() -> None:
    c = measured(UDP, TLS, UDP_WIFI)
    c.add_path(OTHER, UDP, 1.0)
    c.add_path(OTHER, UDP_WIFI, 1.0)
    feed(c, UDP, 0.0, 1.0, peer=OTHER)
    assert c.choose(PEER, NORMAL, 1.0).primary == UDP
    assert c.choose(OTHER, NORMAL, 1.0).primary == UDP
    c.link_down(LAN, 1.5)
    assert c.choose(PEER, NORMAL, 1.5).primary == UDP_WIFI
    assert c.choose(OTHER, NORMAL, 1.5).primary == UDP_WIFI
    views = {v.peer: v for v in c.snapshot(1.5)}
    for view in views.values():
        for row in view.paths:
            assert (row.state is PathState.FAILED) == (row.local == LAN)
    events = c.tick(1.5)
    assert {e.reason for e in events if isinstance(e, ActivePathChanged) and e.old is not None} == {
        ChangeReason.FAILED
    }
    c.link_up(LAN, 2.0)
    assert all(row.state is not PathState.FAILED for row in c.snapshot(2.0)[0].paths)


def test_at_most_three_paths_in_use() -> None:
    extra = PathKey(TransportKind.TCP_TLS, WIFI, "203.0.113.10:7947")
    c = measured(UDP, TLS, UDP_WIFI, extra)
    states = Counter(row.state for row in c.snapshot(1.0)[0].paths)
    assert states == {PathState.ACTIVE: 1, PathState.STANDBY: 2, PathState.IDLE: 1}
    c.path_failed(PEER, UDP, DownReason.CONSENT_LOST, 1.0)
    states = Counter(row.state for row in c.snapshot(1.0)[0].paths)
    assert states == {PathState.ACTIVE: 1, PathState.STANDBY: 2, PathState.FAILED: 1}


def test_snapshot_rows() -> None:
    c = measured(UDP)
    (view,) = c.snapshot(1.0)
    assert view.peer == PEER and view.active == UDP
    (row,) = view.paths
    assert (row.kind, row.endpoint, row.state.value, row.breaker.value) == (
        "udp",
        UDP.remote,
        "active",
        "closed",
    )
    assert row.rtt_ms == pytest.approx(20.0)
    assert row.loss == 0.0
    assert 0.9 < row.score <= 1.0


def test_misuse_is_typed() -> None:
    c = measured(UDP)
    with pytest.raises(CoordinatorError) as unknown_peer:
        c.choose(OTHER, NORMAL, 1.0)
    assert unknown_peer.value.reason is CoordinatorReason.UNKNOWN_PEER
    with pytest.raises(CoordinatorError) as unknown_path:
        c.record_rtt(PEER, TLS, 0.01, 1.0)
    assert unknown_path.value.reason is CoordinatorReason.UNKNOWN_PATH
    c.path_failed(PEER, UDP, DownReason.NO_ACKS, 1.0)
    with pytest.raises(CoordinatorError) as no_path:
        c.choose(PEER, NORMAL, 1.0)
    assert no_path.value.reason is CoordinatorReason.NO_PATH
    assert "peer-a" in str(no_path.value)
    with pytest.raises(CoordinatorError) as bad:
        CoordinatorSettings(switch_margin=-1.0)
    assert bad.value.reason is CoordinatorReason.BAD_SETTINGS
