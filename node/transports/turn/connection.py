"""One TURN allocation over UDP, TCP or TLS: the thin asyncio layer around ``node.proto.turn.client``.

``async with TurnConnection(server, credentials) as conn:`` connects, allocates (raising a typed
``TurnError`` when it cannot), and on exit releases the allocation (Refresh with LIFETIME 0,
bounded by ``close_timeout``) and closes the socket. In between, ``send(peer, data)`` relays at
once (it never blocks), received data goes to ``on_data`` (or the ``recv()`` queue), and when the
allocation is lost (a refresh unanswered, the stream closed) ``lost`` completes with the error.

Over TCP/TLS one protocol object feeds the core. Over UDP the connected socket is read directly
(``loop.add_reader``): each readiness drains up to ``READ_BATCH`` datagrams, and ChannelData on a
bound channel goes from ``recv`` to ``on_data`` through the core's ``receive_channel_data`` with
no event, timer or address work (the socket is connected: every datagram is the server's); data
to a peer with a live permission goes from ``encode_data`` straight to ``send``. Data sent from
``on_data`` during a drain (an echo, a reply) is held until the drain ends, then written in as
few system calls as UDP segmentation offload allows (``node.transports.udp_batch``). The core's
timer is a ``CoreTimer`` (one ``loop.call_at``), re-armed after every other input, and after a
fast-path send or drain only when the core says its timer moved (the first send after a
liveness check arms the next one: ``node.proto.turn.liveness``, how a server that fell silent is
found). No task is started, so nothing can be left behind.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from node.os_errors import os_reason
from node.proto.stun.channeldata import is_channel_data
from node.proto.stun.transaction import Timing
from node.proto.turn.client import DEFAULT_LIFETIME, AllocationState, TurnClient, TurnCounters, TurnTiming
from node.proto.turn.credentials import Credentials
from node.proto.turn.errors import TurnError, TurnUnreachableError
from node.proto.turn.events import (
    Address,
    Allocated,
    AllocationFailed,
    AllocationLost,
    ChannelBound,
    Closed,
    DataReceived,
    PermissionFailed,
    PermissionInstalled,
    TurnEvent,
)
from node.proto.turn.liveness import DEFAULT_LIVENESS, Liveness
from node.proto.turn.uri import TurnServerAddress, TurnTransport
from node.transports import resolver
from node.transports.base import SocketFactory
from node.transports.timer import CoreTimer
from node.transports.udp_batch import BatchWriter

log = logging.getLogger(__name__)

DataHandler = Callable[[Address, bytes], None]
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_CLOSE_TIMEOUT = 2.0
RECV_QUEUE_MAX = 4096
READ_BATCH = 64  # datagrams read per readiness before the loop serves others
# Held writes go out every this many: a batch for the offload, yet the first of a long drain
# does not wait for the last, and the path downstream works while we read on.
HOLD_MAX = 16
RECV_SIZE = 65535  # a UDP datagram's largest payload: never truncated
UDP_RECEIVE_BUFFER = 1 << 20  # asked for; the kernel caps it at net.core.rmem_max
_T = TypeVar("_T")


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verifying client context: the given CA file, else the system's trust store."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class _Protocol(asyncio.Protocol):
    """Stream bytes from the server into the core."""

    def __init__(self, owner: TurnConnection) -> None:
        self.owner = owner

    def data_received(self, data: bytes) -> None:
        self.owner._input(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._connection_lost()


class TurnConnection:
    def __init__(
        self,
        server: TurnServerAddress,
        credentials: Credentials,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timing: Timing | None = None,
        turn_timing: TurnTiming | None = None,
        requested_lifetime: int | None = DEFAULT_LIFETIME,
        use_channels: bool = True,
        socket_factory: SocketFactory | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        on_data: DataHandler | None = None,
        software: str = "",
        liveness: Liveness = DEFAULT_LIVENESS,
    ) -> None:
        self.server = server
        self._ssl = ssl_context
        self._server_hostname = server_hostname
        self._socket_factory = socket_factory or socket.socket
        self._connect_timeout = connect_timeout
        self._close_timeout = close_timeout
        stream = server.transport is not TurnTransport.UDP
        self.client = TurnClient(
            credentials,
            stream=stream,
            timing=timing,
            turn_timing=turn_timing or TurnTiming(),
            requested_lifetime=requested_lifetime,
            software=software,
            use_channels=use_channels,
            liveness=liveness,
        )
        self._on_data = on_data
        self._queue: asyncio.Queue[DataReceived] = asyncio.Queue(RECV_QUEUE_MAX)
        self.dropped_recv_queue_full = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._timer: CoreTimer | None = None
        self._allocated: asyncio.Future[Allocated] | None = None
        self._closed: asyncio.Future[None] | None = None
        self.lost: asyncio.Future[TurnError] | None = None
        self.permission_failures: list[PermissionFailed] = []
        self._ready: dict[Address, asyncio.Future[None]] = {}
        self._send: Callable[[bytes], object] = _no_send
        self._sock: socket.socket | None = None  # UDP: read and written directly
        self._batch: BatchWriter | None = None
        self._held: list[bytes] | None = None  # UDP data sent during a drain, written after it
        self.dropped_send_blocked = 0  # UDP: the socket's send buffer was full
        self.lost_locally = False  # the loss was ours (``network_lost``), not the server's

    # -- properties -------------------------------------------------------------------------------
    @property
    def relayed(self) -> Address:
        if self.client.relayed is None:
            raise TurnUnreachableError("no allocation")
        return self.client.relayed

    @property
    def mapped(self) -> Address | None:
        return self.client.mapped

    @property
    def lifetime(self) -> int:
        return self.client.lifetime

    @property
    def counters(self) -> TurnCounters:
        return self.client.counters

    @property
    def alive(self) -> bool:
        return self.client.state is AllocationState.ALLOCATED

    @property
    def local_ip(self) -> IPv4Address | IPv6Address | None:
        """The local address the connection to the server leaves from (None before it exists)."""
        if self._sock is not None:
            name = self._sock.getsockname()
        elif self._transport is not None:
            name = self._transport.get_extra_info("sockname")
        else:
            return None
        if not isinstance(name, tuple) or not name:
            return None
        try:
            return ip_address(str(name[0]).split("%", 1)[0])
        except ValueError:
            return None

    def network_lost(self) -> None:
        """The local address under the connection is gone (the link monitor says so): the
        allocation is lost now, not after refreshes go unanswered, so the relay re-allocates
        from an address that works."""
        if self._loop is None:
            return
        self.lost_locally = True
        self.client.connection_lost(
            self._loop.time(),
            TurnUnreachableError(f"{self.server}: the local address {self.local_ip} is gone"),
        )
        self._flush()

    # -- lifecycle --------------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        loop = self._loop = asyncio.get_running_loop()
        self._timer = CoreTimer(loop, self.client.get_timer, self.client.handle_timer, self._flush)
        self._allocated = loop.create_future()
        self._closed = loop.create_future()
        self.lost = loop.create_future()
        try:
            await self._connect(loop)
            self.client.allocate(loop.time())
            self._flush()
            allocated = await self._allocated
        except BaseException:
            self._abort()
            raise
        log.debug("allocated %s on %s", allocated.relayed, self.server)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._loop is not None and self.client.state is AllocationState.ALLOCATED:
                self.client.close(self._loop.time())
                self._flush()
                assert self._closed is not None
                try:
                    async with asyncio.timeout(self._close_timeout):
                        await asyncio.shield(self._closed)
                except TimeoutError:
                    log.debug("no answer to the release on %s", self.server)
        finally:
            self._abort()

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        server = self.server
        try:
            async with asyncio.timeout(self._connect_timeout):
                infos = await resolver.getaddrinfo(server.host, server.port, socktype=socket.SOCK_STREAM)
                family, _, _, _, address = infos[0]
                if server.transport is TurnTransport.UDP:
                    sock = self._socket_factory(family, socket.SOCK_DGRAM)
                    sock.setblocking(False)
                    try:
                        # Every peer's traffic shares this one socket: room for bursts.
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
                        sock.connect(address)
                        loop.add_reader(sock.fileno(), self._readable)
                    except BaseException:
                        sock.close()
                        raise
                    self._sock = sock
                    self._batch = BatchWriter(sock, self._batch_failed)
                    self._send = sock.send
                else:
                    sock = self._socket_factory(family, socket.SOCK_STREAM)
                    sock.setblocking(False)
                    try:
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        await loop.sock_connect(sock, address)
                        tls = server.transport is TurnTransport.TLS
                        context = (self._ssl or tls_context(None)) if tls else None
                        hostname = (self._server_hostname or server.host) if tls else None
                        stream_transport, _ = await loop.create_connection(
                            lambda: _Protocol(self), sock=sock, ssl=context, server_hostname=hostname
                        )
                    except BaseException:
                        sock.close()
                        raise
                    self._send = stream_transport.write
                    self._transport = stream_transport
        except TimeoutError as exc:
            raise TurnUnreachableError(f"{server}: connect timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise TurnUnreachableError(f"{server}: {os_reason(exc)}") from exc

    def _abort(self) -> None:
        if self._timer is not None:
            self._timer.close()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._batch = None
        self._held = None
        if self._sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        self._send = _no_send
        for future in (self._allocated, self._closed):
            if future is not None and not future.done():
                future.cancel()

    # -- use --------------------------------------------------------------------------------------
    def send(self, peer: Address, data: bytes) -> None:
        """Relay ``data`` to ``peer`` (queued in the core until its permission is installed)."""
        assert self._loop is not None
        now = self._loop.time()
        wire = self.client.encode_data(peer, data, now)
        if wire is not None:  # the common case: nothing but bytes to write
            held = self._held
            if held is not None:
                held.append(wire)
                if len(held) >= HOLD_MAX:
                    self._write_held()
                return  # the drain re-arms the timer when it ends
            try:
                self._send(wire)
            except OSError as exc:
                self._send_failed(exc)
            if self.client.timer_dirty:
                self._rearm()
            return
        self.client.send(peer, data, now)
        self._flush()

    def open_peer(self, peer: Address) -> None:
        assert self._loop is not None
        self.client.open_peer(peer, self._loop.time())
        self._flush()

    def refresh(self) -> None:
        """Probe the server now (a refresh); a dead one shows in ``lost``."""
        assert self._loop is not None
        self.client.refresh(self._loop.time())
        self._flush()

    async def peer_ready(self, peer: Address) -> None:
        """Wait until ``peer``'s permission is installed (after ``open_peer`` or a first
        ``send``): from then on the relay lets its datagrams in."""
        if self.client.permitted(peer, self._now()):
            return
        future = self._ready.get(peer)
        if future is None:
            future = self._ready[peer] = self._now_loop().create_future()
        await asyncio.shield(future)

    def _now_loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    def _now(self) -> float:
        return self._now_loop().time()

    async def recv(self) -> DataReceived:
        return await self._queue.get()

    # -- core plumbing ----------------------------------------------------------------------------
    def _readable(self) -> None:
        """The UDP socket is readable: drain up to READ_BATCH datagrams."""
        sock = self._sock
        client = self.client
        assert sock is not None
        held: list[bytes] = []
        self._held = held
        heard = False
        try:
            for _ in range(READ_BATCH):
                if sock is not self._sock:  # closed by a callback
                    return
                try:
                    data = sock.recv(RECV_SIZE)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:  # an ICMP error queued on the connected socket
                    self._icmp(exc)
                    return
                heard = True
                if is_channel_data(data):
                    hit = client.receive_channel_data(data)
                    if hit is not None:
                        self._deliver(hit[0], hit[1])
                else:
                    self._input(data)
        finally:
            if heard and self._loop is not None:
                client.heard(self._loop.time())  # the fast path below the core's receive
            self._write_held()
            self._held = None
            if client.timer_dirty:
                self._rearm()

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.rearm()

    def _write_held(self) -> None:
        held = self._held
        if held and self._batch is not None:
            self._batch.write(held)
            held.clear()

    def _input(self, data: bytes) -> None:
        assert self._loop is not None
        self.client.receive(data, self._loop.time())
        self._flush()

    def _batch_failed(self, exc: OSError, count: int) -> None:
        if isinstance(exc, BlockingIOError):
            self.dropped_send_blocked += count
        else:
            self._send_failed(exc)

    def _send_failed(self, exc: OSError) -> None:
        # UDP has no back-pressure: a full send buffer is a counted drop, as a lost datagram.
        if isinstance(exc, BlockingIOError):
            self.dropped_send_blocked += 1
        elif self._sock is not None:
            self._icmp(exc)
        else:
            log.debug("TURN send failed: %s", exc)

    def _deliver(self, peer: Address, data: bytes) -> None:
        if self._on_data is not None:
            self._on_data(peer, data)
        elif self._queue.full():
            self.dropped_recv_queue_full += 1
        else:
            self._queue.put_nowait(DataReceived(peer, data, None))

    def _icmp(self, exc: Exception) -> None:
        # A port unreachable while allocating: nobody serves TURN there, no need to wait 39.5 s.
        # Once allocated, ICMP errors (a restarting server) are left to the transactions.
        log.debug("TURN UDP error from %s: %s", self.server, exc)
        if (
            self._loop is not None
            and isinstance(exc, ConnectionRefusedError)
            and self.client.state is AllocationState.ALLOCATING
        ):
            self.client.connection_lost(
                self._loop.time(), TurnUnreachableError(f"{self.server}: {os_reason(exc)}")
            )
            self._flush()

    def _connection_lost(self) -> None:
        if self._loop is not None and self._transport is not None:
            self._transport = None
            self._send = _no_send
            self.client.connection_lost(self._loop.time())
            self._flush()

    def _flush(self) -> None:
        client = self.client
        loop = self._loop
        assert loop is not None
        send = self._send
        datagrams = client.datagrams_to_send(loop.time())
        if datagrams:
            try:
                if client.stream and len(datagrams) > 1:
                    send(b"".join(datagrams))
                else:
                    for datagram in datagrams:
                        send(datagram)
            except OSError as exc:  # a socket error is the path's failure, not ours
                self._send_failed(exc)
        while (event := client.next_event()) is not None:
            self._dispatch(event)
        assert self._timer is not None
        self._timer.rearm()

    def _dispatch(self, event: TurnEvent) -> None:
        if isinstance(event, DataReceived):
            self._deliver(event.peer, event.data)
        elif isinstance(event, Allocated):
            _resolve(self._allocated, event)
        elif isinstance(event, AllocationFailed):
            if self._allocated is not None and not self._allocated.done():
                self._allocated.set_exception(event.error)
        elif isinstance(event, AllocationLost):
            log.info("TURN allocation on %s lost: %s", self.server, event.error)
            _resolve(self.lost, event.error)
        elif isinstance(event, Closed):
            _resolve(self._closed, None)
        elif isinstance(event, PermissionFailed):
            self.permission_failures.append(event)
        elif isinstance(event, PermissionInstalled | ChannelBound):
            _resolve(self._ready.pop(event.peer, None), None)


def _resolve(future: asyncio.Future[_T] | None, value: _T) -> None:
    if future is not None and not future.done():
        future.set_result(value)


def _no_send(_data: bytes) -> None:
    pass
