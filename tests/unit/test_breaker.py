"""The circuit breaker in virtual time: every ``now`` is a number the test chooses."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.errors import LocalError
from node.proto.breaker import (
    TRANSITIONS,
    BreakerConfigError,
    BreakerInput,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
    IllegalTransition,
    UnadmittedResult,
    transition,
)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def fail(breaker: CircuitBreaker, now: float, times: int = 1) -> None:
    for _ in range(times):
        assert breaker.allow(now)
        breaker.record_failure(now)


def opened_at(t: float) -> CircuitBreaker:
    breaker = CircuitBreaker()
    fail(breaker, t, 5)
    assert breaker.state(t) is OPEN
    return breaker


def test_defaults_are_the_design_numbers() -> None:
    breaker = CircuitBreaker()
    assert (breaker.failure_threshold, breaker.recovery_timeout, breaker.half_open_max_calls) == (
        5,
        30.0,
        1,
    )
    assert breaker.state(0.0) is CLOSED
    assert breaker.next_transition(0.0) is None


def test_opens_at_exactly_the_fifth_consecutive_failure() -> None:
    breaker = CircuitBreaker()
    for i in range(4):
        fail(breaker, float(i))
        assert breaker.state(float(i)) is CLOSED
    fail(breaker, 4.0)
    assert breaker.state(4.0) is OPEN
    assert breaker.snapshot(4.0) == BreakerSnapshot(
        state=OPEN, consecutive_failures=5, times_opened=1, calls_in_flight=0, retry_at=34.0
    )


def test_a_success_while_closed_resets_the_count() -> None:
    breaker = CircuitBreaker()
    fail(breaker, 0.0, 4)
    assert breaker.allow(1.0)
    breaker.record_success(1.0)
    assert breaker.snapshot(1.0).consecutive_failures == 0
    fail(breaker, 2.0, 4)
    assert breaker.state(2.0) is CLOSED
    fail(breaker, 3.0)
    assert breaker.state(3.0) is OPEN


def test_stays_open_and_refuses_until_the_recovery_timeout() -> None:
    breaker = opened_at(100.0)
    assert breaker.next_transition(100.0) == 130.0
    for t in (100.0, 110.0, 129.999):
        assert breaker.state(t) is OPEN
        assert not breaker.allow(t)
    assert breaker.snapshot(129.0).retry_at == 130.0


def test_half_opens_at_the_deadline_and_admits_one_trial() -> None:
    breaker = opened_at(100.0)
    assert breaker.state(130.0) is HALF_OPEN
    assert breaker.next_transition(130.0) is None
    assert breaker.allow(130.0)
    assert not breaker.allow(130.5)
    assert not breaker.allow(200.0)
    assert breaker.state(200.0) is HALF_OPEN


def test_half_opens_lazily_after_the_deadline() -> None:
    breaker = opened_at(0.0)
    assert breaker.allow(1000.0)
    assert breaker.state(1000.0) is HALF_OPEN


def test_a_trial_success_closes() -> None:
    breaker = opened_at(0.0)
    assert breaker.allow(30.0)
    breaker.record_success(30.2)
    assert breaker.state(30.2) is CLOSED
    snap = breaker.snapshot(30.2)
    assert (snap.consecutive_failures, snap.times_opened, snap.retry_at) == (0, 1, None)
    # Closed again: the full threshold is needed to re-open.
    fail(breaker, 31.0, 4)
    assert breaker.state(31.0) is CLOSED


def test_a_trial_failure_reopens_with_a_fresh_timeout() -> None:
    breaker = opened_at(0.0)
    assert breaker.allow(40.0)
    breaker.record_failure(41.0)
    assert breaker.state(41.0) is OPEN
    assert breaker.next_transition(41.0) == 71.0
    assert not breaker.allow(70.9)
    assert breaker.state(71.0) is HALF_OPEN
    assert breaker.snapshot(71.0).times_opened == 2


def test_half_open_max_calls_admits_that_many_trials() -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=5.0, half_open_max_calls=3)
    fail(breaker, 0.0)
    assert [breaker.allow(5.0) for _ in range(4)] == [True, True, True, False]
    breaker.record_success(6.0)  # the first trial result decides
    assert breaker.state(6.0) is CLOSED
    # The two other trials are still in flight and may be recorded while CLOSED.
    breaker.record_failure(6.0)
    assert breaker.state(6.0) is OPEN


def test_late_results_while_open_are_ignored() -> None:
    # Calls admitted while CLOSED may complete after other calls opened the breaker.
    breaker = CircuitBreaker(failure_threshold=2)
    assert breaker.allow(0.0)
    assert breaker.allow(0.0)
    assert breaker.allow(0.0)
    assert breaker.allow(0.0)
    breaker.record_failure(1.0)
    breaker.record_failure(1.0)
    assert breaker.state(1.0) is OPEN
    breaker.record_success(2.0)
    breaker.record_failure(3.0)
    snap = breaker.snapshot(3.0)
    assert (snap.state, snap.retry_at, snap.times_opened, snap.consecutive_failures) == (
        OPEN,
        31.0,
        1,
        2,
    )
    assert snap.calls_in_flight == 0


def test_a_late_result_after_the_deadline_counts_as_the_trial() -> None:
    breaker = CircuitBreaker(failure_threshold=1)
    assert breaker.allow(0.0)
    assert breaker.allow(0.0)
    breaker.record_failure(0.0)
    breaker.record_success(30.0)  # from the call admitted at 0.0; now half-open
    assert breaker.state(30.0) is CLOSED


@pytest.mark.parametrize("state_after", ["closed", "open", "half_open"])
def test_recording_without_an_admitted_call_raises_and_changes_nothing(state_after: str) -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=10.0)
    now = 0.0
    if state_after != "closed":
        fail(breaker, 0.0)
    if state_after == "half_open":
        now = 10.0
    before = breaker.snapshot(now)
    for record, input_ in (
        (breaker.record_success, BreakerInput.SUCCESS),
        (breaker.record_failure, BreakerInput.FAILURE),
    ):
        with pytest.raises(UnadmittedResult) as info:
            record(now)
        assert isinstance(info.value, LocalError)
        assert (info.value.state, info.value.input) == (before.state, input_)
    assert breaker.snapshot(now) == before


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0},
        {"recovery_timeout": -1.0},
        {"recovery_timeout": float("nan")},
        {"half_open_max_calls": 0},
    ],
)
def test_bad_configuration_is_a_typed_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(BreakerConfigError):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


def test_zero_recovery_timeout_half_opens_at_once() -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=0.0)
    fail(breaker, 5.0)
    assert breaker.state(5.0) is HALF_OPEN


# -- the table ---------------------------------------------------------------------------------


@given(st.sampled_from(BreakerState), st.sampled_from(BreakerInput))
def test_every_state_input_pair_follows_the_table_or_raises(
    state: BreakerState, input_: BreakerInput
) -> None:
    if (state, input_) in TRANSITIONS:
        assert transition(state, input_) is TRANSITIONS[(state, input_)]
    else:
        with pytest.raises(IllegalTransition) as info:
            transition(state, input_)
        assert (info.value.state, info.value.input) == (state, input_)


def test_the_table_forbids_what_the_guards_never_produce() -> None:
    missing = set(itertools.product(BreakerState, BreakerInput)) - TRANSITIONS.keys()
    assert missing == {
        (CLOSED, BreakerInput.REJECT),
        (CLOSED, BreakerInput.RECOVER),
        (OPEN, BreakerInput.ADMIT),
        (OPEN, BreakerInput.TRIP),
        (HALF_OPEN, BreakerInput.TRIP),
        (HALF_OPEN, BreakerInput.RECOVER),
    }


# -- a random walk in virtual time -------------------------------------------------------------

EDGES = {(state, new) for (state, _), new in TRANSITIONS.items()}

operation = st.tuples(
    st.sampled_from(["allow", "success", "failure", "state"]),
    st.floats(min_value=0.0, max_value=20.0, allow_nan=False),
)


@given(
    threshold=st.integers(min_value=1, max_value=6),
    # A zero timeout half-opens inside the same call that opens, hiding the OPEN state from
    # this walk's polling; test_zero_recovery_timeout_half_opens_at_once covers it.
    timeout=st.floats(min_value=0.001, max_value=40.0, allow_nan=False),
    max_calls=st.integers(min_value=1, max_value=3),
    ops=st.lists(operation, max_size=80),
)
def test_random_walk_keeps_the_invariants(
    threshold: int,
    timeout: float,
    max_calls: int,
    ops: list[tuple[str, float]],
) -> None:
    breaker = CircuitBreaker(threshold, timeout, max_calls)
    now = 0.0
    in_flight = 0
    trials = 0
    previous = breaker.state(now)
    seen: set[tuple[BreakerState, BreakerState]] = set()
    for op, advance in ops:
        now += advance
        deadline = breaker.next_transition(now)
        state = breaker.state(now)
        if previous is not state:
            seen.add((previous, state))
        if op == "allow":
            admitted = breaker.allow(now)
            if state is OPEN:
                assert deadline is not None
                assert now < deadline
                assert not admitted
            if state is HALF_OPEN:
                assert admitted == (trials < max_calls)
                trials += admitted
            if state is CLOSED:
                assert admitted
            in_flight += admitted
        elif op in ("success", "failure"):
            record = breaker.record_success if op == "success" else breaker.record_failure
            if in_flight == 0:
                with pytest.raises(UnadmittedResult):
                    record(now)
            else:
                record(now)
                in_flight -= 1
                if state is HALF_OPEN:
                    # Any recorded result ends the half-open period.
                    expected = CLOSED if op == "success" else OPEN
                    assert breaker.snapshot(now).state is expected
        after = breaker.state(now)
        if after is not state:
            seen.add((state, after))
        if after is not HALF_OPEN:
            trials = 0
        snap = breaker.snapshot(now)
        assert snap.calls_in_flight == in_flight
        if after is CLOSED:
            assert snap.consecutive_failures < threshold
            assert snap.retry_at is None
        if after is OPEN:
            assert snap.retry_at is not None
            assert now < snap.retry_at <= now + timeout
        previous = after
    assert seen <= EDGES
