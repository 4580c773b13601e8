"""The extra sockets of a birthday target (sockets 1..n-1 of the punch; 0 is the node's port).

The hard side opens one NAT mapping per socket towards the easy side (node.proto.punch.guesses says
why 256). Each is bound to the node's own address, port 0, through the caller's ``SocketFactory``
(the lab opens them inside a host's namespace), read by the loop's reader callback, and written
directly: a failed send on one of them is a lost probe, counted, never fatal.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import Any

from node.os_errors import os_reason
from node.proto.vocabulary import IpEndpoint, TransportReason
from node.transports.base import SocketFactory, TransportUsageError

log = logging.getLogger(__name__)

READS = 16  # datagrams read from one socket per readiness: checks are small and few
RECEIVE_SIZE = 2048  # a check is at most 542 bytes; anything longer is malformed anyway

# (socket index, datagram, source)
Receiver = Callable[[int, bytes, IpEndpoint], None]


class ExtraSockets:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        factory: SocketFactory,
        local: IpEndpoint,
        count: int,
        receive: Receiver,
    ) -> None:
        self._loop = loop
        self._receive = receive
        self._family = socket.AF_INET6 if local.ip.version == 6 else socket.AF_INET
        self._socks: dict[int, socket.socket] = {}
        self.send_errors = 0
        try:
            for index in range(1, count + 1):
                self._open(factory, local, index)
        except BaseException:
            self.close()
            raise

    def _open(self, factory: SocketFactory, local: IpEndpoint, index: int) -> None:
        try:
            sock = factory(self._family, socket.SOCK_DGRAM)
        except OSError as exc:
            raise TransportUsageError(
                TransportReason.TOO_MANY_CONNECTIONS,
                f"cannot open extra UDP socket {index} for a birthday punch: {os_reason(exc)}",
            ) from exc
        try:
            sock.setblocking(False)
            sock.bind((str(local.ip), 0))
        except OSError as exc:
            sock.close()
            raise TransportUsageError(
                TransportReason.TOO_MANY_CONNECTIONS,
                f"cannot bind extra UDP socket {index} to {local.ip}: {os_reason(exc)}",
            ) from exc
        self._socks[index] = sock
        self._loop.add_reader(sock.fileno(), self._read, index, sock)

    def ports(self) -> dict[int, int]:
        """Socket index -> its local port (what the peer sees without a NAT)."""
        return {index: int(sock.getsockname()[1]) for index, sock in self._socks.items()}

    def __len__(self) -> int:
        return len(self._socks)

    def _read(self, index: int, sock: socket.socket) -> None:
        for _ in range(READS):
            try:
                data, addr = sock.recvfrom(RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # a queued ICMP error (a probe to a closed port): not fatal
                log.debug("punch socket %d: %s", index, os_reason(exc))
                return
            self._receive(index, data, _endpoint(addr))
            if index not in self._socks:  # the receiver took or closed it
                return

    def send(self, index: int, data: bytes, destination: IpEndpoint) -> None:
        sock = self._socks.get(index)
        if sock is None:  # closed after the outcome: a late answer goes nowhere
            self.send_errors += 1
            return
        try:
            sock.sendto(data, _address(self._family, destination))
        except OSError as exc:
            self.send_errors += 1
            log.debug("punch socket %d: send to %s failed: %s", index, destination, os_reason(exc))

    def detach(self, index: int) -> socket.socket:
        """Stop reading socket ``index`` and hand it over (to the UDP transport's ``adopt``)."""
        sock = self._socks.pop(index)
        self._loop.remove_reader(sock.fileno())
        return sock

    def close(self) -> None:
        for sock in self._socks.values():
            self._loop.remove_reader(sock.fileno())
            sock.close()
        self._socks.clear()


def _address(family: int, destination: IpEndpoint) -> tuple[Any, ...]:
    if family == socket.AF_INET6 and destination.ip.version == 4:
        return (f"::ffff:{destination.ip}", destination.port, 0, 0)  # a dual-stack socket
    return (str(destination.ip), destination.port)


def _endpoint(addr: tuple[Any, ...]) -> IpEndpoint:
    ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return IpEndpoint(ip, int(addr[1]))
