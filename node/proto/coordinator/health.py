"""Health classes of a path, measured and projected (issue 15's numbers, in CoordinatorSettings):

- FAILED: a breaker (the path's transport's or its remote's) is open, or the service declared the
  path down (consent lost, disconnected, link down) and nothing has come back over it since;
- CRITICAL: loss > 20 %, or something sent has waited two retransmission timeouts (each at
  most ``silence_rto_cap_s``) with no acknowledgement at all, or a breaker is half-open (the
  path is on trial: usable as a last resort, never preferred);
- DEGRADED: loss > 5 %, or the smoothed RTT above twice the path's own baseline (``samples``)
  and at least ``degraded_rtt_floor_s`` above it;
- GOOD: loss > 1 %;
- OPTIMAL otherwise.

Projected (predictive failover): the least-squares trend of loss (each outcome 0 or 1) and of RTT
over the last ``trend_window_s`` is extended ``predict_horizon_s`` ahead; a significantly rising
loss that would pass the critical threshold makes the projection CRITICAL, a rising RTT that would
pass twice the baseline DEGRADED. A path's effective health is the worse of the two.
"""

from __future__ import annotations

import enum

from node.proto.breaker import BreakerState
from node.proto.coordinator.samples import PathSamples
from node.proto.coordinator.settings import CoordinatorSettings


class Health(enum.IntEnum):
    """Ordered: a larger value is healthier."""

    FAILED = 0
    CRITICAL = 1
    DEGRADED = 2
    GOOD = 3
    OPTIMAL = 4


def measured(
    samples: PathSamples,
    breaker: BreakerState,
    down: bool,
    now: float,
    settings: CoordinatorSettings,
) -> Health:
    """The class from what has been measured so far (``breaker``: the worse of the path's two)."""
    if down or breaker is BreakerState.OPEN:
        return Health.FAILED
    loss = samples.loss()
    if (
        breaker is BreakerState.HALF_OPEN
        or (loss is not None and loss > settings.critical_loss)
        or samples.silent_for(now)
        > settings.critical_silent_rtos * min(samples.rto(), settings.silence_rto_cap_s)
    ):
        return Health.CRITICAL
    baseline = samples.baseline()
    if (loss is not None and loss > settings.degraded_loss) or (
        samples.srtt is not None and baseline is not None and _slow(samples.srtt, baseline, settings)
    ):
        return Health.DEGRADED
    if loss is not None and loss > settings.good_loss:
        return Health.GOOD
    return Health.OPTIMAL


def projected(samples: PathSamples, now: float, settings: CoordinatorSettings) -> Health:
    """The class the trends reach within the horizon (OPTIMAL when no trend rises)."""
    ahead = settings.predict_horizon_s
    loss = samples.loss_trend(now)
    if loss is not None and loss.rising() and loss.at(ahead) > settings.critical_loss:
        return Health.CRITICAL
    rtt = samples.rtt_trend(now)
    baseline = samples.baseline()
    if rtt is not None and baseline is not None and rtt.rising() and _slow(rtt.at(ahead), baseline, settings):
        return Health.DEGRADED
    return Health.OPTIMAL


def _slow(rtt: float, baseline: float, settings: CoordinatorSettings) -> bool:
    """``rtt`` is a degradation of ``baseline``: twice it and more than noise above it."""
    return rtt > settings.degraded_rtt_factor * baseline and rtt - baseline > settings.degraded_rtt_floor_s


def worse(a: BreakerState, b: BreakerState) -> BreakerState:
    """The worse of two breaker states: open, then half-open, then closed."""
    order = (BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN)
    return a if order.index(a) >= order.index(b) else b
