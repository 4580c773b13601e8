"""The coordinator's numbers, with the issue's and the design card's defaults.

The config file wiring (``[coordinator]``, ``[transport]``) comes later; until then the service
builds this from ``node.config``'s transport section and these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.proto.coordinator.errors import CoordinatorError, CoordinatorReason
from node.proto.vocabulary import Priority


@dataclass(frozen=True, slots=True)
class CoordinatorSettings:
    # coordinator.max_transports_per_peer: paths in use per peer; more may be known but idle.
    max_transports_per_peer: int = 3
    # coordinator.load_balance_threshold: a transport this full (connections / capacity) spreads
    # its peers' traffic over the paths within the hysteresis margin.
    load_balance_threshold: float = 0.8
    # transport.performance_samples: RTT samples and send outcomes kept per path.
    performance_samples: int = 100
    # Hysteresis (issue 15): another path must score this much higher ...
    switch_margin: float = 0.10
    # ... for this long before traffic moves to it.
    switch_hold_s: float = 2.0
    # Predictive failover: demote a path projected to be critical within this horizon.
    predict_horizon_s: float = 5.0
    # Only samples this recent feed the trend: an old ramp says nothing about now.
    trend_window_s: float = 5.0
    # A trend from fewer points is noise (a t-test needs some degrees of freedom).
    trend_min_samples: int = 20
    # Loss classes need this many outcomes: one loss in three messages is not "33 % loss".
    min_loss_samples: int = 10
    # Outcomes older than this leave the loss window. A path that traffic left because of its
    # losses gets no traffic to dilute them (health checks add one outcome per interval): without
    # an age limit it would stay critical for ~performance_samples health checks after it healed.
    loss_window_s: float = 30.0
    # Health thresholds (issue 15): loss above these fractions ...
    critical_loss: float = 0.20
    degraded_loss: float = 0.05
    good_loss: float = 0.01
    # ... or RTT above this multiple of the path's own baseline is degraded ...
    degraded_rtt_factor: float = 2.0
    # ... and at least this much above it: on a LAN (and in the lab) the baseline is a fraction
    # of a millisecond and scheduling noise doubles it; a rise a player cannot notice degrades
    # nothing (and would keep a proven direct path from taking over from a relay).
    degraded_rtt_floor_s: float = 0.01
    # ... or no acknowledgement for this many retransmission timeouts is critical ...
    critical_silent_rtos: float = 2.0
    # ... each counted as the path's RTO but at most this. A path's RTT samples include what
    # queues ahead of them (a health check behind a TCP connection's backlog measured 1.6 and
    # 6 s on a LAN in bench/failover.py), and a 6 s RTO made a dead path wait 12 s to be called
    # silent, past every retry. An answer every 2 s keeps even a satellite path (RTT ~0.6 s) clear.
    silence_rto_cap_s: float = 1.0
    # RFC 6298 §2.1: before any RTT sample the RTO is 1 s. §2.4 asks for a 1 s floor; like Linux
    # (TCP_RTO_MIN) we take 200 ms: game traffic cannot wait a second to call a path silent.
    initial_rto_s: float = 1.0
    min_rto_s: float = 0.2
    # Failures (breaker trips, path_failed, link down) within this window lower reliability.
    reliability_window_s: float = 300.0
    # Latency half-score point: a path with this RTT scores 0.5 on latency.
    latency_reference_s: float = 0.1
    # Prior pseudo-count: measured performance weighs n / (n + this) against the matrix prior.
    prior_weight_samples: int = 10
    # Priorities sent on the two best paths at once (hybrid multipath, deduplicated by the peer).
    multipath_priorities: frozenset[Priority] = frozenset({Priority.CONTROL, Priority.HIGH})

    def __post_init__(self) -> None:
        checks = (
            ("max_transports_per_peer", self.max_transports_per_peer >= 1),
            ("load_balance_threshold", 0.0 < self.load_balance_threshold <= 1.0),
            ("performance_samples", self.performance_samples >= 2),
            ("switch_margin", self.switch_margin >= 0.0),
            ("switch_hold_s", self.switch_hold_s >= 0.0),
            ("predict_horizon_s", self.predict_horizon_s >= 0.0),
            ("trend_window_s", self.trend_window_s > 0.0),
            ("trend_min_samples", self.trend_min_samples >= 3),
            ("min_loss_samples", self.min_loss_samples >= 1),
            ("loss_window_s", self.loss_window_s > 0.0),
            ("loss thresholds", 0.0 <= self.good_loss <= self.degraded_loss <= self.critical_loss < 1.0),
            ("degraded_rtt_factor", self.degraded_rtt_factor > 1.0),
            ("degraded_rtt_floor_s", self.degraded_rtt_floor_s >= 0.0),
            ("critical_silent_rtos", self.critical_silent_rtos > 0.0),
            ("silence_rto_cap_s", self.silence_rto_cap_s > 0.0),
            ("min_rto_s", 0.0 < self.min_rto_s <= self.initial_rto_s),
            ("reliability_window_s", self.reliability_window_s > 0.0),
            ("latency_reference_s", self.latency_reference_s > 0.0),
            ("prior_weight_samples", self.prior_weight_samples >= 0),
        )
        for name, ok in checks:
            if not ok:
                raise CoordinatorError(CoordinatorReason.BAD_SETTINGS, f"{name} is out of range in {self!r}")
