"""A virtual UDP network with virtual time (pion's vnet, trio's fake net): public servers, hosts
on the public segment, and hosts behind ``VirtualNat`` routers.

- ``add_server(model)``: anything with ``addresses`` and ``receive(data, src, dst, now)`` returning
  ``Datagram``s (``StunServerModel`` and its extensions).
- ``add_nat(nat, lan_prefix)``: a router; hosts on it get addresses from ``lan_prefix``.
- ``send(src, dst, data)``: a host sends; the datagram reaches its destination after ``latency``
  (one way), through the sender's NAT (outbound) and the receiver's NAT (inbound, or hairpin).
- ``run_until(t)`` delivers everything due by ``t`` in time order; datagrams for hosts are
  collected in ``inbox`` as (time, socket endpoint, Datagram) until taken with ``take``.
- Faults: ``drop`` and ``duplicate`` are predicates over (Datagram, hop) that a test sets; hop is
  ``"out"`` (leaving a host or server) — so "lose the first change request" is one line.
- Private addresses are not routed (RFC 1918 §3 shape): a datagram to a LAN address reaches it only
  from a host on that same LAN, directly and untranslated; from anywhere else it is lost.
- NAT mapping timeouts (``VirtualNat.timeout``) run on this network's virtual clock.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from tests.fakes.stun_server import Datagram, Endpoint, IPAddress
from tests.fakes.vnat import VirtualNat


class ServerModel(Protocol):
    @property
    def addresses(self) -> tuple[Endpoint, ...]: ...

    def receive(self, data: bytes, src: Endpoint, dst: Endpoint, now: float) -> list[Datagram]: ...


@dataclass(order=True)
class _Event:
    at: float
    seq: int
    datagram: Datagram = field(compare=False)


@dataclass
class VirtualNetwork:
    latency: float = 0.005  # one way, seconds
    now: float = 0.0
    drop: Callable[[Datagram], bool] = lambda _d: False
    duplicate: Callable[[Datagram], bool] = lambda _d: False
    inbox: list[tuple[float, Endpoint, Datagram]] = field(default_factory=list)
    sent: list[Datagram] = field(default_factory=list)  # every datagram put on the wire, as sent
    _servers: dict[Endpoint, ServerModel] = field(default_factory=dict)
    _nats: dict[IPAddress, VirtualNat] = field(default_factory=dict)  # by WAN address
    _lans: list[tuple[ipaddress.IPv4Network, VirtualNat]] = field(default_factory=list)
    _queue: list[_Event] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def add_server(self, model: ServerModel) -> None:
        for address in model.addresses:
            self._servers[address] = model

    def add_nat(self, nat: VirtualNat, lan: str) -> None:
        self._nats[nat.wan] = nat
        self._lans.append((ipaddress.IPv4Network(lan), nat))

    def _nat_of(self, ip: IPAddress) -> VirtualNat | None:
        for net, nat in self._lans:
            if ip in net:
                return nat
        return None

    def send(self, src: Endpoint, dst: Endpoint, data: bytes) -> None:
        self._emit(Datagram(src, dst, data))

    def _emit(self, datagram: Datagram) -> None:
        self.sent.append(datagram)
        if self.drop(datagram):
            return
        copies = 2 if self.duplicate(datagram) else 1
        for _ in range(copies):
            heapq.heappush(self._queue, _Event(self.now + self.latency, next(self._seq), datagram))

    def _deliver(self, datagram: Datagram) -> None:
        src, dst = datagram.src, datagram.dst
        nat = self._nat_of(src[0])
        dst_nat = self._nat_of(dst[0])
        if dst_nat is not None:
            if dst_nat is nat:
                self.inbox.append((self.now, dst, datagram))
            return
        if nat is not None:
            if dst[0] == nat.wan:
                if not nat.hairpin:
                    return
                external = nat.outbound(src, dst, self.now)
                internal = nat.inbound(external, dst, self.now) if external is not None else None
                if external is not None and internal is not None:
                    self.inbox.append((self.now, internal, Datagram(external, internal, datagram.data)))
                return
            translated = nat.outbound(src, dst, self.now)
            if translated is None:
                return
            src = translated
        server = self._servers.get(dst)
        if server is not None:
            for answer in server.receive(datagram.data, src, dst, self.now):
                self._emit(answer)
            return
        inner = self._nats.get(dst[0])
        if inner is not None:
            internal = inner.inbound(src, dst, self.now)
            if internal is None:
                return
            dst = internal
        self.inbox.append((self.now, dst, Datagram(src, dst, datagram.data)))

    def next_delivery(self) -> float | None:
        return self._queue[0].at if self._queue else None

    def run_until(self, t: float) -> None:
        while self._queue and self._queue[0].at <= t:
            event = heapq.heappop(self._queue)
            self.now = event.at
            self._deliver(event.datagram)
        self.now = max(self.now, t)

    def take(self) -> list[tuple[float, Endpoint, Datagram]]:
        out, self.inbox = self.inbox, []
        return out
