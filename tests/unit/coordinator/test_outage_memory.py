"""What a path remembers of an outage, and what it must not: silence that is not silence, losses
that outlive the outage, and an RTT measured across it (virtual time, the core alone)."""

from __future__ import annotations

from node.proto.breaker import BreakerState, CircuitBreaker
from node.proto.coordinator import Coordinator, DownReason, Health, Outcome
from node.proto.coordinator.samples import PathSamples
from node.proto.coordinator.settings import CoordinatorSettings
from node.proto.natprobe.types import NatType
from tests.unit.coordinator.harness import PEER, UDP, feed

SETTINGS = CoordinatorSettings()


def udp_row(c: Coordinator, now: float) -> tuple[Health, BreakerState, float | None]:
    c.tick(now)  # re-rank at `now` (a snapshot re-ranks only a peer with news)
    view = next(v for v in c.snapshot(now) if v.peer == PEER)
    row = next(p for p in view.paths if p.kind == "udp")
    return row.health, row.breaker, row.rtt_ms


def test_an_outcome_reported_before_its_send_still_resolves_it() -> None:
    # The service reports a batch's sends once the batch is written; an ACK of its first
    # message can come first. Nothing may stay "in flight" for ever after both are in.
    s = PathSamples(SETTINGS)
    s.add_outcome(acked=True, now=1.0)
    s.add_sent(0.9)
    assert s.in_flight == 0
    assert s.silent_for(100.0) == 0.0


def test_an_answer_that_acknowledges_nothing_new_restarts_the_silence() -> None:
    c = Coordinator(nat=NatType.OPEN)
    c.add_path(PEER, UDP, 0.0)
    feed(c, UDP, 0.0, 1.0, rtt=lambda t: 0.001)  # RTO at its 200 ms floor
    c.record_sent(PEER, UDP, 1.0)
    c.record_heard(PEER, UDP, 1.3)  # a busy peer's ACK: it hears us
    assert udp_row(c, 1.6)[0] is Health.OPTIMAL  # 0.3 s of silence, not 0.6
    assert udp_row(c, 1.8)[0] is Health.CRITICAL  # and silence still counts after it


def test_losses_leave_the_window_after_loss_window_s() -> None:
    s = PathSamples(SETTINGS)
    for _ in range(20):
        s.add_sent(0.0)
        s.add_outcome(acked=False, now=0.0)
    assert s.loss() == 1.0
    s.age(SETTINGS.loss_window_s - 1)
    assert s.loss() == 1.0
    s.age(SETTINGS.loss_window_s + 1)
    assert s.loss() is None  # nothing left to judge by


def test_a_passed_trial_ends_the_outage_and_its_losses() -> None:
    c = Coordinator(nat=NatType.OPEN, breaker=lambda: CircuitBreaker(5, recovery_timeout=2.0))
    c.add_path(PEER, UDP, 0.0)
    for _ in range(20):  # an outage: every message lost, the breaker opens
        c.record_sent(PEER, UDP, 1.0)
        c.record_outcome(PEER, UDP, Outcome.LOST, 1.0)
    assert udp_row(c, 1.0)[:2] == (Health.FAILED, BreakerState.OPEN)
    assert udp_row(c, 3.1)[:2] == (Health.CRITICAL, BreakerState.HALF_OPEN)
    c.record_sent(PEER, UDP, 3.1)
    c.record_outcome(PEER, UDP, Outcome.ACKED, 3.2)  # the trial
    # Before, the 20 losses kept it critical (loss 95 %) until traffic it never got diluted them.
    health, breaker, _ = udp_row(c, 3.3)
    assert breaker is BreakerState.CLOSED
    assert health is Health.OPTIMAL


def test_a_path_back_from_down_starts_its_loss_window_over() -> None:
    c = Coordinator(nat=NatType.OPEN)
    c.add_path(PEER, UDP, 0.0)
    feed(c, UDP, 0.0, 1.0, lost=lambda t: int(t * 20) % 2 == 1)  # every other one lost: 50 %
    c.path_failed(PEER, UDP, DownReason.STALLED, 1.0)
    assert udp_row(c, 1.0)[0] is Health.FAILED
    c.record_sent(PEER, UDP, 1.1)
    c.record_outcome(PEER, UDP, Outcome.ACKED, 1.2)  # proof of life
    assert udp_row(c, 1.3)[0] > Health.CRITICAL  # not judged on the 50 % it lost before


def test_an_rtt_that_crossed_an_outage_is_proof_of_life_not_a_sample() -> None:
    c = Coordinator(nat=NatType.OPEN)
    c.add_path(PEER, UDP, 0.0)
    feed(c, UDP, 0.0, 1.0, rtt=lambda t: 0.02)
    c.path_failed(PEER, UDP, DownReason.STALLED, 1.0)
    c.record_rtt(PEER, UDP, 4.5, 5.5)  # a health check that waited out the outage
    health, _, rtt_ms = udp_row(c, 5.5)
    assert health is not Health.FAILED  # the path is back
    assert rtt_ms is not None and rtt_ms < 50  # and its RTT is still its own


def test_silence_is_judged_against_an_rto_of_at_most_the_cap() -> None:
    # Health checks that queued behind a backlog left this path with a 6 s RTO; it still goes
    # critical after two capped RTOs of silence, not after 12 s.
    c = Coordinator(nat=NatType.OPEN)
    c.add_path(PEER, UDP, 0.0)
    for i in range(10):
        c.record_rtt(PEER, UDP, 6.0, 0.1 * i)
    c.record_sent(PEER, UDP, 1.0)
    limit = SETTINGS.critical_silent_rtos * SETTINGS.silence_rto_cap_s
    assert udp_row(c, 1.0 + limit - 0.1)[0] is not Health.CRITICAL
    assert udp_row(c, 1.0 + limit + 0.1)[0] is Health.CRITICAL
