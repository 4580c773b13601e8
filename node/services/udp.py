"""The node's UDP port: answers STUN Binding requests (and, later, carries the UDP transport).

A thin asyncio layer over ``proto.stun.responder``: datagram in, response out. Nothing received
here can raise into the event loop: each datagram is handled behind the service's
``ConnectionIsolation`` wall, so a bug one datagram trips is logged, counted and forgotten.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, cast

from node.config import Config
from node.errors import LocalError
from node.os_errors import os_reason
from node.proto.stun.responder import BindingResponder, Outcome
from node.proto.vocabulary import IpEndpoint, TransportState
from node.services.service import TransportService
from node.transports.isolation import ConnectionIsolation

log = logging.getLogger(__name__)


class BindError(LocalError):
    """The UDP port could not be bound (in use, no such address, not permitted)."""

    def __init__(self, address: str, port: int, reason: str) -> None:
        super().__init__(f"cannot bind UDP {address} port {port}: {reason}")
        self.address = address
        self.port = port


@dataclass(frozen=True, slots=True)
class UdpView:
    """What ``status`` shows of the UDP port: under ``udp`` the datagrams whose handling failed (a
    bug the wall contained), by exception type; under ``stun`` every datagram by its outcome."""

    outcomes: tuple[tuple[Outcome, int], ...]  # every Outcome, zeros included
    faults: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"faults": self.faults}

    def stun_json(self) -> dict[str, int]:
        return {outcome.value: count for outcome, count in self.outcomes}


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, responder: BindingResponder) -> None:
        self.responder = responder
        self.wall = ConnectionIsolation("udp")
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport is not an asyncio.DatagramTransport subclass, only shaped like one.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.wall.call(self._answer, f"datagram from {addr[0]}", data, addr)

    def _answer(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a v4 peer on a dual-stack socket: report the address it knows
        outcome, response = self.responder.handle(data, (ip, int(addr[1])))
        if response is not None and self.transport is not None:
            self.transport.sendto(response, addr)
        elif outcome is Outcome.MALFORMED:
            log.debug("dropped malformed STUN datagram from %s", addr[0])

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable from a peer that left) surface here; they are not fatal.
        log.debug("UDP error: %s", exc)


class UdpService(TransportService[UdpView]):
    """``async with UdpService(config) as udp:`` binds ``node.listen_address`` port
    ``node.udp_port`` and serves until exit."""

    name = "udp"

    def __init__(self, config: Config, *, responder: BindingResponder | None = None) -> None:
        super().__init__()
        self._address = config.node.listen_address
        self._port = config.node.udp_port
        if responder is None:
            responder = BindingResponder(config.node.software)
        self._protocol = _Protocol(responder)
        self._transport: asyncio.DatagramTransport | None = None
        self._state = TransportState.STOPPED

    @property
    def responder(self) -> BindingResponder:
        return self._protocol.responder

    @property
    def state(self) -> TransportState:
        return self._state

    def status(self) -> UdpView:
        counters = self._protocol.responder.counters
        return UdpView(tuple((o, counters[o]) for o in Outcome), self._protocol.wall.snapshot())

    @property
    def local(self) -> IpEndpoint:
        if self._transport is None:
            raise LocalError("UDP service is not running")
        sockname = self._transport.get_extra_info("sockname")
        return IpEndpoint(ipaddress.ip_address(sockname[0]), int(sockname[1]))

    @property
    def listen_url(self) -> str:
        return f"udp://{self.local}"

    async def _start(self, stack: AsyncExitStack) -> None:
        self._state = TransportState.STARTING
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ipaddress.ip_address(self._address).version == 6 else socket.AF_INET
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: self._protocol, local_addr=(self._address, self._port), family=family
            )
        except OSError as exc:
            self._state = TransportState.FAILED
            raise BindError(self._address, self._port, os_reason(exc)) from exc
        self._transport = transport
        stack.callback(self._close)
        self._state = TransportState.READY

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._state = TransportState.STOPPED
