"""The node's Prometheus metrics: one CollectorRegistry per node (never the process-global one, so
two nodes in one test process do not share counts), the API the coordinator reports through, and
a collector that reads the transports' health at scrape time.

Names follow Prometheus conventions: ``_total`` counters, base units (seconds). Label values are
bounded: ``transport`` is a TransportKind, ``outcome`` a NatOutcome, ``remote`` one per breaker
the coordinator keeps (itself bounded by the peers and servers it tracks).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from enum import Enum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node.proto.breaker import BreakerState
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
    """What the node counts. The coordinator calls ``failover``, ``path_rtt``, ``breaker`` and
    ``nat_traversal``; connections and messages per transport are the transports' own counts
    (``health()``), read at each scrape, so nothing is counted twice."""

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
        for outcome in NatOutcome:
            self._nat.labels(outcome.value)  # shown with zero counts before the first
        for kind in TransportKind:
            self._rtt.labels(kind.value)

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
        sent = CounterMetricFamily(
            "bitcraps_messages_sent",
            "Messages sent per transport, resent ones included",
            labels=("transport",),
        )
        received = CounterMetricFamily(
            "bitcraps_messages_received", "Messages received per transport", labels=("transport",)
        )
        snapshots = {h.kind: h for h in self._health()}
        for kind in TransportKind:  # every kind, zero when the node does not run it
            h = snapshots.get(kind)
            connections.add_metric((kind.value,), h.connections if h else 0)
            sent.add_metric((kind.value,), h.messages_sent if h else 0)
            received.add_metric((kind.value,), h.messages_received if h else 0)
        yield connections
        yield sent
        yield received
