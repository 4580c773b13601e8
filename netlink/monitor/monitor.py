"""The link monitor's asyncio layer: one route socket on ``loop.add_reader`` feeding a
:class:`~netlink.monitor.state.KernelView`.

pyroute2's ``AsyncIPRoute`` cannot run under uvloop (pyroute2 issue 1335; DESIGN.md "netlink under
uvloop"), so the socket is a plain non-blocking one and only pyroute2's marshal classes are used.
A socket that fails or is closed under the monitor is reported (a typed error, logged once per
streak, counted), and a new one is opened after a backoff; the node keeps running meanwhile and
the new socket's dump reports what changed in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from types import TracebackType
from typing import Self

from netlink.monitor.errors import LinkMonitorError, MonitorFailure
from netlink.monitor.model import IPAddress, LinkEvent, MonitorStats, NetworkState
from netlink.monitor.sockets import open_route_socket
from netlink.monitor.state import KernelView

log = logging.getLogger(__name__)

READ_BUFFER = 1 << 16  # the kernel sizes dump datagrams to the reader's buffer, up to 32 KiB
READ_BATCH = 256  # datagrams per wake-up, so a flood cannot starve the loop
EVENT_QUEUE = 4096
SocketFactory = Callable[[], socket.socket]


class LinkMonitor:
    """``async with LinkMonitor() as monitor``: ``events()``, ``state()``, ``stats()``.

    ``socket_factory`` opens the route socket (default :func:`open_route_socket` in the caller's
    namespace; the lab passes one that opens it inside a host's namespace). Entering waits up to
    ``start_timeout`` for the first full dump; a monitor that cannot get one by then starts
    empty and keeps retrying.
    """

    def __init__(
        self,
        *,
        socket_factory: SocketFactory = open_route_socket,
        start_timeout: float = 5.0,
        retry_initial: float = 0.1,
        retry_max: float = 10.0,
        health_interval: float = 1.0,
        dump_timeout: float = 10.0,
    ) -> None:
        self._factory = socket_factory
        self._start_timeout = start_timeout
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._health_interval = health_interval
        self._dump_timeout = dump_timeout
        self._view = KernelView()
        self._queue: asyncio.Queue[LinkEvent] = asyncio.Queue(EVENT_QUEUE)
        self._buffer = bytearray(READ_BUFFER)
        self._stack = AsyncExitStack()
        self._ready: asyncio.Event | None = None
        self._failed: asyncio.Future[LinkMonitorError] | None = None
        self._dump_sent_at: float | None = None
        self._socket_failures = 0
        self._dropped = 0
        self.last_error: LinkMonitorError | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._ready = asyncio.Event()
        await self._stack.__aenter__()
        try:
            tasks = await self._stack.enter_async_context(asyncio.TaskGroup())
            task = tasks.create_task(self._keep(), name="link-monitor")
            self._stack.callback(task.cancel)  # runs before the group waits for it
            try:
                async with asyncio.timeout(self._start_timeout):
                    await self._ready.wait()
            except TimeoutError:
                log.warning(
                    "link monitor: no complete view of the network after %.1f s (%s); starting empty",
                    self._start_timeout,
                    self.last_error or "the kernel has not finished its dump",
                )
        except BaseException as exc:
            await self._stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    # -- use -------------------------------------------------------------------------------
    async def events(self) -> AsyncIterator[LinkEvent]:
        """Every change, in order, as it is read (one consumer)."""
        while True:
            yield await self._queue.get()

    def state(self) -> NetworkState:
        return self._view.snapshot()

    def has_address(self, address: IPAddress) -> bool:
        """True when an interface of the namespace holds ``address``."""
        return self._view.has_address(address)

    def stats(self) -> MonitorStats:
        return replace(self._view.stats(), socket_failures=self._socket_failures, dropped=self._dropped)

    @property
    def ready(self) -> bool:
        """The first full dump is in."""
        return self._view.loaded

    @property
    def settled(self) -> bool:
        """Loaded, no re-dump running or queued, and the socket working."""
        return self._view.loaded and not self._view.dumping and self.last_error is None

    # -- the socket's life -----------------------------------------------------------------
    async def _keep(self) -> None:
        delay = self._retry_initial
        while True:
            try:
                await self._serve()
            except LinkMonitorError as exc:
                self._socket_failures += 1
                if self.last_error is None:  # one line per streak, not one per retry
                    log.warning("link monitor: %s; retrying with backoff", exc)
                else:
                    log.debug("link monitor: still failing: %s", exc)
                self.last_error = exc
            if self._view.loaded and self.last_error is None:
                delay = self._retry_initial
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max)

    def _open(self) -> socket.socket:
        try:
            sock = self._factory()
            portid = int(sock.getsockname()[0])
        except OSError as exc:
            raise LinkMonitorError(MonitorFailure.SOCKET_OPEN, _os_detail(exc)) from exc
        self._view.attach(portid)
        return sock

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        sock = self._open()
        fd = sock.fileno()
        self._failed = loop.create_future()
        try:
            loop.add_reader(fd, self._readable, sock)
            self._send_requests(sock)
            while True:
                try:
                    async with asyncio.timeout(self._health_interval):
                        raise await asyncio.shield(self._failed)
                except TimeoutError:
                    self._check(sock)
        finally:
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(fd)
            sock.close()
            self._dump_sent_at = None

    def _check(self, sock: socket.socket) -> None:
        """Between reads: a socket closed under the monitor never becomes readable again, and a
        reader the loop stopped polling (see ``_readable``) is caught up here."""
        try:
            if sock.fileno() < 0:
                raise OSError(errno.EBADF, "the socket object was closed")
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        except OSError as exc:
            raise LinkMonitorError(MonitorFailure.SOCKET_CLOSED, _os_detail(exc)) from exc
        self._readable(sock)
        sent = self._dump_sent_at
        if sent is not None and time.monotonic() - sent > self._dump_timeout:
            raise LinkMonitorError(
                MonitorFailure.DUMP_STUCK, f"no end of dump after {self._dump_timeout:.0f} s"
            )

    def _fail(self, error: LinkMonitorError) -> None:
        if self._failed is not None and not self._failed.done():
            self._failed.set_result(error)

    def _readable(self, sock: socket.socket) -> None:
        view = self._view
        buffer = self._buffer
        overran = False
        for _ in range(READ_BATCH):
            try:
                size = sock.recv_into(buffer, len(buffer), socket.MSG_TRUNC)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    view.overrun()  # the kernel dropped notifications: dump again, diff
                    overran = True
                    continue
                self._stop_reading(sock)
                self._fail(LinkMonitorError(MonitorFailure.SOCKET_READ, _os_detail(exc)))
                return
            if size > len(buffer):
                view.truncated()
            else:
                view.receive(bytes(buffer[:size]))
        failure = view.take_failure()
        if failure is not None:
            self._stop_reading(sock)
            self._fail(failure)
            return
        if overran:
            # ENOBUFS arrives as POLLERR, and libuv stops a poll handle on POLLERR: under uvloop
            # this reader would never be called again (measured here). Register it afresh.
            self._stop_reading(sock)
            asyncio.get_running_loop().add_reader(sock.fileno(), self._readable, sock)
        self._send_requests(sock)
        self._deliver()

    def _stop_reading(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError):
            asyncio.get_running_loop().remove_reader(sock.fileno())

    def _send_requests(self, sock: socket.socket) -> None:
        view = self._view
        if not view.dumping:
            self._dump_sent_at = None
        for request in view.requests_to_send():
            try:
                sock.send(request)
            except OSError as exc:
                self._fail(LinkMonitorError(MonitorFailure.SOCKET_SEND, _os_detail(exc)))
                return
            self._dump_sent_at = time.monotonic()

    def _deliver(self) -> None:
        for event in self._view.events():
            if self._queue.full():
                self._queue.get_nowait()  # the oldest goes: the state() snapshot stays exact
                self._dropped += 1
            self._queue.put_nowait(event)
        if self._view.loaded and self._ready is not None and not self._ready.is_set():
            self._ready.set()
        if self.last_error is not None and not self._view.dumping:
            log.info("link monitor: recovered after %s", self.last_error)
            self.last_error = None


def _os_detail(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    return f"{name} {exc.strerror or exc}".strip()
