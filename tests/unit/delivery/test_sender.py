"""PeerSender: window backpressure, RTO and Karn's rule, path_failed, retries and failure."""

from __future__ import annotations

import random

import pytest

from node.proto.delivery.errors import AckError, DeliveryUsageError
from node.proto.delivery.events import Acknowledged, Failed, FailReason, SendReason
from node.proto.delivery.sender import PeerSender
from node.proto.delivery.settings import DeliverySettings
from node.proto.delivery.wire import AckFrame
from node.proto.vocabulary import Priority
from tests.unit.delivery.harness import Channel, Sim, epochs

N = Priority.NORMAL


def sender(**overrides: object) -> PeerSender:
    return PeerSender(DeliverySettings(**overrides), epoch_source=epochs().__next__)  # type: ignore[arg-type]


def ack(next_: int, ranges: tuple[tuple[int, int], ...] = (), busy: bool = False, epoch: int = 1) -> AckFrame:
    return AckFrame(epoch, N, next_, ranges, busy)


def test_window_refuses_when_full_in_messages_and_bytes_and_reopens_on_ack() -> None:
    s = sender(window_messages=2, window_bytes=1 << 20, max_message_bytes=1 << 19)
    assert s.offer(b"a", N, 0.0) is not None
    assert s.offer(b"b", N, 0.0) is not None
    assert s.offer(b"c", N, 0.0) is None  # count
    assert s.offer(b"u", N, 0.0, reliable=False) is not None  # unreliable never occupies it
    s.on_ack(ack(1), 0.1)
    assert s.offer(b"x" * (1 << 19), N, 0.1) is not None
    s.on_ack(ack(2), 0.2)
    assert s.stats().in_flight_bytes == 1 << 19
    assert not s.can_offer((1 << 19) + 1)  # bytes
    assert s.offer(b"x" * (1 << 19), N, 0.2) is not None


def test_offer_above_the_message_limit_is_a_typed_error() -> None:
    with pytest.raises(DeliveryUsageError):
        sender(max_message_bytes=10).offer(b"x" * 11, N, 0.0)


def test_unreliable_is_sent_once_and_never_resent() -> None:
    s = sender()
    s.offer(b"u", N, 0.0, reliable=False)
    assert len(s.datagrams_to_send()) == 1
    assert s.get_timer() is None
    s.path_failed(1.0)
    assert s.datagrams_to_send() == []


def test_rto_follows_rfc6298_from_samples() -> None:
    s = sender()
    assert s.stats().rto_s == 1.0  # RFC 6298 §2.1 before any sample
    s.offer(b"a", N, 0.0)
    s.on_ack(ack(1), 0.3)
    stats = s.stats()
    assert stats.srtt_s == pytest.approx(0.3)
    assert stats.rto_s == pytest.approx(0.3 + 4 * 0.15)  # SRTT + K * RTTVAR, RTTVAR = R/2


def test_karns_rule_no_sample_from_a_retransmitted_message() -> None:
    s = sender()
    s.offer(b"a", N, 0.0)
    s.handle_timer(1.0)  # RTO 1 s: resent
    assert [t.reason for t in s.datagrams_to_send()] == [SendReason.FIRST, SendReason.TIMEOUT]
    s.on_ack(ack(1), 1.05)  # ambiguous: the first send or the resend?
    assert s.stats().srtt_s is None
    s.offer(b"b", N, 2.0)
    s.on_ack(ack(2), 2.05)
    assert s.stats().srtt_s == pytest.approx(0.05)


def test_path_failed_resends_everything_unacked_at_once() -> None:
    s = sender()
    for payload in (b"a", b"b", b"c"):
        s.offer(payload, N, 0.0)
    s.on_ack(ack(1, ((2, 2),)), 0.1)  # a delivered, c held out of order at the peer
    s.datagrams_to_send()
    s.path_failed(0.2)
    resent = s.datagrams_to_send()
    assert [(t.message_id.sequence, t.reason) for t in resent] == [(1, SendReason.PATH_FAILED)]


def test_retransmission_after_path_failure_within_failover_timeout() -> None:
    """The path dies with messages in flight; the caller says so after 1 s; the next path works."""
    sim = Sim(Channel(random.Random(0), loss=1.0))
    for i in range(5):
        sim.sender.offer(b"m%d" % i, N, 0.0)
    sim.run_until(1.0)
    sim.channel.loss = 0.0  # the coordinator picks the next path
    sim.sender.path_failed(sim.now)
    sent_before = len(sim.sent)
    sim.run_until(1.0 + sim.settings.failover_timeout_s)
    assert {t.reason for t in sim.sent[sent_before:]} == {SendReason.PATH_FAILED}
    assert len(sim.acknowledged) == 5
    assert [d.payload for d in sim.delivered] == [b"m%d" % i for i in range(5)]


