"""STUN client transactions in virtual time: the tests jump from one get_timer() to the next."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.errors import LocalError
from node.proto.stun.transaction import (
    ClientTransaction,
    DuplicateTransaction,
    Timing,
    TransactionConfigError,
    TransactionEvent,
    TransactionManager,
    TransactionQueueFull,
    TransactionSucceeded,
    TransactionTimedOut,
)

TID = b"\x01" * 12
REQ = b"binding-request"

Server = tuple[str, int]
A: Server = ("203.0.113.10", 3478)
B: Server = ("203.0.113.11", 3478)

# RFC 8489 §6.2.1's worked example.
RFC_SENDS = [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
RFC_FAILURE = 39.5


def tid(n: int) -> bytes:
    return n.to_bytes(12, "big")


def drive(tx: ClientTransaction, t0: float, until: float = float("inf")) -> tuple[list[float], float]:
    """Send what is due and jump to each timer until the transaction ends or ``until``.

    Returns the send times and the time of the last timer handled.
    """
    now = t0
    sends: list[float] = []
    while True:
        sends += [now] * len(tx.datagrams_to_send(now))
        timer = tx.get_timer()
        if timer is None or timer > until:
            return sends, now
        now = timer
        tx.handle_timer(now)


def timed_out(tx: ClientTransaction) -> TransactionTimedOut:
    event = tx.next_event()
    assert isinstance(event, TransactionTimedOut)
    assert tx.next_event() is None
    return event


# -- one transaction ---------------------------------------------------------------------------


def test_udp_defaults_follow_the_rfc_schedule() -> None:
    tx = ClientTransaction(TID, REQ, 0.0)
    sends, end = drive(tx, 0.0)
    assert sends == RFC_SENDS
    assert end == RFC_FAILURE
    assert timed_out(tx) == TransactionTimedOut(TID, sends=7)
    assert tx.finished
    assert tx.sends == 7


def test_the_schedule_is_relative_to_t0() -> None:
    tx = ClientTransaction(TID, REQ, 1000.0)
    sends, end = drive(tx, 1000.0)
    assert sends == [1000.0 + t for t in RFC_SENDS]
    assert end == 1000.0 + RFC_FAILURE


def test_every_send_is_the_same_request() -> None:
    tx = ClientTransaction(TID, REQ, 0.0)
    assert tx.datagrams_to_send(0.0) == [REQ]
    assert tx.datagrams_to_send(0.0) == []
    tx.handle_timer(0.5)
    assert tx.datagrams_to_send(0.5) == [REQ]


def test_reliable_sends_once_and_fails_after_ti() -> None:
    tx = ClientTransaction(TID, REQ, 0.0, timing=Timing(reliable=True))
    sends, end = drive(tx, 0.0)
    assert sends == [0.0]
    assert end == 39.5
    assert timed_out(tx).sends == 1


def test_reliable_with_a_custom_ti() -> None:
    tx = ClientTransaction(TID, REQ, 5.0, timing=Timing(reliable=True, ti=2.0))
    assert drive(tx, 5.0) == ([5.0], 7.0)


def test_custom_rto_rc_rm() -> None:
    tx = ClientTransaction(TID, REQ, 0.0, timing=Timing(rto=0.25, rc=2, rm=2))
    sends, end = drive(tx, 0.0)
    assert sends == [0.0, 0.25]
    assert end == 0.25 + 2 * 0.25
    assert timed_out(tx).sends == 2


def test_a_single_send_waits_rm_times_rto() -> None:
    tx = ClientTransaction(TID, REQ, 0.0, timing=Timing(rto=0.125, rc=1, rm=4))
    assert drive(tx, 0.0) == ([0.0], 0.5)


def test_rto_cap_bounds_the_interval_but_not_the_final_wait() -> None:
    tx = ClientTransaction(TID, REQ, 0.0, timing=Timing(rto=0.5, rc=5, rm=16, rto_cap=1.0))
    sends, end = drive(tx, 0.0)
    assert sends == [0.0, 0.5, 1.5, 2.5, 3.5]
    assert end == 3.5 + 16 * 0.5


def test_an_early_timer_does_nothing() -> None:
    tx = ClientTransaction(TID, REQ, 0.0)
    tx.datagrams_to_send(0.0)
    tx.handle_timer(0.499)
    assert tx.datagrams_to_send(0.499) == []
    assert tx.get_timer() == 0.5


def test_a_late_timer_delays_the_rest_instead_of_bursting() -> None:
    tx = ClientTransaction(TID, REQ, 0.0)
    tx.datagrams_to_send(0.0)
    tx.handle_timer(10.0)  # the driver slept through several deadlines
    assert tx.datagrams_to_send(10.0) == [REQ]
    assert tx.get_timer() == 11.0


def test_a_response_stops_retransmission_and_reports_no_rtt_after_retransmits() -> None:
    tx = ClientTransaction(TID, REQ, 0.0)
    sends, _ = drive(tx, 0.0, until=1.5)
    assert sends == [0.0, 0.5, 1.5]
    assert tx.receive_response("resp", 1.7)
    assert tx.get_timer() is None
    assert tx.datagrams_to_send(2.0) == []
    # Karn's rule: three requests were sent, so the response cannot be timed.
    assert tx.next_event() == TransactionSucceeded(TID, "resp", rtt=None)
    assert tx.next_event() is None


def test_rtt_is_measured_when_exactly_one_request_was_sent() -> None:
    tx = ClientTransaction(TID, REQ, 10.0)
    tx.datagrams_to_send(10.0)
    tx.receive_response("resp", 10.125)
    assert tx.next_event() == TransactionSucceeded(TID, "resp", rtt=0.125)


def test_rtt_runs_from_when_the_request_was_handed_out() -> None:
    tx = ClientTransaction(TID, REQ, 10.0)
    tx.datagrams_to_send(10.25)
    tx.receive_response("resp", 10.5)
    assert tx.next_event() == TransactionSucceeded(TID, "resp", rtt=0.25)


def test_a_retransmission_not_yet_sent_is_dropped_and_keeps_the_rtt() -> None:
    tx = ClientTransaction(TID, REQ, 0.0)
    tx.datagrams_to_send(0.0)
    tx.handle_timer(0.5)  # a retransmission is due but not handed out yet
    tx.receive_response("resp", 0.5)
    assert tx.datagrams_to_send(0.5) == []
    assert tx.next_event() == TransactionSucceeded(TID, "resp", rtt=0.5)


def test_a_response_before_anything_was_sent_has_no_rtt() -> None:
    tx = ClientTransaction(TID, REQ, 0.0)
    tx.receive_response("resp", 0.1)
    assert tx.next_event() == TransactionSucceeded(TID, "resp", rtt=None)


def test_after_the_end_responses_and_timers_are_ignored() -> None:
    tx = ClientTransaction(TID, REQ, 0.0)
    tx.datagrams_to_send(0.0)
    assert tx.receive_response("first", 0.1)
    assert not tx.receive_response("duplicate", 0.2)  # answer to a retransmission
    tx.handle_timer(100.0)
    assert tx.next_event() == TransactionSucceeded(TID, "first", rtt=0.1)
    assert tx.next_event() is None

    silent = ClientTransaction(TID, REQ, 0.0, timing=Timing(reliable=True))
    drive(silent, 0.0)
    assert not silent.receive_response("too late", 50.0)
    silent.handle_timer(60.0)
    assert timed_out(silent).sends == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rto": 0.0},
        {"rto": -1.0},
        {"rto": float("nan")},
        {"rto": float("inf")},
        {"ti": 0.0},
        {"rc": 0},
        {"rm": 0},
        {"rto": 1.0, "rto_cap": 0.5},
    ],
)
def test_bad_timing_is_a_typed_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(TransactionConfigError) as info:
        ClientTransaction(TID, REQ, 0.0, Timing(**kwargs))  # type: ignore[arg-type]
    assert isinstance(info.value, LocalError)


@given(
    rto=st.floats(min_value=0.001, max_value=5.0),
    rc=st.integers(min_value=1, max_value=12),
    rm=st.integers(min_value=1, max_value=32),
    t0=st.floats(min_value=0.0, max_value=1e6),
)
def test_send_times_and_failure_follow_the_formula(rto: float, rc: int, rm: int, t0: float) -> None:
    tx = ClientTransaction(TID, REQ, t0, timing=Timing(rto=rto, rc=rc, rm=rm))
    sends, end = drive(tx, t0)
    # Send k at t0 + RTO * (2**k - 1); failure Rm * RTO after the last send.
    assert sends == pytest.approx([t0 + rto * (2**k - 1) for k in range(rc)], rel=1e-9)
    assert end == pytest.approx(t0 + rto * (2 ** (rc - 1) - 1 + rm), rel=1e-9)
    assert timed_out(tx).sends == rc


@given(
    rc=st.integers(min_value=1, max_value=7),
    answer_after=st.floats(min_value=0.0, max_value=45.0),
)
def test_a_response_at_any_time_before_the_end_succeeds(rc: int, answer_after: float) -> None:
    tx = ClientTransaction(TID, REQ, 0.0, timing=Timing(rc=rc))
    sends, _ = drive(tx, 0.0, until=answer_after)
    event: TransactionEvent | None
    if tx.finished:
        assert not tx.receive_response("resp", answer_after)
        event = tx.next_event()
        assert isinstance(event, TransactionTimedOut)
    else:
        assert tx.receive_response("resp", answer_after)
        event = tx.next_event()
        assert isinstance(event, TransactionSucceeded)
        assert event.rtt == (answer_after if len(sends) == 1 else None)
    assert tx.get_timer() is None


# -- the manager -------------------------------------------------------------------------------


def run(manager: TransactionManager[Server], now: float, until: float) -> list[tuple[float, Server, bytes]]:
    """Drive the manager from ``now`` through every timer up to ``until``; log what is sent."""
    log: list[tuple[float, Server, bytes]] = []
    while True:
        log += [(now, server, data) for server, data in manager.datagrams_to_send(now)]
        timer = manager.get_timer()
        if timer is None or timer > until:
            return log
        now = timer
        manager.handle_timer(now)


def events(manager: TransactionManager[Server]) -> list[tuple[Server, TransactionEvent]]:
    out = []
    while (event := manager.next_event()) is not None:
        out.append(event)
    return out


def test_manager_runs_a_transaction_on_the_rfc_schedule() -> None:
    manager: TransactionManager[Server] = TransactionManager()
    assert manager.get_timer() is None
    assert manager.start(A, TID, REQ, 0.0)
    log = run(manager, 0.0, until=100.0)
    assert [t for t, _, _ in log] == RFC_SENDS
    assert {(s, d) for _, s, d in log} == {(A, REQ)}
    assert events(manager) == [(A, TransactionTimedOut(TID, 7))]
    assert manager.get_timer() is None
    assert manager.outstanding(A) == 0


def test_manager_passes_timing_through() -> None:
    manager: TransactionManager[Server] = TransactionManager()
    manager.start(A, tid(1), REQ, 0.0, timing=Timing(rto=0.1, rc=2, rm=2))
    manager.start(B, tid(2), REQ, 0.0, timing=Timing(reliable=True, ti=1.0))
    log = run(manager, 0.0, until=100.0)
    assert [(t, s) for t, s, _ in log] == [(0.0, A), (0.0, B), (0.1, A)]
    assert events(manager) == [
        (A, TransactionTimedOut(tid(1), 2)),
        (B, TransactionTimedOut(tid(2), 1)),
    ]


def test_a_response_stops_retransmission() -> None:
    manager: TransactionManager[Server] = TransactionManager()
    manager.start(A, TID, REQ, 0.0)
    run(manager, 0.0, until=0.5)
    assert manager.receive(A, TID, "resp", 0.7)
    assert events(manager) == [(A, TransactionSucceeded(TID, "resp", None))]
    assert manager.get_timer() is None
    assert run(manager, 0.7, until=100.0) == []
    assert not manager.receive(A, TID, "duplicate", 0.8)


def test_a_response_with_a_wrong_transaction_id_is_ignored() -> None:
    manager: TransactionManager[Server] = TransactionManager()
    manager.start(A, TID, REQ, 0.0)
    manager.datagrams_to_send(0.0)
    assert not manager.receive(A, b"\x02" * 12, "resp", 0.1)
    assert not manager.receive(B, TID, "resp from another server", 0.2)
    assert manager.next_event() is None
    log = run(manager, 0.2, until=1.5)
    assert [t for t, _, _ in log] == [0.5, 1.5]  # retransmissions continue


def test_the_eleventh_transaction_waits_but_another_server_does_not() -> None:
    manager: TransactionManager[Server] = TransactionManager()
    started = [manager.start(A, tid(n), b"a%d" % n, 0.0) for n in range(11)]
    assert started == [True] * 10 + [False]
    assert manager.start(B, tid(100), b"b", 0.0)
    sent = manager.datagrams_to_send(0.0)
    assert sent == [(A, b"a%d" % n) for n in range(10)] + [(B, b"b")]
    assert (manager.outstanding(A), manager.queued(A)) == (10, 1)
    assert (manager.outstanding(B), manager.queued(B)) == (1, 0)
    # A response for the queued transaction is not for anything on the wire.
    assert not manager.receive(A, tid(10), "resp", 0.1)

    assert manager.receive(A, tid(3), "resp", 0.2)
    assert (manager.outstanding(A), manager.queued(A)) == (10, 0)
    # The waiting transaction makes its first send now and runs its own schedule from here.
    assert manager.datagrams_to_send(0.2) == [(A, b"a10")]
    log = run(manager, 0.2, until=0.7)
    assert sorted((t, d) for t, _, d in log if d == b"a10") == [(0.7, b"a10")]


def test_a_timeout_frees_the_slot_too() -> None:
    manager: TransactionManager[Server] = TransactionManager(max_outstanding=1)
    manager.start(A, tid(1), b"first", 0.0, timing=Timing(reliable=True, ti=5.0))
    manager.start(A, tid(2), b"second", 1.0, timing=Timing(reliable=True, ti=5.0))
    log = run(manager, 1.0, until=100.0)
    assert [(t, d) for t, _, d in log] == [(1.0, b"first"), (5.0, b"second")]
    assert events(manager) == [
        (A, TransactionTimedOut(tid(1), 1)),
        (A, TransactionTimedOut(tid(2), 1)),
    ]


def test_queue_overflow_raises_and_changes_nothing() -> None:
    manager: TransactionManager[Server] = TransactionManager(max_outstanding=1, max_queued=2)
    for n in range(3):
        manager.start(A, tid(n), REQ, 0.0)
    with pytest.raises(TransactionQueueFull) as info:
        manager.start(A, tid(3), REQ, 0.0)
    assert isinstance(info.value, LocalError)
    assert (info.value.server, info.value.limit) == (A, 2)
    assert (manager.outstanding(A), manager.queued(A)) == (1, 2)
    assert manager.start(B, tid(3), REQ, 0.0)  # the id was not taken by the failed start


def test_the_default_queue_holds_a_hundred() -> None:
    manager: TransactionManager[Server] = TransactionManager()
    for n in range(110):
        manager.start(A, tid(n), REQ, 0.0)
    with pytest.raises(TransactionQueueFull):
        manager.start(A, tid(110), REQ, 0.0)


def test_duplicate_transaction_ids_are_refused() -> None:
    manager: TransactionManager[Server] = TransactionManager(max_outstanding=1)
    manager.start(A, tid(1), REQ, 0.0)
    manager.start(A, tid(2), REQ, 0.0)  # queued
    for server, n in ((A, 1), (B, 1), (B, 2)):
        with pytest.raises(DuplicateTransaction) as info:
            manager.start(server, tid(n), REQ, 0.0)
        assert info.value.transaction_id == tid(n)
    # Once finished, an id may be used again.
    manager.receive(A, tid(1), "resp", 0.1)
    manager.receive(A, tid(2), "resp", 0.2)
    assert manager.start(A, tid(1), REQ, 0.3)


def test_bad_timing_is_refused_at_start_even_when_it_would_queue() -> None:
    manager: TransactionManager[Server] = TransactionManager(max_outstanding=1)
    manager.start(A, tid(1), REQ, 0.0)
    with pytest.raises(TransactionConfigError):
        manager.start(A, tid(2), REQ, 0.0, timing=Timing(rc=0))
    assert manager.queued(A) == 0


@pytest.mark.parametrize("kwargs", [{"max_outstanding": 0}, {"max_queued": -1}])
def test_bad_limits_are_a_typed_error(kwargs: dict[str, int]) -> None:
    with pytest.raises(TransactionConfigError):
        TransactionManager(**kwargs)


def test_cancel_an_outstanding_transaction_starts_the_next_in_line() -> None:
    manager: TransactionManager[Server] = TransactionManager(max_outstanding=1)
    manager.start(A, tid(1), b"one", 0.0)
    manager.start(A, tid(2), b"two", 0.0)
    manager.datagrams_to_send(0.0)
    assert manager.cancel(tid(1), 0.3)
    assert manager.next_event() is None  # cancelling is the caller's own act: no event
    assert manager.datagrams_to_send(0.3) == [(A, b"two")]
    assert manager.get_timer() == pytest.approx(0.8)
    assert not manager.receive(A, tid(1), "late", 0.4)
    assert not manager.cancel(tid(1), 0.5)


def test_cancel_a_queued_transaction() -> None:
    manager: TransactionManager[Server] = TransactionManager(max_outstanding=1)
    for n in range(4):
        manager.start(A, tid(n), b"%d" % n, 0.0)
    assert manager.datagrams_to_send(0.0) == [(A, b"0")]
    assert manager.cancel(tid(2), 0.1)
    assert manager.queued(A) == 2
    assert manager.cancel(tid(3), 0.1)
    assert manager.cancel(tid(1), 0.1)
    assert manager.queued(A) == 0
    assert not manager.cancel(tid(9), 0.1)
    assert manager.receive(A, tid(0), "resp", 0.2)
    assert manager.outstanding(A) == 0
    assert manager.datagrams_to_send(0.2) == []  # nothing cancelled ever starts
    assert manager.get_timer() is None


def test_get_timer_is_the_earliest_deadline() -> None:
    manager: TransactionManager[Server] = TransactionManager()
    manager.start(A, tid(1), REQ, 0.0, timing=Timing(reliable=True))
    manager.start(B, tid(2), REQ, 2.0)
    manager.start(B, tid(3), REQ, 0.0, timing=Timing(rto=5.0))
    assert manager.get_timer() == 2.5


step = st.tuples(
    st.sampled_from(["start", "answer", "cancel", "timer"]),
    st.integers(min_value=0, max_value=2),  # which server, for start
    st.integers(min_value=0, max_value=1000),  # which started transaction, for answer/cancel
)


@given(steps=st.lists(step, max_size=60))
def test_manager_random_walk_keeps_limits_fifo_and_one_event_each(
    steps: list[tuple[str, int, int]],
) -> None:
    servers: list[Server] = [A, B, ("198.18.0.1", 3478)]
    limit, queue = 2, 3
    manager: TransactionManager[Server] = TransactionManager(max_outstanding=limit, max_queued=queue)
    now = 0.0
    started: list[tuple[Server, bytes]] = []  # accepted by start(), in order
    first_sent: list[bytes] = []
    cancelled: set[bytes] = set()
    ended: list[bytes] = []

    def drain() -> None:
        for server, data in manager.datagrams_to_send(now):
            assert (server, data) in started  # the request is the id, so it names its server
            if data not in first_sent:
                first_sent.append(data)
        while (item := manager.next_event()) is not None:
            assert item[0] == dict((i, s) for s, i in started)[item[1].transaction_id]
            ended.append(item[1].transaction_id)

    for op, s, n in steps:
        if op == "start":
            ident = tid(len(started) + len(steps))  # never reused
            try:
                manager.start(servers[s], ident, ident, now, timing=Timing(rto=0.1, rc=2, rm=2))
            except TransactionQueueFull:
                pass
            else:
                started.append((servers[s], ident))
        elif started and op in ("answer", "cancel"):
            server, ident = started[n % len(started)]
            if op == "answer":
                manager.receive(server, ident, "resp", now)
            elif manager.cancel(ident, now):
                cancelled.add(ident)
        elif (timer := manager.get_timer()) is not None:
            now = timer
            manager.handle_timer(now)
        drain()
        for server in servers:
            assert manager.outstanding(server) <= limit
            assert manager.queued(server) <= queue
            assert manager.queued(server) == 0 or manager.outstanding(server) == limit

    while (timer := manager.get_timer()) is not None:
        now = timer
        manager.handle_timer(now)
        drain()
    # Every transaction ends exactly once: with an event, or by being cancelled.
    assert sorted(ended + list(cancelled)) == sorted(i for _, i in started)
    # Per server, transactions make their first send in the order they were started (FIFO).
    for server in servers:
        mine = [i for srv, i in started if srv == server]
        assert [i for i in first_sent if i in mine] == [i for i in mine if i in first_sent]
