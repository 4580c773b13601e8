"""Each health class at its boundary (issue 15's numbers), measured and projected."""

from __future__ import annotations

import pytest

from node.proto.breaker import BreakerState
from node.proto.coordinator import Health
from node.proto.coordinator.health import measured, projected, worse
from node.proto.coordinator.samples import PathSamples
from node.proto.coordinator.settings import CoordinatorSettings

SETTINGS = CoordinatorSettings()
CLOSED = BreakerState.CLOSED


def with_loss(lost: int, of: int = 100) -> PathSamples:
    """``lost`` of ``of`` outcomes lost, all at t=0 (no trend: one instant)."""
    s = PathSamples(SETTINGS)
    for i in range(of):
        s.add_outcome(acked=i >= lost, now=0.0)
    return s


@pytest.mark.parametrize(
    ("lost", "health"),
    [
        (0, Health.OPTIMAL),
        (1, Health.OPTIMAL),  # 1 % is not above 1 %
        (2, Health.GOOD),
        (5, Health.GOOD),  # 5 % is not above 5 %
        (6, Health.DEGRADED),
        (20, Health.DEGRADED),  # 20 % is not above 20 %
        (21, Health.CRITICAL),
    ],
)
def test_loss_boundaries(lost: int, health: Health) -> None:
    assert measured(with_loss(lost), CLOSED, False, 0.0, SETTINGS) is health


def test_loss_needs_ten_outcomes() -> None:
    assert measured(with_loss(5, of=9), CLOSED, False, 0.0, SETTINGS) is Health.OPTIMAL
    assert measured(with_loss(5, of=10), CLOSED, False, 0.0, SETTINGS) is Health.CRITICAL


def test_window_keeps_the_last_hundred_outcomes() -> None:
    s = with_loss(30)  # 30 lost first, then 70 acked
    assert s.loss() == pytest.approx(0.3)
    for _ in range(30):
        s.add_outcome(acked=True, now=0.0)
    assert s.loss() == 0.0


def rtt_path(baseline: float, then: float) -> PathSamples:
    s = PathSamples(SETTINGS)
    s.add_rtt(baseline, 0.0)
    s.srtt = then  # the smoothed RTT after a rise, pinned to the boundary
    return s


def test_rtt_above_twice_its_baseline_is_degraded() -> None:
    assert measured(rtt_path(0.02, 0.04), CLOSED, False, 0.0, SETTINGS) is Health.OPTIMAL
    assert measured(rtt_path(0.02, 0.0401), CLOSED, False, 0.0, SETTINGS) is Health.DEGRADED


def test_a_lan_rtt_doubling_by_less_than_the_floor_is_noise() -> None:
    # 0.3 ms to 0.9 ms is three times the baseline, but 0.6 ms is scheduling noise.
    assert measured(rtt_path(0.0003, 0.0009), CLOSED, False, 0.0, SETTINGS) is Health.OPTIMAL
    assert measured(rtt_path(0.0003, 0.0104), CLOSED, False, 0.0, SETTINGS) is Health.DEGRADED


def test_baseline_is_the_minimum_of_the_window() -> None:
    s = PathSamples(CoordinatorSettings(performance_samples=3))
    for rtt in (0.01, 0.05, 0.06):
        s.add_rtt(rtt, 0.0)
    assert s.baseline() == 0.01
    s.add_rtt(0.07, 0.0)  # the 10 ms sample ages out
    assert s.baseline() == 0.05


def test_no_acknowledgement_for_two_rtos_is_critical() -> None:
    s = PathSamples(SETTINGS)
    s.add_rtt(0.1, 0.0)  # RTO = max(0.2, 0.1 + 4 * 0.05) = 0.3
    assert s.rto() == pytest.approx(0.3)
    s.add_sent(1.0)
    assert measured(s, CLOSED, False, 1.6, SETTINGS) is Health.OPTIMAL
    assert measured(s, CLOSED, False, 1.61, SETTINGS) is Health.CRITICAL
    s.add_outcome(acked=True, now=1.61)  # nothing waits any more
    assert measured(s, CLOSED, False, 5.0, SETTINGS) is Health.OPTIMAL


def test_silence_restarts_at_each_acknowledgement() -> None:
    s = PathSamples(SETTINGS)  # no RTT yet: RTO 1 s (RFC 6298 2.1)
    s.add_sent(0.0)
    s.add_sent(0.5)
    s.add_outcome(acked=True, now=1.5)
    assert s.silent_for(3.0) == pytest.approx(1.5)
    assert measured(s, CLOSED, False, 3.5, SETTINGS) is Health.OPTIMAL
    assert measured(s, CLOSED, False, 3.51, SETTINGS) is Health.CRITICAL


def test_breaker_and_down_flags() -> None:
    s = with_loss(0)
    assert measured(s, BreakerState.OPEN, False, 0.0, SETTINGS) is Health.FAILED
    assert measured(s, BreakerState.HALF_OPEN, False, 0.0, SETTINGS) is Health.CRITICAL
    assert measured(s, CLOSED, True, 0.0, SETTINGS) is Health.FAILED
    assert worse(CLOSED, BreakerState.HALF_OPEN) is BreakerState.HALF_OPEN
    assert worse(BreakerState.OPEN, BreakerState.HALF_OPEN) is BreakerState.OPEN


def test_a_rising_loss_is_projected_critical_and_a_flat_one_is_not() -> None:
    rising = PathSamples(SETTINGS)
    flat = PathSamples(SETTINGS)
    for i in range(100):  # 5 s at 20 messages/s
        t = i * 0.05
        rising.add_outcome(acked=(i % 10) >= (i // 20), now=t)  # 0 %, 10 %, ... 40 % per second
        flat.add_outcome(acked=i % 10 != 0, now=t)  # 10 % throughout
    assert projected(rising, 5.0, SETTINGS) is Health.CRITICAL
    assert projected(flat, 5.0, SETTINGS) is Health.OPTIMAL


def test_a_rising_rtt_is_projected_degraded() -> None:
    s = PathSamples(SETTINGS)
    for i in range(50):
        s.add_rtt(0.02 + 0.002 * i, i * 0.1)  # 20 ms growing 20 ms/s
    assert projected(s, 4.9, SETTINGS) is Health.DEGRADED