def test_resend_waits_back_off_within_the_failover_ceiling_then_fail() -> None:
    s = sender(retries=3, retry_backoff_s=0.5, failover_timeout_s=1.5)
    first = s.offer(b"a", N, 0.0)
    second = s.offer(b"b", N, 0.0)
    times = []
    while (deadline := s.get_timer()) is not None:
        times.append(deadline)
        s.handle_timer(deadline)
    # RTO 1 s; then max(RTO, 0.5 s doubling): 1, 1, then 2 capped at 1.5 s; the fourth fails.
    assert times == pytest.approx([1.0, 2.0, 3.0, 4.5])
    assert [(t.reason, t.message_id) for t in s.datagrams_to_send()].count((SendReason.TIMEOUT, first)) == 3
    events = [s.next_event(), s.next_event(), s.next_event()]
    assert events == [
        Failed(first, FailReason.RETRIES_EXHAUSTED),
        Failed(second, FailReason.STREAM_BROKEN),
        None,
    ]
    assert s.stats().failed == 2 and s.stats().in_flight == 0
    assert s.epoch == 2  # the next message starts a new stream
    assert s.offer(b"c", N, 5.0) is not None


def test_ack_beyond_what_was_sent_is_a_typed_error_and_changes_nothing() -> None:
    s = sender()
    s.offer(b"a", N, 0.0)
    with pytest.raises(AckError):
        s.on_ack(ack(2), 0.1)
    with pytest.raises(AckError):
        s.on_ack(ack(0, ((1, 1),)), 0.1)
    assert s.stats().in_flight == 1
    s.on_ack(ack(1, epoch=99), 0.1)  # another epoch: ignored, counted
    assert s.stats().stale_acks == 1 and s.stats().in_flight == 1
    s.on_ack(ack(1), 0.1)
    assert s.next_event() == Acknowledged(s.datagrams_to_send()[0].message_id)


def test_without_any_path_messages_wait_with_their_retries_untouched_then_go_when_one_is_back() -> None:
    s = sender(retries=1, failover_timeout_s=5.0)
    s.offer(b"a", N, 0.0)
    s.datagrams_to_send()
    s.handle_timer(1.0)  # the RTO: its one retry spent
    s.datagrams_to_send()
    s.no_path(1.5)  # the caller found no path for that resend: nothing more is spent meanwhile
    assert s.get_timer() == 6.5
    s.handle_timer(3.0)
    assert s.datagrams_to_send() == [] and s.next_event() is None
    s.path_failed(3.5)  # a path failure is not the message's retry either
    s.path_back(4.0)
    sent = s.datagrams_to_send()
    assert [t.reason for t in sent if t.message_id.sequence == 0][-1] is SendReason.PATH_FAILED
    assert s.next_event() is None  # nothing failed on the way
    s.on_ack(ack(1), 4.1)
    assert isinstance(s.next_event(), Acknowledged)


def test_no_path_for_the_whole_failover_timeout_fails_every_waiting_message() -> None:
    s = sender(failover_timeout_s=5.0)
    s.offer(b"a", N, 0.0)
    s.offer(b"b", N, 0.0)
    s.no_path(0.5)
    s.handle_timer(5.4)
    assert s.next_event() is None
    s.handle_timer(5.5)
    failed = [s.next_event(), s.next_event()]
    assert [f.reason for f in failed if isinstance(f, Failed)] == [
        FailReason.NO_PATH,
        FailReason.STREAM_BROKEN,
    ]


def test_newly_held_reports_each_selectively_acknowledged_message_once() -> None:
    s = sender()
    ids = [s.offer(b"m", N, 0.0) for _ in range(4)]
    s.datagrams_to_send()
    s.on_ack(ack(0, ((1, 2),), busy=True), 0.01)  # the peer holds 1 and 2; 0 is missing
    assert s.newly_held() == [ids[1], ids[2]]
    assert s.newly_held() == []
    s.on_ack(ack(0, ((1, 3),), busy=True), 0.02)  # 3 arrives too: only it is news
    assert s.newly_held() == [ids[3]]
    s.on_ack(ack(4), 0.03)  # all in the inbox: acknowledged, not held
    assert s.newly_held() == []
    assert [type(e) for e in iter(s.next_event, None)] == [Acknowledged] * 4


def test_outstanding_until_acknowledged_and_never_for_another_epoch() -> None:
    s = sender()
    first = s.offer(b"a", N, 0.0)
    second = s.offer(b"b", N, 0.0)
    assert first is not None and second is not None
    assert s.outstanding(first) and s.outstanding(second)
    s.on_ack(ack(1), 0.01)
    assert not s.outstanding(first) and s.outstanding(second)
    assert not s.outstanding(second._replace(epoch=second.epoch + 1))
