"""The transports the coordinator drives, each behind one small adapter: where its current
transport is (TURN's comes and goes with its service), and which local address a path to a peer
leaves from (the ``local`` of the path's ``PathKey``, which ``link_down`` fails paths by)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from node.proto.vocabulary import Endpoint, IpEndpoint, PeerId, RelayEndpoint, TransportKind
from node.services.ble import BleService
from node.services.tcp_tls import TcpTlsService
from node.services.turn import TurnService
from node.services.udp import UdpService
from node.transports.base import Transport
from node.transports.route import endpoint_source

_RELAY_RECHECK_S = 0.1


class Carrier(ABC):
    kind: TransportKind

    @abstractmethod
    def current(self) -> Transport | None:
        """The transport to send on now (None: not up)."""

    @abstractmethod
    def local(self, peer: PeerId, endpoint: Endpoint) -> str | None:
        """The local address the path to ``peer`` at ``endpoint`` leaves from (None: unknown)."""

    @abstractmethod
    def capacity(self) -> int:
        """Connections this transport takes at most (its load is connections / capacity)."""

    @abstractmethod
    async def ping(self, peer: PeerId) -> float:
        """One round trip to ``peer`` on this transport, in seconds (raises a NodeError)."""

    async def streams(self) -> AsyncIterator[Transport]:
        """Each transport whose events to read, once it is up (one, except for TURN)."""
        transport = self.current()
        if transport is not None:
            yield transport


class UdpCarrier(Carrier):
    kind = TransportKind.UDP

    def __init__(self, service: UdpService, capacity: int) -> None:
        self._service = service
        self._capacity = capacity

    def current(self) -> Transport:
        return self._service.transport

    def local(self, peer: PeerId, endpoint: Endpoint) -> str | None:
        transport = self._service.transport
        bound = transport.local
        if bound is not None and not bound.ip.is_unspecified:
            return str(bound.ip)
        ip = transport.source_of(peer)
        if ip is None and isinstance(endpoint, IpEndpoint):
            ip = endpoint_source(endpoint)
        return None if ip is None else str(ip)

    def capacity(self) -> int:
        return self._capacity

    async def ping(self, peer: PeerId) -> float:
        return await self._service.transport.ping(peer)


class TlsCarrier(Carrier):
    kind = TransportKind.TCP_TLS

    def __init__(self, service: TcpTlsService, capacity: int) -> None:
        self._service = service
        self._capacity = capacity

    def current(self) -> Transport:
        return self._service.transport

    def local(self, peer: PeerId, endpoint: Endpoint) -> str | None:
        ip = self._service.transport.local_ip(peer)
        return None if ip is None else str(ip)

    def capacity(self) -> int:
        return self._capacity

    async def ping(self, peer: PeerId) -> float:
        return await self._service.transport.ping(peer)


class TurnCarrier(Carrier):
    kind = TransportKind.TURN

    def __init__(self, service: TurnService, capacity: int) -> None:
        self._service = service
        self._capacity = capacity

    def current(self) -> Transport | None:
        return self._service.transport if self._service.up.is_set() else None

    def local(self, peer: PeerId, endpoint: Endpoint) -> str | None:
        conn = self._service.transport.relay.connection
        ip = None if conn is None else conn.local_ip
        if ip is None and isinstance(endpoint, RelayEndpoint):
            ip = endpoint_source(endpoint.server)
        return None if ip is None else str(ip)

    def capacity(self) -> int:
        return self._capacity

    async def ping(self, peer: PeerId) -> float:
        return await self._service.transport.ping(peer)

    async def streams(self) -> AsyncIterator[Transport]:
        # The service makes a new transport after a start that failed; once up, the relay
        # re-allocates by itself, so a transport's events end only when it closes.
        while True:
            await self._service.up.wait()
            transport = self._service.transport
            yield transport
            # Its events ended: it closed (``up`` cleared first). Never look again at once: a
            # closed transport's events end without waiting, which would spin the loop.
            await asyncio.sleep(_RELAY_RECHECK_S)


class BleCarrier(Carrier):
    kind = TransportKind.BLE

    def __init__(self, service: BleService) -> None:
        self._service = service

    def current(self) -> Transport:
        # Always the one transport: while BlueZ is missing it has no peers, and a send fails typed.
        return self._service.transport

    def local(self, peer: PeerId, endpoint: Endpoint) -> str | None:
        return self._service.transport.adapter_of(peer)

    def capacity(self) -> int:
        return self._service.section.max_links

    async def ping(self, peer: PeerId) -> float:
        return await self._service.transport.ping(peer)
