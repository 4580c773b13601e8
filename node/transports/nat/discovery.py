"""The asyncio driver of NAT behaviour discovery: sockets, STUN over TCP, circuit breakers.

A thin layer over ``proto.natprobe``: resolve the configured servers (IPv4: NAT is an IPv4
matter), ask each server's circuit breaker whether it may be tried, open the probe's UDP sockets
bound to the address the route to the first server leaves from, feed datagrams and timers in,
send what the probe wants sent and run its STUN-over-TCP checks as tasks, with the probe's timer
on a ``CoreTimer``. The whole discovery runs under ``asyncio.timeout``. A ``NatDiscovery`` keeps
its breakers across runs, so a dead server stops costing anything once it has failed
``failure_threshold`` times in a row.

Given the node's UDP port (``port``, a ``DatagramPort``), the mapping socket is that port: the first
Binding to every server and the RFC 5780 mapping tests leave from it, their answers come back
through it by transaction id, so the mapped address reported is the mapping of the port peers
reach. The filtering tests keep fresh sockets of their own (RFC 5780 §4.4 needs a socket no
mapping test has opened a hole from). Without a port (the ``nat`` command) every socket is fresh.

``socket_factory`` makes every socket (the lab passes one that makes them in a host's network
namespace); it is called with (family, type) and must return an unbound socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ipaddress
import logging
import socket
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self

from node.errors import LocalError
from node.os_errors import os_reason
from node.proto import stun
from node.proto.addresses import parse_host_port
from node.proto.breaker import BreakerFactory, CircuitBreaker
from node.proto.natprobe.probe import (
    MAPPING_SOCKET,
    NatProbe,
    ProbeServer,
    ProbeTiming,
    TcpCheck,
    sockets_needed,
)
from node.proto.natprobe.types import ANSWERED_OUTCOMES, Endpoint, NatReport
from node.proto.vocabulary import IpEndpoint
from node.transports import resolver
from node.transports.base import SocketFactory
from node.transports.port import DatagramPort
from node.transports.timer import CoreTimer

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT_S = 2.0
TCP_READ_BYTES = 4096


class DiscoveryError(LocalError):
    """Discovery could not run at all (no usable local socket, a bad server string)."""


def _default_factory(family: int, type_: int) -> socket.socket:
    return socket.socket(family, type_)


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, index: int, deliver: Callable[[int, bytes, Endpoint], None]) -> None:
        self._index = index
        self._deliver = deliver

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            source = (ipaddress.ip_address(str(addr[0])), int(addr[1]))
        except ValueError:
            return
        self._deliver(self._index, data, source)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a dead server: its silence is what the probe measures.
        log.debug("discovery socket %d: %s", self._index, exc)


class NatDiscovery:
    """``await NatDiscovery(servers, timing, breaker).run()`` -> ``NatReport``."""

    def __init__(
        self,
        servers: Sequence[str],
        timing: ProbeTiming,
        breaker: BreakerFactory = CircuitBreaker,
        *,
        socket_factory: SocketFactory = _default_factory,
        port: DatagramPort | None = None,
    ) -> None:
        parsed = []
        for server in servers:
            host_port = parse_host_port(server)
            if host_port is None:
                raise DiscoveryError(f"not 'host:port': {server!r}")
            parsed.append((server, host_port))
        self._servers = tuple(parsed)
        # A hairpin Binding to the port's mapping would reach the node's own STUN responder, which
        # answers it instead of letting the probe see it arrive: the check needs fresh sockets.
        self._timing = timing if port is None else dataclasses.replace(timing, hairpin=False)
        self._port = port
        self.breakers = {label: breaker() for label, _ in parsed}
        self._factory = socket_factory

    async def run(self) -> NatReport:
        """One discovery. Raises ``DiscoveryError`` when it cannot run at all (no socket could
        be opened); a discovery in which nobody answered is a report (``answered`` False)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(self._timing.deadline + RESOLVE_TIMEOUT_S + 1.0):
                addresses = await self._resolve_all()
                port, source = self._port_and_source(addresses)
                async with _Sockets(self._factory, source) as sockets:
                    # Sockets first, breakers second: a call a breaker admits is always recorded.
                    await sockets.open(sockets_needed(len(addresses)), port)
                    now = loop.time()
                    specs = [
                        ProbeServer(label, address, address is not None and self.breakers[label].allow(now))
                        for (label, _), address in zip(self._servers, addresses, strict=True)
                    ]
                    report = await self._probe(specs, sockets)
        # TimeoutError first: it is an OSError too, and was reported as a socket failure with
        # an empty reason.
        except TimeoutError as exc:  # the probe ends by its own deadline; this is the backstop
            raise DiscoveryError("discovery overran its deadline") from exc
        except OSError as exc:  # no socket (EMFILE, ENOBUFS, a namespace gone)
            raise DiscoveryError(f"cannot open discovery sockets: {os_reason(exc)}") from exc
        now = loop.time()
        for spec, server in zip(specs, report.servers, strict=True):
            if spec.allowed:
                breaker = self.breakers[spec.label]
                if server.outcome in ANSWERED_OUTCOMES:
                    breaker.record_success(now)
                else:
                    breaker.record_failure(now)
        return dataclasses.replace(report, elapsed=now - started)  # name resolution included

    async def _resolve_all(self) -> list[Endpoint | None]:
        async with asyncio.TaskGroup() as tasks:
            jobs = [tasks.create_task(self._resolve(host, port)) for _, (host, port) in self._servers]
        return [job.result() for job in jobs]

    async def _resolve(self, host: str, port: int) -> Endpoint | None:
        try:
            return (ipaddress.IPv4Address(host), port)
        except ValueError:
            pass
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                infos = await resolver.getaddrinfo(
                    host, port, family=socket.AF_INET, socktype=socket.SOCK_DGRAM
                )
        except OSError as exc:  # socket.gaierror, or TimeoutError after RESOLVE_TIMEOUT_S
            log.info("STUN server %s:%d does not resolve: %s", host, port, os_reason(exc))
            return None
        for info in infos:
            return (ipaddress.IPv4Address(info[4][0]), port)
        return None  # pragma: no cover - getaddrinfo raises rather than answer nothing

    def _port_and_source(self, addresses: Sequence[Endpoint | None]) -> tuple[DatagramPort | None, str]:
        """The port to map (None: a fresh socket) and the address the other sockets bind to."""
        port = self._port
        if port is None:
            return None, self._source_address(addresses)
        local = port.local
        if local is None:
            raise DiscoveryError("the node's UDP port is not open")
        if local.ip.is_unspecified:
            return port, self._source_address(addresses)
        if local.ip.version == 4:
            return port, str(local.ip)
        # Bound to one IPv6 address, the port cannot reach IPv4 servers (NAT is an IPv4 matter).
        log.info("NAT discovery uses its own socket: the UDP port is bound to %s", local.ip)
        return None, self._source_address(addresses)

    def _source_address(self, addresses: Sequence[Endpoint | None]) -> str:
        """The address the route to the first server leaves from: sockets bound to it report a
        concrete local address, so "mapped address equals the local one" can be seen."""
        target = next((a for a in addresses if a is not None), None)
        if target is None:
            return "0.0.0.0"
        sock = self._factory(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.connect((str(target[0]), target[1]))
            return str(sock.getsockname()[0])
        except OSError:
            return "0.0.0.0"  # no route: every send will fail the same way, and be reported
        finally:
            sock.close()

    async def _probe(self, specs: Sequence[ProbeServer], sockets: _Sockets) -> NatReport:
        loop = asyncio.get_running_loop()
        probe = NatProbe(specs, sockets.local, loop.time(), self._timing)
        finished: asyncio.Future[None] = loop.create_future()
        tcp_tasks: set[asyncio.Task[None]] = set()
        async with asyncio.TaskGroup() as tasks:

            def flush() -> None:
                """Send what the probe wants sent, start its TCP checks. Runs in callbacks (a
                datagram, the timer, a TCP check's end): an error goes to the awaiting ``run``."""
                if finished.done():
                    return
                try:
                    for out in probe.datagrams_to_send(loop.time()):
                        sockets.senders[out.socket](out.data, out.destination)
                    for check in probe.tcp_checks_to_start():
                        task = tasks.create_task(self._tcp_check(probe, check, sockets, after_input))
                        tcp_tasks.add(task)
                        task.add_done_callback(tcp_tasks.discard)
                except Exception as exc:  # not swallowed: raised by the await below
                    finished.set_exception(exc)
                    return
                if probe.finished:
                    finished.set_result(None)

            timer = CoreTimer(loop, probe.get_timer, probe.handle_timer, flush)

            def after_input() -> None:
                flush()
                timer.rearm()

            sockets.deliver_to(probe, after_input)
            try:
                after_input()
                await finished
            finally:
                timer.close()
                for task in tcp_tasks:
                    task.cancel()
        event = probe.next_event()
        assert event is not None  # finished means the event is queued
        return event.report

    async def _tcp_check(
        self, probe: NatProbe, check: TcpCheck, sockets: _Sockets, after_input: Callable[[], None]
    ) -> None:
        """One Binding over TCP (RFC 8489 §6.2.2), framed with the stream framer."""
        loop = asyncio.get_running_loop()
        sock: socket.socket | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            sock = self._factory(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            if sockets.source != "0.0.0.0":
                sock.bind((sockets.source, 0))
            ip, port = check.destination
            await loop.sock_connect(sock, (str(ip), port))
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(check.request)
            await writer.drain()
            framer = stun.StreamFramer()
            while True:
                data = await reader.read(TCP_READ_BYTES)
                if not data:
                    raise ConnectionError("closed before an answer")
                framer.feed(data)
                frame = framer.next_frame()
                if isinstance(frame, stun.StunFrame):
                    probe.receive_tcp(check.server_index, frame.raw, loop.time())
                    return
        except (OSError, stun.StunDecodeError, stun.StreamOverflowError) as exc:
            log.debug("STUN over TCP to %s failed: %s", check.destination, exc)
            probe.tcp_failed(check.server_index, loop.time())
        finally:
            after_input()
            if writer is not None:
                writer.close()
            elif sock is not None:
                sock.close()


class _Sockets:
    """The probe's UDP sockets, bound to ``source``, open for one discovery; the mapping socket
    may be the node's port instead."""

    def __init__(self, factory: SocketFactory, source: str) -> None:
        self._factory = factory
        self.source = source
        self.senders: list[Callable[[bytes, Endpoint], None]] = []
        self.local: list[Endpoint] = []
        self._probe: NatProbe | None = None
        self._after_input: Callable[[], None] = _nothing
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def open(self, count: int, port: DatagramPort | None) -> None:
        loop = asyncio.get_running_loop()
        first = 0
        if port is not None:
            local = port.local
            if local is None:
                raise DiscoveryError("the node's UDP port closed")
            # Bound to the unspecified address, the port sends from the route's source address.
            ip = ipaddress.ip_address(self.source) if local.ip.is_unspecified else local.ip
            self.senders.append(functools.partial(self._send_from_port, port, set()))
            self.local.append((ip, local.port))
            first = MAPPING_SOCKET + 1
        for index in range(first, count):
            sock = self._factory(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind((self.source, 0))
                transport, _ = await loop.create_datagram_endpoint(
                    functools.partial(_Receiver, index, self._deliver), sock=sock
                )
            except OSError:
                sock.close()
                raise
            self._stack.callback(transport.close)
            self.senders.append(functools.partial(_sendto, transport))
            name = sock.getsockname()
            self.local.append((ipaddress.ip_address(name[0]), int(name[1])))

    def _send_from_port(self, port: DatagramPort, expected: set[bytes], data: bytes, to: Endpoint) -> None:
        tid = data[8:20]  # RFC 8489 §5: the transaction id; a retransmission repeats it
        if tid not in expected:
            expected.add(tid)
            port.expect_stun(tid, self._from_port)
            self._stack.callback(port.forget_stun, tid)
        port.send_datagram(data, IpEndpoint(to[0], to[1]))

    def _from_port(self, data: bytes, src: IpEndpoint) -> None:
        self._deliver(MAPPING_SOCKET, data, (src.ip, src.port))

    def deliver_to(self, probe: NatProbe, after_input: Callable[[], None]) -> None:
        self._probe = probe
        self._after_input = after_input

    def _deliver(self, index: int, data: bytes, src: Endpoint) -> None:
        if self._probe is not None:  # nothing is sent before the probe exists
            self._probe.receive_datagram(index, data, src, asyncio.get_running_loop().time())
            self._after_input()


def _sendto(transport: asyncio.DatagramTransport, data: bytes, to: Endpoint) -> None:
    transport.sendto(data, (str(to[0]), to[1]))


def _nothing() -> None:
    pass
