"""Drive a ``NatProbe`` over a ``VirtualNetwork`` in virtual time (the in-memory driver).

STUN over TCP is modelled as a reliable exchange with the server model that answers after one
round trip (``tcp="answer"``), is refused at once (``"refuse"``), or never answers (``"silent"``);
NATs do not touch it, which is exactly the udp-blocked case.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from node.proto.natprobe.probe import NatProbe, ProbeServer, ProbeTiming, sockets_needed
from node.proto.natprobe.types import NatReport
from tests.fakes.stun_server import Endpoint, StunServerModel
from tests.fakes.vnet import VirtualNetwork

BASE_PORT = 50000


def host_sockets(host: ipaddress.IPv4Address, count: int) -> list[Endpoint]:
    return [(host, BASE_PORT + i) for i in range(sockets_needed(count))]


def run_probe(
    net: VirtualNetwork,
    host: ipaddress.IPv4Address,
    servers: Sequence[ProbeServer],
    *,
    timing: ProbeTiming | None = None,
    models: Sequence[StunServerModel] = (),
    tcp: str = "answer",
    inject: Callable[[NatProbe, float], None] | None = None,
) -> tuple[NatReport, NatProbe]:
    local = host_sockets(host, len(servers))
    probe = NatProbe(servers, local, net.now, timing)
    by_address = {address: model for model in models for address in model.addresses}
    tcp_due: list[tuple[float, int, bytes | None]] = []
    for _ in range(100_000):
        if inject is not None:
            inject(probe, net.now)
        for out in probe.datagrams_to_send(net.now):
            net.send(local[out.socket], out.destination, out.data)
        for check in probe.tcp_checks_to_start():
            model = by_address.get(check.destination)
            if tcp == "refuse" or model is None:
                tcp_due.append((net.now, check.server_index, None))
            elif tcp == "answer":
                [answer] = model.receive(check.request, (host, 60000), check.destination, net.now)
                tcp_due.append((net.now + 2 * net.latency, check.server_index, answer.data))
        if probe.finished:
            break
        timer = probe.get_timer()
        candidates = [t for t in (timer, net.next_delivery(), *(d[0] for d in tcp_due)) if t is not None]
        net.run_until(max(net.now, min(candidates)))
        for _, endpoint, datagram in net.take():
            if endpoint in local:
                probe.receive_datagram(local.index(endpoint), datagram.data, datagram.src, net.now)
        for due in [d for d in tcp_due if d[0] <= net.now]:
            tcp_due.remove(due)
            if due[2] is None:
                probe.tcp_failed(due[1], net.now)
            else:
                probe.receive_tcp(due[1], due[2], net.now)
        timer = probe.get_timer()
        if timer is not None and timer <= net.now:
            probe.handle_timer(net.now)
    event = probe.next_event()
    assert event is not None, "the probe never finished"
    return event.report, probe
