"""NodeMetrics, the API the coordinator reports through: each call shows in the exposition, every
transport kind and NAT outcome is there with zero counts before the first, and a node's registry
is its own."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from node.proto.breaker import BreakerState
from node.proto.vocabulary import TransportHealth, TransportKind, TransportState
from node.services.node_metrics import NatOutcome, NodeMetrics


def _samples(m: NodeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(m.render().decode())
        for s in f.samples
    }


def test_the_coordinators_calls_show_in_the_exposition() -> None:
    health = [TransportHealth(TransportKind.UDP, TransportState.READY, connections=4, messages_sent=7)]
    m = NodeMetrics(lambda: health)
    m.failover()
    m.path_rtt(TransportKind.TURN, 0.03)
    m.breaker(TransportKind.TCP_TLS, "198.51.100.7:47475", BreakerState.OPEN)
    m.nat_traversal(NatOutcome.PUNCHED)
    s = _samples(m)
    assert s[("bitcraps_failovers_total", ())] == 1
    assert s[("bitcraps_path_rtt_seconds_count", (("transport", "turn"),))] == 1
    assert s[("bitcraps_path_rtt_seconds_bucket", (("le", "0.05"), ("transport", "turn")))] == 1
    assert s[("bitcraps_path_rtt_seconds_bucket", (("le", "0.025"), ("transport", "turn")))] == 0
    assert s[("bitcraps_breaker_state", (("remote", "198.51.100.7:47475"), ("transport", "tcp_tls")))] == 2
    assert s[("bitcraps_nat_traversal_total", (("outcome", "punched"),))] == 1
    assert s[("bitcraps_nat_traversal_total", (("outcome", "failed"),))] == 0
    assert s[("bitcraps_transport_connections", (("transport", "udp"),))] == 4
    # Messages as the coordinator counts them, not the transports' frames (7 here).
    assert s[("bitcraps_messages_sent_total", (("transport", "udp"),))] == 0
    assert s[("bitcraps_messages_received_total", (("transport", "ble"),))] == 0  # not run: zero
    m.message_sent(TransportKind.UDP)
    m.message_received(TransportKind.TCP_TLS)
    s = _samples(m)
    assert s[("bitcraps_messages_sent_total", (("transport", "udp"),))] == 1
    assert s[("bitcraps_messages_received_total", (("transport", "tcp_tls"),))] == 1
    health[0] = TransportHealth(TransportKind.UDP, TransportState.READY, connections=1)
    assert _samples(m)[("bitcraps_transport_connections", (("transport", "udp"),))] == 1  # read at scrape
    m.forget_breaker(TransportKind.TCP_TLS, "198.51.100.7:47475")
    m.forget_breaker(TransportKind.TCP_TLS, "never-seen")
    assert not any(name == "bitcraps_breaker_state" for name, _ in _samples(m))


def test_two_nodes_in_one_process_count_apart() -> None:
    a, b = NodeMetrics(list), NodeMetrics(list)
    a.failover()
    assert _samples(b)[("bitcraps_failovers_total", ())] == 0
