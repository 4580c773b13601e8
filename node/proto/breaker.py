"""A sans-IO circuit breaker for STUN servers, TURN servers and remotes.

The design card's numbers: a breaker opens after 5 consecutive failures and half-opens after a
30 s recovery timeout; in half-open a limited number of trial calls (1 by default) decide whether
it closes again (a trial success) or re-opens with a fresh timer (a trial failure).

No clock is read: every method takes ``now`` (seconds, any monotonic origin). OPEN -> HALF_OPEN
happens lazily, the next time any method is called at or after the deadline;
``next_transition(now)`` gives that deadline to a driver that wants to arm a timer for it.

Calls are counted: a result may only be recorded for a call that ``allow`` admitted. Recording
without one is a bug in the caller and raises ``UnadmittedResult``; the breaker's state is left
untouched (unlike h11, a misused breaker does not move to an error state: a daemon's breaker
that wedged itself on one caller's bug would take a server out of service for everyone).

A result that arrives while OPEN belongs to a call admitted before the breaker opened (calls run
concurrently). It is ignored: the breaker has already decided, and only a half-open trial decides
again. A result that arrives in HALF_OPEN is taken as the trial's, even if it comes from such an
older call: it is still news about the server from after the recovery timeout, and ``allow``
returns a bare bool, so calls carry no identity to tell them apart.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from node.errors import LocalError

__all__ = [
    "TRANSITIONS",
    "BreakerConfigError",
    "BreakerError",
    "BreakerFactory",
    "BreakerInput",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
    "IllegalTransition",
    "UnadmittedResult",
    "transition",
]


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerInput(enum.Enum):
    """What happened, already classified by the guards in ``CircuitBreaker``."""

    ADMIT = "admit"  # allow() said yes
    REJECT = "reject"  # allow() said no
    SUCCESS = "success"  # an admitted call succeeded
    FAILURE = "failure"  # an admitted call failed, below the threshold in CLOSED
    TRIP = "trip"  # an admitted call failed and reached the threshold in CLOSED
    RECOVER = "recover"  # the recovery timeout passed while OPEN


_S = BreakerState
_I = BreakerInput

# Every legal (state, input) pair and the state it leads to, in one place (h11's _state.py).
# Pairs not listed cannot be produced by CircuitBreaker's guards; transition() raises on them.
TRANSITIONS: Final[dict[tuple[BreakerState, BreakerInput], BreakerState]] = {
    (_S.CLOSED, _I.ADMIT): _S.CLOSED,
    (_S.CLOSED, _I.SUCCESS): _S.CLOSED,
    (_S.CLOSED, _I.FAILURE): _S.CLOSED,
    (_S.CLOSED, _I.TRIP): _S.OPEN,
    (_S.OPEN, _I.REJECT): _S.OPEN,
    (_S.OPEN, _I.SUCCESS): _S.OPEN,  # late result of a call admitted before opening: ignored
    (_S.OPEN, _I.FAILURE): _S.OPEN,  # likewise
    (_S.OPEN, _I.RECOVER): _S.HALF_OPEN,
    (_S.HALF_OPEN, _I.ADMIT): _S.HALF_OPEN,
    (_S.HALF_OPEN, _I.REJECT): _S.HALF_OPEN,  # every trial slot is taken
    (_S.HALF_OPEN, _I.SUCCESS): _S.CLOSED,
    (_S.HALF_OPEN, _I.FAILURE): _S.OPEN,
}


class BreakerError(LocalError):
    """Root of the breaker's errors: all of them are the caller's misuse."""


class BreakerConfigError(BreakerError):
    """A constructor argument is out of range."""


class IllegalTransition(BreakerError):
    """The transition table has no entry for ``(state, input)``."""

    def __init__(self, state: BreakerState, input_: BreakerInput) -> None:
        super().__init__(f"no transition from {state.name} on {input_.name}")
        self.state = state
        self.input = input_


class UnadmittedResult(BreakerError):
    """A result was recorded but no call admitted by ``allow`` is outstanding."""

    def __init__(self, state: BreakerState, input_: BreakerInput) -> None:
        super().__init__(f"{input_.name} recorded in {state.name} with no call admitted")
        self.state = state
        self.input = input_


def transition(state: BreakerState, input_: BreakerInput) -> BreakerState:
    """The next state for ``input_`` in ``state``, per ``TRANSITIONS``."""
    try:
        return TRANSITIONS[(state, input_)]
    except KeyError:
        raise IllegalTransition(state, input_) from None


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """Counters for metrics, taken at one instant."""

    state: BreakerState
    consecutive_failures: int
    times_opened: int
    calls_in_flight: int  # admitted by allow() and not yet recorded
    retry_at: float | None  # when OPEN: the absolute time it half-opens


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 5,
        recovery_timeout: float = 30.0,
        half_open_max_calls: int = 1,
    ) -> None:
        if failure_threshold < 1:
            raise BreakerConfigError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if not recovery_timeout >= 0.0:  # also rejects NaN
            raise BreakerConfigError(f"recovery_timeout must be >= 0, got {recovery_timeout}")
        if half_open_max_calls < 1:
            raise BreakerConfigError(f"half_open_max_calls must be >= 1, got {half_open_max_calls}")
        self.failure_threshold = failure_threshold
        self.recovery_timeout = recovery_timeout
        self.half_open_max_calls = half_open_max_calls
        self._state = BreakerState.CLOSED
        self._retry_at = 0.0  # meaningful only while OPEN
        self._consecutive_failures = 0
        self._times_opened = 0
        self._in_flight = 0  # every admitted call not yet recorded, whatever state admitted it
        self._trials = 0  # calls admitted in the current HALF_OPEN period

    def _fire(self, input_: BreakerInput, now: float) -> None:
        new = transition(self._state, input_)
        if new is BreakerState.OPEN and self._state is not BreakerState.OPEN:
            self._times_opened += 1
            self._retry_at = now + self.recovery_timeout
        if new is not self._state:
            # Entering or leaving HALF_OPEN starts a fresh set of trials; any calls still in
            # flight from before are counted in _in_flight only.
            self._trials = 0
        self._state = new

    def state(self, now: float) -> BreakerState:
        if self._state is BreakerState.OPEN and now >= self._retry_at:
            self._fire(BreakerInput.RECOVER, now)
        return self._state

    def allow(self, now: float) -> bool:
        """Admit a call or refuse it. Every admitted call must later be recorded."""
        state = self.state(now)
        if state is BreakerState.OPEN or (
            state is BreakerState.HALF_OPEN and self._trials >= self.half_open_max_calls
        ):
            self._fire(BreakerInput.REJECT, now)
            return False
        self._fire(BreakerInput.ADMIT, now)
        self._in_flight += 1
        if state is BreakerState.HALF_OPEN:
            self._trials += 1
        return True

    def _take_result(self, input_: BreakerInput, now: float) -> BreakerState:
        state = self.state(now)
        if self._in_flight == 0:
            raise UnadmittedResult(state, input_)
        self._in_flight -= 1
        return state

    def record_success(self, now: float) -> None:
        state = self._take_result(BreakerInput.SUCCESS, now)
        if state is not BreakerState.OPEN:
            self._consecutive_failures = 0
        self._fire(BreakerInput.SUCCESS, now)

    def record_failure(self, now: float) -> None:
        state = self._take_result(BreakerInput.FAILURE, now)
        input_ = BreakerInput.FAILURE
        if state is not BreakerState.OPEN:
            self._consecutive_failures += 1
            if state is BreakerState.CLOSED and self._consecutive_failures >= self.failure_threshold:
                input_ = BreakerInput.TRIP
        self._fire(input_, now)

    def next_transition(self, now: float) -> float | None:
        """The absolute time OPEN turns HALF_OPEN, or None when not OPEN (nothing is timed)."""
        if self.state(now) is BreakerState.OPEN:
            return self._retry_at
        return None

    def snapshot(self, now: float) -> BreakerSnapshot:
        state = self.state(now)
        return BreakerSnapshot(
            state=state,
            consecutive_failures=self._consecutive_failures,
            times_opened=self._times_opened,
            calls_in_flight=self._in_flight,
            retry_at=self._retry_at if state is BreakerState.OPEN else None,
        )


# What drivers are given instead of breaker settings: a fresh breaker per remote or server on each
# call (the services pass ``config.breaker.new_breaker``; ``CircuitBreaker`` itself gives the
# design card's defaults).
BreakerFactory = Callable[[], CircuitBreaker]
