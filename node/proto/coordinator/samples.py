"""One path's measurements: the last ``performance_samples`` RTTs and send outcomes, the RFC 6298
retransmission timeout, the RTT baseline, the silence since the last acknowledgement and recent
failures. Plain bookkeeping; what the numbers mean is ``health`` and ``scoring``.

Baseline: the minimum RTT over the sample window (LEDBAT's base delay, RFC 6817 §4.1, and BBR's
min_rtt filter take the minimum the same way): queueing only ever adds delay, so the minimum is
the path's own propagation delay, and an RTT above twice that is queueing or a worse route. A
slow EWMA would drift up with a standing queue and hide exactly the degradation we look for; a
minimum over a bounded window still follows a permanent route change once the old samples age out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from node.proto.coordinator.settings import CoordinatorSettings
from node.proto.coordinator.trend import Trend, fit

# RFC 6298 §2.3: alpha = 1/8, beta = 1/4, K = 4.
_ALPHA = 0.125
_BETA = 0.25
_K = 4.0
# Failures older than the reliability window are dropped; this bounds the list in between.
_MAX_FAILURES = 64


class PathSamples:
    def __init__(self, settings: CoordinatorSettings) -> None:
        self._settings = settings
        self.rtts: deque[tuple[float, float]] = deque(maxlen=settings.performance_samples)
        self.outcomes: deque[tuple[float, bool]] = deque(maxlen=settings.performance_samples)  # lost?
        self._lost = 0  # lost outcomes in the window, kept in step with ``outcomes``
        self.srtt: float | None = None
        self._rttvar = 0.0
        self.in_flight = 0  # sends reported and not yet resolved as acked or lost
        self._waiting_since: float | None = None
        self._failures: deque[float] = deque(maxlen=_MAX_FAILURES)
        self.proven = False  # an RTT or an acknowledgement came back over this path
        self.last_trouble = float("-inf")  # when something was last lost or failed over it

    # -- input ------------------------------------------------------------------------------

    def add_rtt(self, rtt: float, now: float) -> None:
        self.rtts.append((now, rtt))
        self.proven = True
        if self.srtt is None:  # RFC 6298 §2.2
            self.srtt, self._rttvar = rtt, rtt / 2
        else:  # RFC 6298 §2.3
            self._rttvar = (1 - _BETA) * self._rttvar + _BETA * abs(self.srtt - rtt)
            self.srtt = (1 - _ALPHA) * self.srtt + _ALPHA * rtt

    def add_sent(self, now: float) -> None:
        self.in_flight += 1
        if self.in_flight == 1:
            self._waiting_since = now

    def add_outcome(self, acked: bool, now: float) -> None:
        if len(self.outcomes) == self.outcomes.maxlen and self.outcomes[0][1]:
            self._lost -= 1
        self.outcomes.append((now, not acked))
        self._lost += not acked
        if not acked:
            self.last_trouble = now
        # Not clamped at 0: the sender reports a batch's sends when the batch is written, and
        # an outcome of its first messages may come first (the batch waited on the socket); a
        # clamp would lose those outcomes and leave sends that never resolve (a path "silent"
        # for ever). The count is exact once both are in.
        self.in_flight -= 1
        if acked:
            self.proven = True
        # Waiting restarts at each acknowledgement; with nothing outstanding nobody waits.
        if self.in_flight <= 0:
            self._waiting_since = None
        elif acked:
            self._waiting_since = now

    def add_heard(self, now: float) -> None:
        """The peer answered over this path without acknowledging anything new (it is busy, or
        holds what we sent out of order): alive, so the silence starts over."""
        if self.in_flight > 0:
            self._waiting_since = now

    def age(self, now: float) -> None:
        """Drop outcomes older than ``loss_window_s`` (see CoordinatorSettings)."""
        outcomes, horizon = self.outcomes, now - self._settings.loss_window_s
        while outcomes and outcomes[0][0] < horizon:
            self._lost -= outcomes.popleft()[1]

    def recovered(self) -> None:
        """The path came back from an outage (its breaker's trial succeeded, or it was declared
        down and proved alive): the losses of the outage describe a state that has ended, so the
        loss window starts over. The outage itself stays in ``recent_failures`` (reliability)."""
        self.outcomes.clear()
        self._lost = 0

    def add_failure(self, now: float) -> None:
        self._failures.append(now)
        self.last_trouble = now

    # -- derived ----------------------------------------------------------------------------

    def loss(self) -> float | None:
        """Lost / resolved over the window; None below ``min_loss_samples`` outcomes."""
        n = len(self.outcomes)
        return self._lost / n if n >= self._settings.min_loss_samples else None

    def loss_fraction(self) -> float | None:
        """Lost / resolved over the window however few (None: nothing resolved yet)."""
        return self._lost / len(self.outcomes) if self.outcomes else None

    def baseline(self) -> float | None:
        return min((rtt for _, rtt in self.rtts), default=None)

    def rto(self) -> float:
        if self.srtt is None:
            return self._settings.initial_rto_s
        return max(self._settings.min_rto_s, self.srtt + _K * self._rttvar)

    def silent_for(self, now: float) -> float:
        """How long something sent has waited with no acknowledgement at all (0: nothing waits)."""
        if self._waiting_since is None or self.in_flight <= 0:
            return 0.0
        return max(0.0, now - self._waiting_since)

    def recent_failures(self, now: float) -> int:
        horizon = now - self._settings.reliability_window_s
        return sum(1 for t in self._failures if t > horizon)

    def reliability(self, now: float) -> float:
        """1 for a path that has not failed within the reliability window, 1/2 after one failure,
        1/3 after two...: a path that keeps failing is worth less even while it works."""
        return 1.0 / (1 + self.recent_failures(now))

    def _recent(
        self, series: deque[tuple[float, float]] | deque[tuple[float, bool]], now: float
    ) -> Iterator[tuple[float, float]]:
        since = now - self._settings.trend_window_s
        return ((t, float(v)) for t, v in series if t >= since)

    def loss_trend(self, now: float) -> Trend | None:
        return self._trend(self.outcomes, now)

    def rtt_trend(self, now: float) -> Trend | None:
        return self._trend(self.rtts, now)

    def _trend(
        self, series: deque[tuple[float, float]] | deque[tuple[float, bool]], now: float
    ) -> Trend | None:
        points = list(self._recent(series, now))
        if len(points) < self._settings.trend_min_samples:
            return None
        return fit(points, now)
