"""The UDP transport: secure sessions to peers on the node's one UDP socket, behind ``Transport``.

One socket (the node's port) and one demultiplexer (node.transports.udp.demux): STUN requests go to
the Binding responder as they always did, STUN responses to the node's own STUN client
transactions multiplexed on this port (``DatagramPort``: registered by transaction id, as NAT
discovery's are; else ``on_stun_response``; else the responder counts them as ignored),
secure-session messages to one ``SessionTable`` (node.proto.session.table: sessions by receiver
index, roaming, keepalive and consent), anything else is counted and dropped. Each datagram is
handled behind the ``ConnectionIsolation`` wall, so a bug one datagram trips is logged, counted and forgotten.

The driver is aioquic's shape: feed the core, hand its events on, write what it wants sent, re-arm
one ``CoreTimer``. Above the table:
- ``connect(peer, endpoint)`` dials and returns once the peer proved ``peer``'s identity; another id
  is refused with TransportPeerError(PEER_MISMATCH).
- ``send`` splits a frame into fragments that fit a 1200-byte datagram (UDP_PLAINTEXT) and seals
  each; one ``Reassembler`` keyed by the proven peer id puts them together on the other side.
  Nothing is retransmitted: capabilities say unreliable and unordered (the coordinator acks).
- ``health()``: RTT is the median of the recent samples, each either a dial's handshake (INIT to
  CONFIRM sent: one round trip plus both sides' key agreement) or a probe round trip
  (node.proto.datagram.probe: a PING sealed like data, answered by a PONG) sent to every peer each
  ``health_check_interval``; loss is the fraction of those probes unanswered within
  ``probe_timeout``.
- New handshakes pass the cookie gate (node.transports.udp.admission) before any key agreement.

Datagrams go out through asyncio's datagram transport, which buffers what the kernel refuses and
pauses us above its high-water mark: ``send`` then waits (``pause_writing``) instead of dropping.
Received messages the consumer has no room for (``event_queue``) are dropped and counted: UDP has
no backpressure to give.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import statistics
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeAlias, cast

from node.errors import LocalError
from node.os_errors import os_reason
from node.proto.datagram.errors import FragmentDrop, FragmentError
from node.proto.datagram.fragments import HEADER_SIZE, UDP_PLAINTEXT, fragment
from node.proto.datagram.probe import ProbeKind, encode_probe, parse_probe
from node.proto.datagram.reassembly import Reassembler, ReassemblyLimits
from node.proto.identity import Identity
from node.proto.session.cookie import CookieChecker, CookieConfig, CookieCount
from node.proto.session.errors import HandshakeFailure, SessionNotReady
from node.proto.session.table import SessionTable
from node.proto.session.table_types import (
    DEFAULT_TABLE_CONFIG,
    DialFailed,
    PeerDatagram,
    PeerEstablished,
    PeerGone,
    PeerRoamed,
    TableConfig,
    TableCount,
    TableError,
    TableEvent,
)
from node.proto.session.trust import PeerVerificationError, PeerVerifier, VerifyFailure
from node.proto.stun.responder import BindingResponder, Outcome
from node.proto.vocabulary import (
    BatchedEvent,
    Capabilities,
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
from node.transports.base import Transport, TransportPeerError, TransportUsageError, unbatched
from node.transports.channel import EventChannel
from node.transports.isolation import ConnectionIsolation
from node.transports.port import StunDelivery
from node.transports.timer import CoreTimer
from node.transports.udp.admission import CookieGate
from node.transports.udp.demux import Kind, classify

log = logging.getLogger(__name__)

# A 1 MiB message is about 900 datagrams that arrive in one burst, faster than one Python thread
# drains them: the socket buffers should hold a few such bursts. The kernel caps what we ask at
# net.core.rmem_max / wmem_max (212992 bytes by default; raise them on a busy node).
SOCKET_BUFFER = 4 << 20

Addr: TypeAlias = tuple[Any, ...]  # as asyncio gives it: (host, port), or IPv6's 4-tuple
StunResponseHook: TypeAlias = Callable[[bytes, Addr], None]


class BindError(LocalError):
    """The UDP port could not be bound (in use, no such address, not permitted)."""

    def __init__(self, address: str, port: int, reason: str) -> None:
        super().__init__(f"cannot bind UDP {address} port {port}: {reason}")
        self.address = address
        self.port = port


@dataclass(frozen=True, slots=True)
class UdpSettings:
    max_message: int = 1 << 20  # transport.max_message_bytes
    handshakes_per_second: float = 100.0  # udp.handshakes_per_second: above it, cookies
    connect_timeout: float = 30.0
    health_check_interval: float = 10.0
    probe_timeout: float = 5.0  # a probe unanswered this long counts as lost
    performance_samples: int = 100
    event_queue: int = 4096  # received messages held for the consumer, at most
    table: TableConfig = DEFAULT_TABLE_CONFIG  # max_sessions = transport.max_connections
    reassembly: ReassemblyLimits = field(default_factory=ReassemblyLimits)


@dataclass(frozen=True, slots=True)
class UdpMetrics:
    """What ``status`` shows of the port beyond TransportHealth."""

    sessions: int  # live sessions: dialling, answering, established
    peers: int
    handshakes: int  # first handshakes completed (either side)
    cookies_sent: int
    malformed: int  # neither STUN nor a readable session message
    reassembly_drops: int  # fragments or reassemblies dropped (every FragmentDrop)
    events_dropped: int  # messages dropped because the consumer fell behind
    stun_responses: int  # STUN responses handed to on_stun_response (our own client transactions)
    session_datagrams: int  # datagrams that went to the session table (not STUN)
    table: dict[TableCount, int]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self.owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport is not an asyncio.DatagramTransport subclass, only shaped like one.
        self.owner._udp = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        owner = self.owner
        owner.wall.call(owner._datagram, f"datagram from {addr[0]}", data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable from a peer that left) surface here; they are not fatal.
        log.debug("UDP error: %s", exc)

    def pause_writing(self) -> None:
        self.owner._pause()

    def resume_writing(self) -> None:
        self.owner._resume()


@dataclass(slots=True)
class _Probe:
    peer: PeerId
    sent: float
    waiter: asyncio.Future[float] | None


class UdpTransport(Transport):
    kind = TransportKind.UDP

    def __init__(
        self,
        identity: Identity,
        verifier: PeerVerifier,
        settings: UdpSettings = UdpSettings(),
        *,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        credential: bytes = b"",
        responder: BindingResponder | None = None,
        on_stun_response: StunResponseHook | None = None,
        wall: ConnectionIsolation | None = None,
    ) -> None:
        self.identity = identity
        self.settings = settings
        self.capabilities = Capabilities(settings.max_message, reliable=False, ordered=False)
        self.responder = responder if responder is not None else BindingResponder("bitcraps-node")
        self.on_stun_response = on_stun_response
        self.wall = wall if wall is not None else ConnectionIsolation("udp")
        self._listen = listen
        self.cookies = CookieChecker(
            CookieConfig(
                handshakes_per_second=settings.handshakes_per_second,
                burst=max(1.0, settings.handshakes_per_second),
            )
        )
        self._gate = CookieGate(self.cookies, self._half_open, max(1, settings.table.max_sessions // 2))
        self._table: SessionTable[Addr] = SessionTable(
            identity, verifier, credential=credential, config=settings.table, admit_init=self._gate
        )
        self._reassembler: Reassembler[PeerId] = Reassembler(settings.reassembly)
        self._events: EventChannel[BatchedEvent] = EventChannel(settings.event_queue)
        self._udp: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: CoreTimer | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._paused: asyncio.Future[None] | None = None
        self._closing = False
        self.state = TransportState.STOPPED
        self._peers: dict[PeerId, Addr] = {}
        self._dials: dict[PeerId, list[asyncio.Future[None]]] = {}
        self._probes: dict[int, _Probe] = {}
        self._rtt: deque[float] = deque(maxlen=settings.performance_samples)
        self._answered: deque[bool] = deque(maxlen=settings.performance_samples)
        self._sent = self._received = self._bytes_sent = self._bytes_received = 0
        self._send_failures = self._unknown = self._events_dropped = self._stun_responses = 0
        self._session_datagrams = 0
        # The node's own STUN client transactions on this port (NAT discovery): id -> receiver.
        self._stun_clients: dict[bytes, StunDelivery] = {}

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def local(self) -> IpEndpoint | None:
        if self._udp is None:
            return None
        host, port = self._udp.get_extra_info("sockname")[:2]
        return IpEndpoint(ipaddress.ip_address(host), int(port))

    async def __aenter__(self) -> Self:
        self.state = TransportState.STARTING
        loop = self._loop = asyncio.get_running_loop()
        host, port = self._listen
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        try:
            await loop.create_datagram_endpoint(
                lambda: _Protocol(self), local_addr=(host, port), family=family
            )
        except OSError as exc:
            self.state = TransportState.FAILED
            raise BindError(host, port, os_reason(exc)) from exc
        assert self._udp is not None
        sock = self._udp.get_extra_info("socket")
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):  # a smaller buffer only drops more under a burst
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        self._timer = CoreTimer(loop, self._get_timer, self._handle_timer, self._flush)
        tasks = asyncio.TaskGroup()
        await tasks.__aenter__()
        self._tasks = tasks
        self._health_task = tasks.create_task(self._health_loop(), name="udp-health")
        self.state = TransportState.READY
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        try:
            tasks, self._tasks = self._tasks, None
            if tasks is not None:
                if self._health_task is not None:
                    self._health_task.cancel()
                await tasks.__aexit__(None, None, None)
        finally:
            if self._timer is not None:
                self._timer.close()
            for waiters in self._dials.values():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(
                            TransportUsageError(TransportReason.CLOSED, "the transport closed")
                        )
            for probe in self._probes.values():
                if probe.waiter is not None and not probe.waiter.done():
                    probe.waiter.cancel()
            if self._udp is not None:
                self._udp.close()
                self._udp = None
            self._resume()
            self.state = TransportState.STOPPED
            self._events.close()

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _running(self) -> asyncio.DatagramTransport:
        if self._closing or self._udp is None:
            raise TransportUsageError(TransportReason.CLOSED, "the UDP transport is not running")
        return self._udp

    # -- the socket -------------------------------------------------------------------------

    def _datagram(self, data: bytes, addr: Addr) -> None:
        kind = classify(data)
        if kind is Kind.SESSION:
            self._session_datagrams += 1
            self._bytes_received += len(data)
            self._table.receive_datagram(data, addr, self._now())
            self._pump()
        elif kind is Kind.STUN_RESPONSE and (deliver := self._stun_clients.get(data[8:20])) is not None:
            self._stun_responses += 1
            deliver(data, _endpoint(addr))
        elif kind is Kind.STUN_RESPONSE and self.on_stun_response is not None:
            self._stun_responses += 1
            self.on_stun_response(data, addr)
        else:
            if kind is Kind.UNKNOWN:
                self._unknown += 1
            # The responder answers requests and counts the rest by what it is (``stun`` in status:
            # responses nobody waits for are ``ignored``, what is not STUN ``not_stun``).
            self._answer_stun(data, addr)

    # -- DatagramPort: STUN client transactions from this port (node.transports.port) ------------

    def send_datagram(self, data: bytes, destination: IpEndpoint) -> None:
        self._running().sendto(data, self._address(destination))
        self._bytes_sent += len(data)

    def expect_stun(self, transaction_id: bytes, deliver: StunDelivery) -> None:
        self._stun_clients[transaction_id] = deliver

    def forget_stun(self, transaction_id: bytes) -> None:
        self._stun_clients.pop(transaction_id, None)

    def _answer_stun(self, data: bytes, addr: Addr) -> None:
        ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a v4 peer on a dual-stack socket: report the address it knows
        outcome, response = self.responder.handle(data, (ip, int(addr[1])))
        if response is not None and self._udp is not None:
            self._udp.sendto(response, addr)
        elif outcome is Outcome.MALFORMED:
            log.debug("dropped malformed STUN datagram from %s", addr[0])

    def _pump(self) -> None:
        """After any input to the table: its events, its datagrams, its timer."""
        self._flush()
        assert self._timer is not None
        self._timer.rearm()

    def _flush(self) -> None:
        table = self._table
        now = self._now()
        while (event := table.next_event()) is not None:
            self._on_event(event, now)
        out = table.datagrams_to_send(now)
        udp = self._udp
        if out and udp is not None:
            sendto = udp.sendto
            sent = 0
            for data, addr in out:
                sendto(data, addr)
                sent += len(data)
            self._bytes_sent += sent

    def _get_timer(self) -> float | None:
        table = self._table.get_timer()
        fragments = self._reassembler.get_timer()
        if table is None or fragments is None:
            return table if fragments is None else fragments
        return min(table, fragments)

    def _handle_timer(self, now: float) -> None:
        self._table.handle_timer(now)
        self._reassembler.handle_timer(now)

    def _half_open(self) -> int:
        status = self._table.status()
        return status.sessions - status.peers

    # -- table events -------------------------------------------------------------------------

    def _on_event(self, event: TableEvent[Addr], now: float) -> None:
        if isinstance(event, PeerDatagram):
            self._on_payload(event.peer_id, event.payload, now)
        elif isinstance(event, PeerEstablished):
            new = event.peer_id not in self._peers  # it repeats when a newer session takes over
            self._peers[event.peer_id] = event.addr
            for waiter in self._dials.pop(event.peer_id, ()):
                if not waiter.done():
                    waiter.set_result(None)
            if new:
                self._emit(PeerConnected(event.peer_id, _endpoint(event.addr)))
        elif isinstance(event, PeerRoamed):
            self._peers[event.peer_id] = event.new
            log.info("UDP peer %s moved from %s to %s", event.peer_id, event.old[0], event.new[0])
        elif isinstance(event, PeerGone):
            self._peers.pop(event.peer_id, None)
            if not self._closing:
                self._emit(PeerDisconnected(event.peer_id, event.reason.disconnect_reason))
        elif isinstance(event, DialFailed):
            error = _dial_error(event)
            for waiter in self._dials.pop(event.expected_peer_id, ()):
                if not waiter.done():
                    waiter.set_exception(error)

    def _on_payload(self, peer: PeerId, payload: bytes, now: float) -> None:
        if len(payload) < HEADER_SIZE:
            probe = parse_probe(payload)
            if probe is not None:
                self._on_probe(peer, *probe, now)
                return
        try:
            frame = self._reassembler.receive(peer, payload, now)
        except FragmentError as exc:  # counted by the reassembler; one debug line, never a crash
            log.debug("UDP fragment from %s dropped: %s", peer, exc)
            return
        if frame is None:
            return
        self._received += 1
        if len(self._events) >= self.settings.event_queue:
            self._events_dropped += 1
            return
        self._events.offer(MessagesReceived(peer, (frame,)))

    def _on_probe(self, peer: PeerId, kind: ProbeKind, token: int, now: float) -> None:
        if kind is ProbeKind.PING:
            # A probe is best effort: a PONG that cannot be sealed now is one the pinger counts lost.
            with contextlib.suppress(TableError, SessionNotReady):
                self._table.send(peer, encode_probe(ProbeKind.PONG, token), now)
            return
        probe = self._probes.get(token)
        if probe is None or probe.peer != peer:
            return  # late (already counted lost), or not ours
        del self._probes[token]
        rtt = now - probe.sent
        self._rtt.append(rtt)
        self._answered.append(True)
        if probe.waiter is not None and not probe.waiter.done():
            probe.waiter.set_result(rtt)

    def _emit(self, event: BatchedEvent) -> None:
        self._events.offer(event)  # connects and disconnects are never dropped; few and small

    # -- Transport ---------------------------------------------------------------------------

    async def connect(self, peer: PeerId, endpoint: Endpoint) -> None:
        self._running()
        if not isinstance(endpoint, IpEndpoint):
            raise TransportUsageError(
                TransportReason.UNSUPPORTED_ENDPOINT, f"{endpoint!r} is not an IP endpoint"
            )
        if peer in self._peers:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        dialling = peer in self._dials
        self._dials.setdefault(peer, []).append(waiter)
        started = loop.time()
        try:
            if not dialling:
                try:
                    self._table.connect(peer, self._address(endpoint), started)
                except TableError as exc:
                    raise TransportUsageError(
                        TransportReason.TOO_MANY_CONNECTIONS, f"cannot dial {peer} at {endpoint}: {exc}"
                    ) from exc
                self._pump()
            try:
                async with asyncio.timeout(self.settings.connect_timeout):
                    await waiter
            except TimeoutError:
                raise TransportPeerError(
                    TransportReason.CONNECT_TIMEOUT,
                    f"{peer} at {endpoint} did not complete a handshake within "
                    f"{self.settings.connect_timeout:g} s",
                ) from None
        finally:
            waiters = self._dials.get(peer)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._dials[peer]
        if not dialling:
            self._rtt.append(loop.time() - started)  # a handshake: one round trip and the key agreements

    def _address(self, endpoint: IpEndpoint) -> Addr:
        ip = endpoint.ip
        local = self.local
        if local is not None and local.ip.version == 6 and ip.version == 4:
            return (f"::ffff:{ip}", endpoint.port, 0, 0)  # a dual-stack socket reaches v4 so
        return (str(ip), endpoint.port)

    async def send(self, peer: PeerId, frame: Frame) -> None:
        self.check_size(frame)
        if peer not in self._peers:
            self._send_failures += 1
            raise TransportUsageError(TransportReason.NOT_CONNECTED, f"no UDP session with {peer}")
        now = self._now()
        table = self._table
        try:
            for piece in fragment(frame, UDP_PLAINTEXT, self.settings.max_message):
                table.send(peer, piece, now)
        except (TableError, SessionNotReady) as exc:
            self._send_failures += 1
            raise TransportUsageError(
                TransportReason.NOT_CONNECTED, f"the UDP session with {peer} cannot seal now: {exc}"
            ) from exc
        finally:
            self._pump()  # what was sealed goes out even when a later fragment could not be
        self._sent += 1
        paused = self._paused
        if paused is not None:
            await asyncio.shield(paused)  # the socket's buffer is above its high-water mark

    def _pause(self) -> None:
        if self._paused is None and self._loop is not None:
            self._paused = self._loop.create_future()

    def _resume(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)

    async def disconnect(self, peer: PeerId) -> None:
        if peer not in self._peers:
            return
        self._table.close(peer, self._now())
        self._pump()

    async def ping(self, peer: PeerId) -> float:
        """One probe round trip to ``peer`` in seconds (also an RTT sample for ``health``)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[float] = loop.create_future()
        self._probe(peer, waiter)
        try:
            async with asyncio.timeout(self.settings.probe_timeout):
                return await waiter
        except TimeoutError:
            raise TransportPeerError(
                TransportReason.CONNECT_TIMEOUT,
                f"{peer} did not answer a probe within {self.settings.probe_timeout:g} s",
            ) from None

    def _probe(self, peer: PeerId, waiter: asyncio.Future[float] | None) -> None:
        now = self._now()
        token = int.from_bytes(os.urandom(8), "big")
        try:
            self._table.send(peer, encode_probe(ProbeKind.PING, token), now)
        except (TableError, SessionNotReady) as exc:
            raise TransportUsageError(TransportReason.NOT_CONNECTED, f"cannot probe {peer}: {exc}") from exc
        self._probes[token] = _Probe(peer, now, waiter)
        self._pump()

    def events(self) -> AsyncIterator[TransportEvent]:
        return unbatched(self._events.__aiter__())

    def batched_events(self) -> AsyncIterator[BatchedEvent]:
        return self._events.__aiter__()

    # -- health -------------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_check_interval)
            self.wall.call(self._check_health, "UDP health check")

    def _check_health(self) -> None:
        now = self._now()
        for token, probe in list(self._probes.items()):
            if now - probe.sent >= self.settings.probe_timeout:
                del self._probes[token]
                self._answered.append(False)
        for peer in list(self._peers):
            try:
                self._probe(peer, None)
            except TransportUsageError:
                self._answered.append(False)

    def health(self) -> TransportHealth:
        samples = list(self._rtt)
        answered = list(self._answered)
        return TransportHealth(
            kind=self.kind,
            state=self.state,
            connections=self._table.status().sessions,
            messages_sent=self._sent,
            messages_received=self._received,
            bytes_sent=self._bytes_sent,
            bytes_received=self._bytes_received,
            send_failures=self._send_failures,
            malformed_dropped=self._malformed(),
            rtt_ms=statistics.median(samples) * 1000 if samples else None,
            loss=answered.count(False) / len(answered) if answered else None,
        )

    def _malformed(self) -> int:
        return self._unknown + self._table.counts[TableCount.MALFORMED]

    def metrics(self) -> UdpMetrics:
        status = self._table.status()
        drops = self._reassembler.stats().drops
        return UdpMetrics(
            sessions=status.sessions,
            peers=status.peers,
            handshakes=status.counts.get(TableCount.ESTABLISHED, 0),
            cookies_sent=self.cookies.counts[CookieCount.COOKIES_SENT],
            malformed=self._unknown + status.counts.get(TableCount.MALFORMED, 0),
            reassembly_drops=sum(n for reason, n in drops.items() if reason is not FragmentDrop.DUPLICATE),
            events_dropped=self._events_dropped,
            stun_responses=self._stun_responses,
            session_datagrams=self._session_datagrams,
            table=status.counts,
        )

    def peers(self) -> tuple[PeerId, ...]:
        return tuple(self._peers)


def _endpoint(addr: Addr) -> IpEndpoint:
    ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return IpEndpoint(ip, int(addr[1]))


def _dial_error(event: DialFailed[Addr]) -> TransportPeerError:
    where = f"{event.expected_peer_id} at {event.addr[0]} port {event.addr[1]}"
    error = event.error
    if isinstance(error, PeerVerificationError) and error.reason is VerifyFailure.WRONG_PEER:
        return TransportPeerError(TransportReason.PEER_MISMATCH, f"dialled {where}: {error}")
    if event.reason is HandshakeFailure.TIMEOUT:
        return TransportPeerError(TransportReason.CONNECT_TIMEOUT, f"no handshake answer from {where}")
    return TransportPeerError(TransportReason.AUTH_FAILED, f"{where} failed the handshake: {error}")
