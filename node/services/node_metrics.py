"""The node's Prometheus metrics: one CollectorRegistry per node (never the process-global one, so
two nodes in one test process do not share counts), the API the coordinator reports through, and
a collector that reads the transports' health at scrape time.

Names follow Prometheus conventions: ``_total`` counters, base units (seconds). Label values are
bounded: ``transport`` is a TransportKind, ``outcome`` a NatOutcome, ``remote`` one per breaker
the coordinator keeps (itself bounded by the peers and servers it tracks).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from enum import Enum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node.proto.breaker import BreakerState
from node.proto.coordinator import PeerView
from node.proto.vocabulary import TransportHealth, TransportKind


class NatOutcome(Enum):
    """How a direct path to a peer came about (counted by the direct-paths issue)."""

    DIRECT = "direct"  # reachable without traversal
    PUNCHED = "punched"  # a hole punch succeeded
    RELAYED = "relayed"  # only a TURN relay worked
    FAILED = "failed"


# The gauge's value per state: ordered by how bad it is, so max() over a transport means something.
BREAKER_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}

# Path round trips from loopback (~0.1 ms) to a relayed path across continents (~0.5 s) and a
# congested cellular one (seconds).
RTT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

HealthSource = Callable[[], Iterable[TransportHealth]]


class NodeMetrics:
    """What the node counts. The coordinator reports through it (it is the coordinator's
    ``CoordinatorObserver``): ``failover``, ``path_rtt``, ``message_sent``/``message_received``
    (application messages per path kind, as the coordinator counts them: resends included, ACKs
    and keepalives not), ``paths`` (each path's breaker, per transport and remote); and
    ``nat_traversal``. Connections per transport are the transports' own counts (``health()``),
    read at each scrape."""

    def __init__(self, health: HealthSource) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_HealthCollector(health))
        self._failovers = Counter(
            "bitcraps_failovers", "Times traffic to a peer moved to another path", registry=self.registry
        )
        self._breakers = Gauge(
            "bitcraps_breaker_state",
            "Circuit breaker per transport and remote: 0 closed, 1 half-open, 2 open",
            ("transport", "remote"),
            registry=self.registry,
        )
        self._rtt = Histogram(
            "bitcraps_path_rtt_seconds",
            "Measured round trip of a path",
            ("transport",),
            buckets=RTT_BUCKETS,
            registry=self.registry,
        )
        self._nat = Counter(
            "bitcraps_nat_traversal",
            "Paths to peers by how they came about",
            ("outcome",),
            registry=self.registry,
        )
        self._sent = Counter(
            "bitcraps_messages_sent",
            "Application messages sent per transport kind, resends included",
            ("transport",),
            registry=self.registry,
        )
        self._received = Counter(
            "bitcraps_messages_received",
            "Application messages received into the inbox per transport kind",
            ("transport",),
            registry=self.registry,
        )
        self._breaker_keys: set[tuple[TransportKind, str]] = set()
        for outcome in NatOutcome:
            self._nat.labels(outcome.value)  # shown with zero counts before the first
        for kind in TransportKind:
            self._rtt.labels(kind.value)
            self._sent.labels(kind.value)
            self._received.labels(kind.value)

    def failover(self) -> None:
        self._failovers.inc()

    def path_rtt(self, kind: TransportKind, seconds: float) -> None:
        self._rtt.labels(kind.value).observe(seconds)

    def breaker(self, kind: TransportKind, remote: str, state: BreakerState) -> None:
        self._breakers.labels(kind.value, remote).set(BREAKER_VALUES[state])

    def forget_breaker(self, kind: TransportKind, remote: str) -> None:
        """A remote no longer tracked: its series goes, so labels stay bounded."""
        with contextlib.suppress(KeyError):  # never set
            self._breakers.remove(kind.value, remote)

    def message_sent(self, kind: TransportKind) -> None:
        self._sent.labels(kind.value).inc()

    def message_received(self, kind: TransportKind) -> None:
        self._received.labels(kind.value).inc()

    def paths(self, peers: Sequence[PeerView]) -> None:
        """Each (transport, remote)'s breaker from the coordinator's paths (the worst state when
        several peers share a remote); a remote no longer among them is forgotten."""
        states: dict[tuple[TransportKind, str], BreakerState] = {}
        for view in peers:
            for path in view.paths:
                key = (TransportKind(path.kind), path.endpoint)
                old = states.get(key)
                if old is None or BREAKER_VALUES[path.breaker] > BREAKER_VALUES[old]:
                    states[key] = path.breaker
        for kind, remote in self._breaker_keys - states.keys():
            self.forget_breaker(kind, remote)
        for (kind, remote), state in states.items():
            self.breaker(kind, remote, state)
        self._breaker_keys = set(states)

    def nat_traversal(self, outcome: NatOutcome) -> None:
        self._nat.labels(outcome.value).inc()

    def render(self) -> bytes:
        """The text exposition format (what GET /metrics answers)."""
        return generate_latest(self.registry)


class _HealthCollector(Collector):
    def __init__(self, health: HealthSource) -> None:
        self._health = health

    def collect(self) -> Iterator[Metric]:
        connections = GaugeMetricFamily(
            "bitcraps_transport_connections",
            "Connections (UDP: sessions) per transport",
            labels=("transport",),
        )
        snapshots = {h.kind: h for h in self._health()}
        for kind in TransportKind:  # every kind, zero when the node does not run it
            h = snapshots.get(kind)
            connections.add_metric((kind.value,), h.connections if h else 0)
        yield connections
