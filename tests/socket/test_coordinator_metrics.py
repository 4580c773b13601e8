"""The coordinator reports to NodeMetrics (its observer) on two coordinators over real loopback
transports: messages sent and received per transport kind as the coordinator counts them, path
RTT samples from health checks, each path's breaker per (transport, remote), and a failover when
the active path dies."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from node.config import CoordinatorSection, TransportSection
from node.proto.vocabulary import Priority, TransportKind
from node.services.node_metrics import NodeMetrics
from tests.socket.coordinator_nodes import config, local_node
from tests.support.tlsnodes import eventually

QUICK = config(
    transport=TransportSection(connect_timeout_s=10.0, health_check_interval_s=0.1),
    coordinator=CoordinatorSection(metric_update_interval_s=0.1),
)
COUNT = 50

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(m: NodeMetrics) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(m.render().decode())
        for s in f.samples
    }


def _value(m: NodeMetrics, name: str, **labels: str) -> float:
    return _samples(m).get((name, tuple(sorted(labels.items()))), 0.0)


async def test_the_coordinator_reports_messages_rtt_breakers_and_failovers(tmp_path: Path) -> None:
    async with local_node(tmp_path, "a", QUICK) as a, local_node(tmp_path, "b", QUICK) as b:
        ma, mb = NodeMetrics(list), NodeMetrics(list)
        a.coordinator.observer, b.coordinator.observer = ma, mb
        await a.api.connect(b.peer_id, [b.udp_uri, b.tls_uri], timeout=20)
        await eventually(lambda: len(a.coordinator.coordinator.paths(b.peer_id)) == 2)
        kind = a.active_kind(b.peer_id)
        assert kind is not None
        async with asyncio.TaskGroup() as tasks:
            for i in range(COUNT):
                tasks.create_task(a.api.send(b.peer_id, i.to_bytes(4, "big"), Priority.NORMAL))
        inbox = b.api.messages()
        for _ in range(COUNT):
            await anext(inbox)
        sent = sum(_value(ma, "bitcraps_messages_sent_total", transport=k.value) for k in TransportKind)
        assert sent >= COUNT  # resends would add to it, ACKs never
        assert _value(ma, "bitcraps_messages_sent_total", transport=kind.value) >= 1
        received = sum(
            _value(mb, "bitcraps_messages_received_total", transport=k.value) for k in TransportKind
        )
        assert received == COUNT
        # Health checks every 0.1 s: RTT samples for both kinds of path.
        for k in (TransportKind.UDP, TransportKind.TCP_TLS):
            await eventually(
                lambda k=k: _value(ma, "bitcraps_path_rtt_seconds_count", transport=k.value) >= 1
            )
        # Each path's breaker, by transport and remote.
        udp_remote = b.udp_uri.removeprefix("udp://")
        await eventually(
            lambda: ("bitcraps_breaker_state", (("remote", udp_remote), ("transport", "udp"))) in _samples(ma)
        )
        assert _value(ma, "bitcraps_breaker_state", transport="udp", remote=udp_remote) == 0
        assert _value(ma, "bitcraps_failovers_total") == 0
        # The active path dies: traffic moves, one failover.
        if kind is TransportKind.UDP:
            await a.udp.transport.disconnect(b.peer_id)
        else:
            await a.tls.transport.disconnect(b.peer_id)
        await eventually(lambda: _value(ma, "bitcraps_failovers_total") == 1)
        assert a.coordinator.status().counters.failovers == 1
        # The dead path's breaker series goes with it (labels stay bounded).
        gone = udp_remote if kind is TransportKind.UDP else b.tls_uri.removeprefix("tls://")
        await eventually(
            lambda: (
                not any(
                    name == "bitcraps_breaker_state" and ("remote", gone) in labels
                    for name, labels in _samples(ma)
                )
            )
        )
