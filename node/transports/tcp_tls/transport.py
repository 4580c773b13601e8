"""The TCP + TLS 1.3 transport: one authenticated connection per peer, behind ``Transport``.

- At most ``max_connections`` connections (inbound and outbound together). A slot is taken at
  TCP accept, before any TLS work; until its identity proof is accepted an inbound connection
  is pending, and pending ones have their own share (``max_pending``, ``max_pending_per_address``
  per source; node.transports.tcp_tls.slots says why). A client refused is told its ``Refusal`` inside
  TLS (a bounded number at once; beyond that its TCP connection is closed at once); each
  refusal is counted by reason. Nothing ever waits for a slot. Our own accept loop runs TLS on
  each accepted socket (``connect_accepted_socket``), so every failed handshake reaches us with
  its typed reason.
- A connection to a peer is reused by every ``connect``/``send`` to it; idle outbound
  connections beyond ``pool_size`` are closed by the health loop, least recently used first.
- A circuit breaker per remote endpoint guards dialling; the health loop pings every connection
  (RTT samples), re-dials peers that were connected with ``connect`` and lost, and sets the
  transport DEGRADED while any breaker is not closed.
- A frame above ``max_message`` (or garbage) closes only that connection, with a typed reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import statistics
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from ipaddress import IPv4Address, IPv6Address
from types import TracebackType
from typing import Any, Self

from node.errors import LocalError, NodeError
from node.os_errors import os_reason
from node.proto.breaker import BreakerFactory, BreakerState, CircuitBreaker
from node.proto.link.stream_link import CloseReason, LinkUsageError
from node.proto.vocabulary import (
    BatchedEvent,
    Capabilities,
    DisconnectReason,
    Endpoint,
    Frame,
    IpEndpoint,
    MessagesReceived,
    PeerConnected,
    PeerDisconnected,
    PeerId,
    TransportEvent,
    TransportHealth,
    TransportKind,
    TransportReason,
    TransportState,
)
from node.security.trust import TrustReason
from node.transports.base import BreakerOpenError, Transport, TransportUsageError, unbatched
from node.transports.channel import EventChannel
from node.transports.isolation import ConnectionIsolation
from node.transports.tcp_tls.link import (
    LinkSettings,
    TlsCredentials,
    TlsLink,
    TlsPeerError,
    accept,
    dial,
    refuse,
)
from node.transports.tcp_tls.slots import InboundSlot, Refusal, RefusalSlot, SlotLimits, Slots, source_of

log = logging.getLogger(__name__)

REFUSING_MAX = 32  # refusals told inside TLS at once (each costs a TLS handshake)
EVENT_QUEUE = 1024  # a consumer that falls behind stops our reads (TCP backpressure), not our memory

_DISCONNECT = {
    CloseReason.CLOSED: DisconnectReason.CLOSED_BY_PEER,
    CloseReason.TIMEOUT: DisconnectReason.TIMEOUT,
    CloseReason.PROTOCOL_ERROR: DisconnectReason.PROTOCOL_ERROR,
    CloseReason.MESSAGE_TOO_LARGE: DisconnectReason.PROTOCOL_ERROR,
    CloseReason.SHUTDOWN: DisconnectReason.SHUTDOWN,
}


@dataclass(frozen=True, slots=True)
class TcpTlsSettings:
    link: LinkSettings
    max_connections: int = 100
    max_pending: int = 32  # inbound connections that have not proven an identity yet
    max_pending_per_address: int = 8  # of those, from one source (IPv4 address or IPv6 /64)
    pool_size: int = 20
    health_check_interval: float = 10.0
    performance_samples: int = 100


@dataclass(frozen=True, slots=True)
class TcpTlsMetrics:
    """Counters beyond TransportHealth: why handshakes failed, what we refused, why links closed."""

    handshakes: int
    # by the trust reason when the peer's identity failed, else by the transport reason
    # (CONNECT_TIMEOUT for a client that never finished, CONNECT_FAILED, ...)
    handshake_failures: tuple[tuple[TrustReason | TransportReason, int], ...]
    refused: tuple[tuple[Refusal, int], ...]  # told inside TLS or closed at once, alike
    pending: int  # inbound connections in use that have not proven an identity yet
    closed: tuple[tuple[CloseReason, int], ...]
    pool_reuses: int
    latency_samples: tuple[float, ...]

    def failures(self, reason: TrustReason | TransportReason) -> int:
        return dict(self.handshake_failures).get(reason, 0)

    def refusals(self, reason: Refusal) -> int:
        return dict(self.refused).get(reason, 0)

    def closes(self, reason: CloseReason) -> int:
        return dict(self.closed).get(reason, 0)


class TcpBindError(LocalError):
    """The TCP-TLS port could not be bound (in use, no such address, not permitted)."""

    def __init__(self, address: str, port: int, reason: str) -> None:
        super().__init__(f"cannot listen on TCP {address} port {port}: {reason}")
        self.address = address
        self.port = port


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=512)
    except OSError as exc:
        raise TcpBindError(host, port, os_reason(exc)) from exc
    sock.setblocking(False)
    return sock


class TcpTlsTransport(Transport):
    kind = TransportKind.TCP_TLS

    def __init__(
        self,
        creds: TlsCredentials,
        settings: TcpTlsSettings,
        breaker: BreakerFactory,
        listen: tuple[str, int] | None = None,
    ) -> None:
        self.creds = creds
        self.settings = settings
        self.capabilities = Capabilities(settings.link.max_message, reliable=True, ordered=True)
        self._new_breaker = breaker
        self._listen = listen
        self._listener: socket.socket | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._links: dict[PeerId, TlsLink] = {}
        self._wanted: dict[PeerId, IpEndpoint] = {}  # connect()ed peers the health loop restores
        self._breakers: dict[IpEndpoint, CircuitBreaker] = {}
        self.slots = Slots(
            SlotLimits(
                max_connections=settings.max_connections,
                max_pending=settings.max_pending,
                max_pending_per_address=settings.max_pending_per_address,
                max_refusing=REFUSING_MAX,
            )
        )
        # A read's messages travel as one MessagesReceived (weighing its messages) to the one
        # consumer, who takes them as they are (batched_events) or one by one (events).
        self._events: EventChannel[BatchedEvent] = EventChannel(EVENT_QUEUE)
        self._closing = False
        self.state = TransportState.STOPPED
        self._samples: deque[float] = deque(maxlen=settings.performance_samples)
        self._handshakes = 0
        self._handshake_failures: Counter[TrustReason | TransportReason] = Counter()
        self._refused: Counter[Refusal] = Counter()
        self._closed: Counter[CloseReason] = Counter()
        self._pool_reuses = 0
        self._task_set: set[asyncio.Task[None]] = set()
        # Whatever one connection raises ends that connection, not the transport's TaskGroup.
        self.isolation = ConnectionIsolation("tcp-tls")
        self._sent = self._received = self._bytes_sent = self._bytes_received = 0
        self._send_failures = 0

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def local(self) -> IpEndpoint | None:
        if self._listener is None:
            return None
        host, port = self._listener.getsockname()[:2]
        return IpEndpoint(ipaddress.ip_address(host), int(port))

    async def __aenter__(self) -> Self:
        self.state = TransportState.STARTING
        self._loop = asyncio.get_running_loop()
        tasks = asyncio.TaskGroup()
        await tasks.__aenter__()
        self._tasks = tasks
        try:
            if self._listen is not None:
                self._listener = _listen(*self._listen)
                self._spawn(self._accept_loop(self._listener))
            self._spawn(self._health_loop())
        except BaseException as exc:
            self.state = TransportState.FAILED
            await self._stop(type(exc), exc, exc.__traceback__)
            raise
        self.state = TransportState.READY
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop(exc_type, exc, tb)

    async def _stop(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing = True
        for link in list(self._links.values()):
            link.close(CloseReason.SHUTDOWN)
        tasks, self._tasks = self._tasks, None
        if tasks is not None:
            # Links end when their sockets close; the accept and health loops and handshakes
            # in progress are cancelled (a cancelled TLS handshake closes its socket).
            for task in self._task_set:
                task.cancel()
            await tasks.__aexit__(None, None, None)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.state = TransportState.STOPPED
        self._events.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        assert self._tasks is not None
        task = self._tasks.create_task(coro)
        self._task_set.add(task)
        task.add_done_callback(self._task_set.discard)
        return task

    def _spawn_isolated(
        self,
        work: Callable[[], Coroutine[Any, Any, None]],
        who: str,
        abandoned: Callable[[], None] = lambda: None,
    ) -> None:
        """A task for one connection: what it raises is contained, logged and counted.

        A task cancelled before its first step (the transport stopping right after an accept)
        never runs its work, nor the work's ``finally``: the work's coroutine is only made once
        the task runs (none is left never awaited), and ``abandoned`` gives back what the work
        would have released (its socket, its slot)."""
        started: list[bool] = []

        async def isolated() -> None:
            started.append(True)
            await self.isolation.run(work(), who)

        def give_back_unless_started(_: asyncio.Task[None]) -> None:
            if not started:
                abandoned()

        self._spawn(isolated()).add_done_callback(give_back_unless_started)

    # -- inbound --------------------------------------------------------------------------

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, address = await loop.sock_accept(listener)
            except OSError as exc:
                # Out of file descriptors or memory: back off a moment rather than spin.
                log.warning("TCP-TLS accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            host = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
            self._on_tcp(conn, host, f"connection from {_address_text(address)}")

    def _on_tcp(
        self, conn: socket.socket, host: ipaddress.IPv4Address | ipaddress.IPv6Address, who: str
    ) -> None:
        """A slot is taken before any TLS work; a client that gets none is told why inside TLS
        (a bounded number at once), beyond that its connection is closed at once. Counted either
        way, not logged: a flood of refusals would be a flood of log lines."""
        source = source_of(host)
        slot = self.slots.admit(source)
        if isinstance(slot, Refusal):
            self._refused[slot] += 1
            telling = self.slots.take_refusal(source)
            if telling is None:
                conn.close()
                return
            self._spawn_isolated(
                partial(self._refuse, conn, slot, telling), who, partial(_give_back, conn, telling)
            )
            return
        self._spawn_isolated(partial(self._serve, conn, slot), who, partial(_give_back, conn, slot))

    async def _refuse(self, conn: socket.socket, refusal: Refusal, telling: RefusalSlot) -> None:
        try:
            await refuse(conn, self.creds, self.settings.link, refusal.wire)
        finally:
            telling.release()

    async def _serve(self, conn: socket.socket, slot: InboundSlot) -> None:
        link: TlsLink | None = None
        try:
            try:
                link = await accept(conn, self.creds, self.settings.link)
            except TlsPeerError as exc:
                self._handshake_failures[exc.trust or exc.reason] += 1
                log.info("refused TCP-TLS client: %s", exc)
                return
            slot.proven()  # accept() returned right after admitting the proof: no longer pending
            if self._register(link):
                await self._run_link(link)
        finally:
            if link is not None:
                link.close()  # a no-op after an orderly end; after a fault, the socket goes now
            slot.release()

    # -- links ----------------------------------------------------------------------------

    def _register(self, link: TlsLink) -> bool:
        """Make ``link`` the peer's connection; False if it lost to the one there (and is closed).

        A newer connection replaces an older one (the peer reconnected), except when both came
        up within a handshake time of each other with opposite dialers (both sides dialled at
        once, as hole punching and recovery do): then both ends keep the connection dialled by
        the smaller peer id, so they agree without a message and exactly one survives.
        """
        self._handshakes += 1
        old = self._links.get(link.peer)
        if old is not None and not old.core.closed:
            me = self.creds.identity.peer_id
            old_dialer = me if old.outbound else old.peer
            new_dialer = me if link.outbound else link.peer
            racing = link.established - old.established < self.settings.link.handshake_timeout
            if racing and old_dialer != new_dialer and old_dialer < new_dialer:
                link.close(CloseReason.CLOSED)
                return False
            old.close(CloseReason.CLOSED)
        self._links[link.peer] = link
        return True

    async def _run_link(self, link: TlsLink) -> None:
        await self._emit(PeerConnected(link.peer, link.endpoint))
        reason = CloseReason.SHUTDOWN
        try:
            reason = await link.run(self._on_data, self._samples.append)
        finally:
            self._closed[reason] += 1
            self._bytes_sent += link.core.bytes_sent
            self._bytes_received += link.core.bytes_received
            self._sent += link.messages_sent
            self._received += link.messages_received
            if self._links.get(link.peer) is link:
                del self._links[link.peer]
                if not self._closing:
                    if link.network_down:
                        why = DisconnectReason.NETWORK_DOWN
                    elif not link.closed_by_peer and reason is CloseReason.CLOSED:
                        why = DisconnectReason.CLOSED_LOCALLY
                    else:
                        why = _DISCONNECT.get(reason, DisconnectReason.CLOSED_BY_PEER)
                    await self._emit(PeerDisconnected(link.peer, why))

    def _on_data(self, link: TlsLink, frames: Sequence[Frame]) -> Awaitable[None] | None:
        if self._events.offer(MessagesReceived(link.peer, frames), len(frames)):
            return None
        return self._events.wait_for_space()

    async def _emit(self, event: BatchedEvent) -> None:
        if not self._events.offer(event):
            await self._events.wait_for_space()

    # -- outbound -------------------------------------------------------------------------

    def _breaker(self, endpoint: IpEndpoint) -> CircuitBreaker:
        breaker = self._breakers.get(endpoint)
        if breaker is None:
            breaker = self._new_breaker()
            self._breakers[endpoint] = breaker
        return breaker

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    async def connect(self, peer: PeerId, endpoint: Endpoint) -> None:
        await self.dial(endpoint, peer)
        if isinstance(endpoint, IpEndpoint):
            self._wanted[peer] = endpoint

    async def dial(self, endpoint: Endpoint, expected: PeerId | None = None) -> PeerId:
        """Connect to ``endpoint`` (reusing a live connection to ``expected``); the proven peer id."""
        if self._closing or self._tasks is None:
            raise TransportUsageError(TransportReason.CLOSED, "the transport is not running")
        if not isinstance(endpoint, IpEndpoint):
            raise TransportUsageError(
                TransportReason.UNSUPPORTED_ENDPOINT, f"{endpoint!r} is not an IP endpoint"
            )
        if expected is not None and expected in self._links:
            self._pool_reuses += 1
            return expected
        breaker = self._breaker(endpoint)
        if not self.slots.take_outbound():
            raise TransportUsageError(
                TransportReason.TOO_MANY_CONNECTIONS, f"{self.settings.max_connections} connections in use"
            )
        if not breaker.allow(self._now()):
            self.slots.release_outbound()
            now = self._now()
            retry_at = breaker.next_transition(now)  # None: half-open, its one trial under way
            retry_in = 0.0 if retry_at is None else max(0.0, retry_at - now)
            raise BreakerOpenError(f"{endpoint} failed too often; retry in {retry_in:.1f} s", retry_in)
        try:
            link = await dial(endpoint, expected, self.creds, self.settings.link)
        except TlsPeerError as exc:
            breaker.record_failure(self._now())
            self._handshake_failures[exc.trust or exc.reason] += 1
            self.slots.release_outbound()
            raise
        except BaseException:
            breaker.record_failure(self._now())
            self.slots.release_outbound()
            raise
        breaker.record_success(self._now())
        if self._register(link):
            self._spawn_isolated(
                partial(self._own_link, link),
                f"link to {link.peer} at {link.endpoint}",
                partial(self._give_back_link, link),
            )
        else:
            self.slots.release_outbound()  # the peer dialled us at the same moment and its link won
        return link.peer

    def _give_back_link(self, link: TlsLink) -> None:
        link.close()
        self.slots.release_outbound()

    async def _own_link(self, link: TlsLink) -> None:
        try:
            await self._run_link(link)
        finally:
            link.close()
            self.slots.release_outbound()

    async def send(self, peer: PeerId, frame: Frame) -> None:
        # The hot path: no coroutine below this one unless the socket needs draining. The link
        # core refuses a payload above max_message (capabilities.max_message_size) or a closed
        # link; which of the two is told apart only then.
        link = self._links.get(peer)
        if link is None:
            self.check_size(frame)
            raise self._not_connected(peer)
        try:
            congested = link.queue(frame.message_id, frame.priority, frame.payload)
        except LinkUsageError:
            self.check_size(frame)  # raises MESSAGE_TOO_LARGE if that was why
            raise self._not_connected(peer) from None
        if congested:
            await link.drain()

    def _not_connected(self, peer: PeerId) -> TransportUsageError:
        self._send_failures += 1
        return TransportUsageError(TransportReason.NOT_CONNECTED, f"no TCP-TLS connection to {peer}")

    async def ping(self, peer: PeerId) -> float:
        link = self._links.get(peer)
        if link is None:
            raise TransportUsageError(TransportReason.NOT_CONNECTED, f"no TCP-TLS connection to {peer}")
        return await link.ping()

    async def disconnect(self, peer: PeerId) -> None:
        self._wanted.pop(peer, None)
        link = self._links.pop(peer, None)
        if link is not None:
            link.close(CloseReason.CLOSED)
            await self._emit(PeerDisconnected(peer, DisconnectReason.CLOSED_LOCALLY))

    def network_down(self, lost: Collection[IPv4Address | IPv6Address]) -> tuple[PeerId, ...]:
        """Reset at once every link whose local address is in ``lost`` (the link monitor saw the
        address or its interface's carrier go); each ends with PeerDisconnected(NETWORK_DOWN)
        instead of waiting for TCP or the keepalive to notice. Returns the peers affected."""
        dropped = tuple(peer for peer, link in self._links.items() if link.local_ip in lost)
        for peer in dropped:
            self._links[peer].abort()
        return dropped

    def events(self) -> AsyncIterator[TransportEvent]:
        return unbatched(self._events.__aiter__())

    def batched_events(self) -> AsyncIterator[BatchedEvent]:
        return self._events.__aiter__()

    # -- health -----------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_check_interval)
            self._check_health()
            for peer, endpoint in list(self._wanted.items()):
                if (
                    peer not in self._links
                    and self._breaker(endpoint).state(self._now()) is not BreakerState.OPEN
                ):
                    with contextlib.suppress(NodeError):  # counted by dial; the breaker decides when next
                        await self.dial(endpoint, peer)  # recovery: the lost path comes back

    def _check_health(self) -> None:
        now = self._now()
        for link in list(self._links.values()):
            if not link.core.closed:
                self._spawn_isolated(partial(self._sample, link), f"health ping of {link.peer}")
        idle = sorted(
            (link for link in self._links.values() if link.outbound and link.peer not in self._wanted),
            key=lambda link: link.last_active,
        )
        for link in idle[: max(0, len(idle) - self.settings.pool_size)]:
            link.close(CloseReason.CLOSED)
        # Forget breakers with nothing to remember (closed, no failures) for remotes not in use.
        in_use = {link.endpoint for link in self._links.values()} | set(self._wanted.values())
        for endpoint, breaker in list(self._breakers.items()):
            snap = breaker.snapshot(now)
            clean = (
                snap.state is BreakerState.CLOSED
                and not snap.consecutive_failures
                and not snap.calls_in_flight
            )
            if clean and endpoint not in in_use:
                del self._breakers[endpoint]
        breakers_ok = all(b.state(now) is BreakerState.CLOSED for b in self._breakers.values())
        self.state = TransportState.READY if breakers_ok else TransportState.DEGRADED

    async def _sample(self, link: TlsLink) -> None:
        # Nothing a ping meets (a link closing meanwhile, a silent peer) may end the TaskGroup.
        with contextlib.suppress(NodeError, TimeoutError):
            async with asyncio.timeout(self.settings.health_check_interval):
                await link.ping()

    def health(self) -> TransportHealth:
        live = list(self._links.values())
        samples = list(self._samples)
        return TransportHealth(
            kind=self.kind,
            state=self.state,
            connections=self.slots.in_use,
            messages_sent=self._sent + sum(link.messages_sent for link in live),
            messages_received=self._received + sum(link.messages_received for link in live),
            bytes_sent=self._bytes_sent + sum(link.core.bytes_sent for link in live),
            bytes_received=self._bytes_received + sum(link.core.bytes_received for link in live),
            send_failures=self._send_failures + sum(self._handshake_failures.values()),
            malformed_dropped=self._closed[CloseReason.PROTOCOL_ERROR]
            + self._closed[CloseReason.MESSAGE_TOO_LARGE],
            rtt_ms=statistics.median(samples) * 1000 if samples else None,
        )

    def metrics(self) -> TcpTlsMetrics:
        return TcpTlsMetrics(
            handshakes=self._handshakes,
            handshake_failures=tuple(self._handshake_failures.items()),
            refused=tuple(self._refused.items()),
            pending=self.slots.pending,
            closed=tuple(self._closed.items()),
            pool_reuses=self._pool_reuses,
            latency_samples=tuple(self._samples),
        )

    def peers(self) -> tuple[PeerId, ...]:
        return tuple(self._links)

    def local_ip(self, peer: PeerId) -> IPv4Address | IPv6Address | None:
        """The local address ``peer``'s connection leaves from (None: no connection, or unknown)."""
        link = self._links.get(peer)
        return None if link is None else link.local_ip


def _address_text(address: Any) -> str:
    """``host:port`` of an accepted socket's peer address (IPv6 in brackets)."""
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _give_back(conn: socket.socket, slot: InboundSlot | RefusalSlot) -> None:
    """An accepted socket whose task never ran (still ours: no TLS transport took it)."""
    conn.close()
    slot.release()
