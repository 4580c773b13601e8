"""A path's score for one message priority, in [0, 1] (DESIGN.md "Scoring", issue 15):

    score = 0.40 * H + 0.30 * P + 0.20 * L + 0.10 * F

- H, health: OPTIMAL 1.0, GOOD 0.75, DEGRADED 0.5, CRITICAL 0.2, FAILED 0 (the effective class,
  the worse of measured and projected; see ``health``).
- P, performance: the mean of latency ``1 / (1 + srtt / latency_reference_s)`` (0.5 at 100 ms),
  delivery ``1 - loss`` and reliability ``1 / (1 + failures in the last 300 s)``; blended with
  the decision-matrix prior (``prior``) as ``w * measured + (1 - w) * prior`` where
  ``w = min(1, n / prior_weight_samples)`` and n counts RTT samples and send outcomes: before
  anything is measured the matrix decides, after 10 samples the measurements alone do. Parts not
  yet measured take the prior's value (latency) or their best value (loss, reliability).
- L, load: ``1 - utilization`` of the path's transport (connections / capacity, as the service
  reports it; a TURN path's capacity is its relay's).
- F, fit for the priority: CONTROL and HIGH want the lowest latency (F = latency); NORMAL weighs
  latency and capacity equally; BULK wants capacity and headroom (capacity * (1 - utilization)).
  Capacity per kind: UDP and TCP+TLS 1.0, TURN 1.0, BLE 0.2 (tens of kB/s against megabits).
  A relayed path's fit is multiplied by 0.8 at every priority: it spends relay capacity that
  other peers share and adds a hop.

With equal measurements (the prior faded) a direct path's score is thus strictly higher than a
relayed one's, by 0.1 * 0.2 * F; ties that remain are broken by ``PathKey.sort_key``.

Worked example (tests/unit/coordinator/test_scoring.py): a direct UDP path, 20 ms, no loss, no
failures, idle transport, NORMAL: latency 0.833, P 0.944, F 0.917, score 0.975; the same
measurements over TURN score 0.957.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from node.proto.coordinator.health import Health
from node.proto.coordinator.settings import CoordinatorSettings
from node.proto.vocabulary import Priority, TransportKind

WEIGHT_HEALTH: Final = 0.40
WEIGHT_PERFORMANCE: Final = 0.30
WEIGHT_LOAD: Final = 0.20
WEIGHT_FIT: Final = 0.10

HEALTH_VALUE: Final = MappingProxyType(
    {
        Health.OPTIMAL: 1.0,
        Health.GOOD: 0.75,
        Health.DEGRADED: 0.5,
        Health.CRITICAL: 0.2,
        Health.FAILED: 0.0,
    }
)
CAPACITY: Final = MappingProxyType(
    {TransportKind.UDP: 1.0, TransportKind.TCP_TLS: 1.0, TransportKind.TURN: 1.0, TransportKind.BLE: 0.2}
)
RELAY_FIT: Final = 0.8


@dataclass(frozen=True, slots=True)
class PathInputs:
    """What scoring needs of one path at one instant."""

    kind: TransportKind
    relayed: bool
    health: Health  # effective
    srtt: float | None
    loss: float | None  # the window's raw fraction (None: nothing resolved yet)
    reliability: float
    utilization: float  # of the path's transport, 0 when unknown
    measurements: int  # RTT samples + outcomes in the window
    prior: float


@dataclass(frozen=True, slots=True)
class Score:
    total: float
    health: float
    performance: float
    load: float
    fit: float


def latency_value(srtt: float, settings: CoordinatorSettings) -> float:
    return 1.0 / (1.0 + srtt / settings.latency_reference_s)


def performance(p: PathInputs, settings: CoordinatorSettings) -> float:
    latency = p.prior if p.srtt is None else latency_value(p.srtt, settings)
    delivery = 1.0 if p.loss is None else 1.0 - p.loss
    measured = (latency + delivery + p.reliability) / 3
    k = settings.prior_weight_samples
    w = 1.0 if k == 0 else min(1.0, p.measurements / k)
    return w * measured + (1 - w) * p.prior


def fit(p: PathInputs, priority: Priority, settings: CoordinatorSettings) -> float:
    latency = p.prior if p.srtt is None else latency_value(p.srtt, settings)
    capacity = CAPACITY[p.kind]
    if priority >= Priority.HIGH:
        value = latency
    elif priority is Priority.NORMAL:
        value = (latency + capacity) / 2
    else:
        value = capacity * (1.0 - _clamp(p.utilization))
    return value * (RELAY_FIT if p.relayed else 1.0)


def score(p: PathInputs, priority: Priority, settings: CoordinatorSettings) -> Score:
    h = HEALTH_VALUE[p.health]
    perf = performance(p, settings)
    load = 1.0 - _clamp(p.utilization)
    f = fit(p, priority, settings)
    total = WEIGHT_HEALTH * h + WEIGHT_PERFORMANCE * perf + WEIGHT_LOAD * load + WEIGHT_FIT * f
    return Score(total=total, health=h, performance=perf, load=load, fit=f)


def _clamp(x: float) -> float:
    return min(1.0, max(0.0, x))
