"""Secure sessions over one datagram path, whatever carries the datagrams: the part of the session
driver that UDP (the node's socket) and TURN (datagrams relayed through our allocation) share.

The owner gives ``transmit(datagrams)`` (write these ``(bytes, addr)`` out) and feeds every
session datagram it receives to ``receive(data, addr)``; ``SessionPath`` runs one ``SessionTable``
(node.proto.session.table: sessions by receiver index, roaming, keepalive and consent) behind a
``CoreTimer``, splits frames into fragments of the path's plaintext budget and puts them together
with one ``Reassembler`` keyed by the proven peer id, answers probes and hands events on through
one ``EventChannel``. aioquic's driver shape: feed the core, hand its events on, write what it
wants sent, re-arm one timer.

A peer's address is whatever its authenticated session says (``PeerEstablished``, then
``PeerRoamed``): never the caller's word. ``connect(peer, addr)`` returns once the peer at
``addr`` proved ``peer``'s identity; another id is refused with TransportPeerError(PEER_MISMATCH).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import statistics
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from node.proto.datagram.errors import FragmentError
from node.proto.datagram.fragments import HEADER_SIZE, fragment
from node.proto.datagram.probe import ProbeKind, encode_probe, parse_probe
from node.proto.datagram.reassembly import Reassembler, ReassemblyLimits
from node.proto.identity import Identity
from node.proto.session.errors import HandshakeFailure, SessionNotReady
from node.proto.session.table import AdmitInit, SessionTable
from node.proto.session.table_types import (
    DEFAULT_TABLE_CONFIG,
    DialFailed,
    GoneReason,
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
from node.proto.vocabulary import (
    BatchedEvent,
    DisconnectReason,
    Endpoint,
    Frame,
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
from node.transports.base import TransportPeerError, TransportUsageError, unbatched
from node.transports.channel import EventChannel
from node.transports.timer import CoreTimer

log = logging.getLogger(__name__)

A = TypeVar("A", bound=Hashable)

# Datagrams sealed by ``send`` wait for one write at the end of the loop's turn (every message the
# consumer sends while handling one batch goes out together), but no more than this many: a long
# message or a sender that never yields still writes as it goes, and so still meets the socket's
# back-pressure.
HOLD_MAX = 64


@dataclass(frozen=True, slots=True)
class PathSettings:
    max_message: int = 1 << 20  # transport.max_message_bytes
    plaintext: int = 1200  # a fragment's plaintext budget on this path (node.proto.datagram.fragments)
    connect_timeout: float = 30.0
    probe_timeout: float = 5.0  # a probe unanswered this long counts as lost
    health_check_interval: float = 10.0  # every peer is probed this often (RTT and loss samples)
    performance_samples: int = 100
    event_queue: int = 4096  # received messages held for the consumer, at most
    table: TableConfig = DEFAULT_TABLE_CONFIG  # max_sessions = transport.max_connections
    reassembly: ReassemblyLimits = field(default_factory=ReassemblyLimits)


@dataclass(slots=True)
class _Probe:
    peer: PeerId
    sent: float
    waiter: asyncio.Future[float] | None


class SessionPath(Generic[A]):
    def __init__(
        self,
        identity: Identity,
        verifier: PeerVerifier,
        settings: PathSettings,
        transmit: Callable[[list[tuple[bytes, A]]], None],
        endpoint: Callable[[A], Endpoint],
        *,
        name: str,
        credential: bytes = b"",
        admit_init: AdmitInit[A] | None = None,
    ) -> None:
        self.settings = settings
        self.name = name  # "UDP", "TURN": in messages
        self._transmit = transmit
        self._endpoint = endpoint
        self.table: SessionTable[A] = SessionTable(
            identity, verifier, credential=credential, config=settings.table, admit_init=admit_init
        )
        self.reassembler: Reassembler[PeerId] = Reassembler(settings.reassembly)
        self.events: EventChannel[BatchedEvent] = EventChannel(settings.event_queue)
        self.peers: dict[PeerId, A] = {}  # only from authenticated sessions
        # on_address(peer, old, new): a peer's authenticated address moved (None: none before / gone)
        self.on_address: Callable[[PeerId, A | None, A | None], None] | None = None
        self.closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: CoreTimer | None = None
        self._next_health: float | None = None  # when every peer is probed next
        self._dials: dict[PeerId, list[asyncio.Future[None]]] = {}
        self._probes: dict[int, _Probe] = {}
        self.rtt: deque[float] = deque(maxlen=settings.performance_samples)
        self.answered: deque[bool] = deque(maxlen=settings.performance_samples)
        self.sent = self.received = self.bytes_sent = self.bytes_received = 0
        self.send_failures = self.events_dropped = 0
        self._held = 0  # fragments sealed since the last flush
        self._flush_soon: asyncio.Handle | None = None
        # Messages of one peer completed in this flush, handed on as one MessagesReceived.
        self._arrived: list[Frame] = []
        self._arrived_from: PeerId | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._timer = CoreTimer(loop, self._get_timer, self._handle_timer, self.flush)
        # The health probes ride on the path's one timer (UDP and TURN alike): no task of their own.
        self._next_health = loop.time() + self.settings.health_check_interval
        self._timer.rearm()

    def begin_close(self) -> None:
        """A transport's first step in closing: what ``send`` holds still goes out, and the
        table's own goodbyes from here on are not events any more (``close`` says SHUTDOWN)."""
        self.write_held()
        self.closing = True

    def close(self) -> None:
        """Every peer gets PeerDisconnected(SHUTDOWN); stop the timer, fail every dial and probe
        still waiting, end the event stream."""
        self.closing = True
        for peer in list(self.peers):
            self.events.offer(PeerDisconnected(peer, DisconnectReason.SHUTDOWN))
        if self._timer is not None:
            self._timer.close()
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        for waiters in self._dials.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(
                        TransportUsageError(TransportReason.CLOSED, f"the {self.name} transport closed")
                    )
        for probe in self._probes.values():
            if probe.waiter is not None and not probe.waiter.done():
                probe.waiter.cancel()
        self.events.close()

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # -- the path -----------------------------------------------------------------------------

    def receive(self, data: bytes, addr: A) -> None:
        """One datagram the owner took for a session message (bad bytes are the table's count)."""
        self.bytes_received += len(data)
        self.table.receive_datagram(data, addr, self.now())
        self.pump()

    def receive_batch(self, batch: Sequence[tuple[bytes, A]]) -> None:
        """The session datagrams of one read of the socket: fed to the table in order, then one
        pump (events, writes, timer) for them all instead of one per datagram."""
        table = self.table
        now = self.now()
        size = 0
        for data, addr in batch:
            size += len(data)
            table.receive_datagram(data, addr, now)
        self.bytes_received += size
        self.pump()

    def pump(self) -> None:
        """After any input to the table: its events, its datagrams, its timer."""
        self.flush()
        if self._timer is not None:
            self._timer.rearm()

    def flush(self) -> None:
        table = self.table
        now = self.now()
        self._held = 0
        on_payload = self._on_payload
        while (event := table.next_event()) is not None:
            if type(event) is PeerDatagram:
                on_payload(event.peer_id, event.payload, now)
            else:
                self._on_event(event, now)
        if self._arrived:
            self._hand_on()
        out = table.datagrams_to_send(now)
        if out and not self.closing:
            self._transmit(out)
            self.bytes_sent += sum(len(data) for data, _ in out)

    def _pump_soon(self) -> None:
        self._flush_soon = None
        if not self.closing:
            self.pump()

    def _get_timer(self) -> float | None:
        deadlines = [
            at
            for at in (self.table.get_timer(), self.reassembler.get_timer(), self._next_health)
            if at is not None
        ]
        return min(deadlines) if deadlines else None

    def _handle_timer(self, now: float) -> None:
        self.table.handle_timer(now)
        self.reassembler.handle_timer(now)
        if self._next_health is not None and now >= self._next_health:
            self._next_health = now + self.settings.health_check_interval
            self.check_health()

    # -- table events -------------------------------------------------------------------------

    def _on_event(self, event: TableEvent[A], now: float) -> None:
        """Any table event but data (``flush`` takes those on its fast path)."""
        if self._arrived:
            self._hand_on()  # a peer's messages before what follows them (its disconnect)
        if isinstance(event, PeerEstablished):
            # It repeats when a newer session takes over: a PeerConnected again only when that
            # moved the peer's address (the consumer's path to it now ends there).
            moved = self._move(event.peer_id, event.addr)
            for waiter in self._dials.pop(event.peer_id, ()):
                if not waiter.done():
                    waiter.set_result(None)
            if moved:
                self.events.offer(PeerConnected(event.peer_id, self._endpoint(event.addr)))
        elif isinstance(event, PeerRoamed):
            # The peer's authenticated address changed (its NAT remapped it): the consumer's
            # path to it follows, told by a PeerConnected at the new endpoint.
            if self._move(event.peer_id, event.new):
                self.events.offer(PeerConnected(event.peer_id, self._endpoint(event.new)))
            log.info(
                "%s peer %s moved from %s to %s",
                self.name,
                event.peer_id,
                self._endpoint(event.old),
                self._endpoint(event.new),
            )
        elif isinstance(event, PeerGone):
            old = self.peers.pop(event.peer_id, None)
            if old is not None and self.on_address is not None:
                self.on_address(event.peer_id, old, None)
            if not self.closing:
                self.events.offer(PeerDisconnected(event.peer_id, event.reason.disconnect_reason))
        elif isinstance(event, DialFailed):
            error = dial_error(event)
            for waiter in self._dials.pop(event.expected_peer_id, ()):
                if not waiter.done():
                    waiter.set_exception(error)

    def _move(self, peer: PeerId, addr: A) -> bool:
        """``peer`` is at ``addr`` now; True if that is new (first seen, or moved)."""
        old = self.peers.get(peer)
        if old == addr:
            return False
        self.peers[peer] = addr
        if self.on_address is not None:
            self.on_address(peer, old, addr)
        return True

    def _on_payload(self, peer: PeerId, payload: bytes, now: float) -> None:
        if len(payload) < HEADER_SIZE:
            probe = parse_probe(payload)
            if probe is not None:
                self._on_probe(peer, *probe, now)
                return
        try:
            frame = self.reassembler.receive(peer, payload, now)
        except FragmentError as exc:  # counted by the reassembler; one debug line, never a crash
            log.debug("%s fragment from %s dropped: %s", self.name, peer, exc)
            return
        if frame is None:
            return
        self.received += 1
        arrived = self._arrived
        if len(self.events) + len(arrived) >= self.settings.event_queue:
            self.events_dropped += 1
            return
        if arrived and peer != self._arrived_from:
            self._hand_on()
            arrived = self._arrived
        self._arrived_from = peer
        arrived.append(frame)

    def _hand_on(self) -> None:
        """The messages gathered from one peer, as one MessagesReceived."""
        frames, self._arrived = self._arrived, []
        assert self._arrived_from is not None
        self.events.offer(MessagesReceived(self._arrived_from, tuple(frames)), len(frames))

    def _on_probe(self, peer: PeerId, kind: ProbeKind, token: int, now: float) -> None:
        if kind is ProbeKind.PING:
            # A probe is best effort: a PONG that cannot be sealed now is one the pinger counts lost.
            with contextlib.suppress(TableError, SessionNotReady):
                self.table.send(peer, encode_probe(ProbeKind.PONG, token), now)
            return
        probe = self._probes.get(token)
        if probe is None or probe.peer != peer:
            return  # late (already counted lost), or not ours
        del self._probes[token]
        rtt = now - probe.sent
        self.rtt.append(rtt)
        self.answered.append(True)
        if probe.waiter is not None and not probe.waiter.done():
            probe.waiter.set_result(rtt)

    # -- use ----------------------------------------------------------------------------------

    async def connect(self, peer: PeerId, addr: A, where: str) -> None:
        """Dial ``peer`` at ``addr`` (``where`` names it in errors) until it proved its id."""
        if peer in self.peers:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        dialling = peer in self._dials
        self._dials.setdefault(peer, []).append(waiter)
        started = loop.time()
        try:
            if not dialling:
                try:
                    self.table.connect(peer, addr, started)
                except TableError as exc:
                    raise TransportUsageError(
                        TransportReason.TOO_MANY_CONNECTIONS, f"cannot dial {peer} at {where}: {exc}"
                    ) from exc
                self.pump()
            try:
                async with asyncio.timeout(self.settings.connect_timeout):
                    await waiter
            except TimeoutError:
                raise TransportPeerError(
                    TransportReason.CONNECT_TIMEOUT,
                    f"{peer} at {where} did not complete a handshake within "
                    f"{self.settings.connect_timeout:g} s",
                ) from None
        finally:
            waiters = self._dials.get(peer)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._dials[peer]
        if not dialling:
            self.rtt.append(loop.time() - started)  # a handshake: one round trip and the key agreements

    def send(self, peer: PeerId, frame: Frame) -> None:
        """Seal ``frame``'s fragments to ``peer``; they are written at the end of the loop's turn
        (with whatever else is sent in it), or at once past HOLD_MAX held."""
        if peer not in self.peers:
            self.send_failures += 1
            raise TransportUsageError(TransportReason.NOT_CONNECTED, f"no {self.name} session with {peer}")
        now = self.now()
        table = self.table
        settings = self.settings
        try:
            for piece in fragment(frame, settings.plaintext, settings.max_message):
                table.send(peer, piece, now)
                self._held += 1
        except (TableError, SessionNotReady) as exc:
            self.send_failures += 1
            raise TransportUsageError(
                TransportReason.NOT_CONNECTED, f"the {self.name} session with {peer} cannot seal now: {exc}"
            ) from exc
        finally:
            # What was sealed goes out even when a later fragment could not be.
            if self._held >= HOLD_MAX or self._loop is None:
                self.pump()
            elif self._flush_soon is None:
                self._flush_soon = self._loop.call_soon(self._pump_soon)
        self.sent += 1

    def abandon(self, gone: Callable[[A], bool]) -> None:
        """The way to the addresses ``gone`` accepts went away: dials there fail now (CONNECT_FAILED)."""
        self.table.abandon(gone, self.now())
        self.pump()

    def disconnect(self, peer: PeerId, reason: GoneReason = GoneReason.CLOSED_LOCALLY) -> None:
        if peer in self.peers:
            self.write_held()  # what was sent before the close goes out before it
            self.table.close(peer, self.now(), reason)
            self.pump()

    def write_held(self) -> None:
        """Write now what ``send`` sealed and holds for the end of the loop's turn."""
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
            self.pump()

    async def ping(self, peer: PeerId) -> float:
        """One probe round trip to ``peer`` in seconds (also an RTT sample)."""
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
        now = self.now()
        token = int.from_bytes(os.urandom(8), "big")
        try:
            self.table.send(peer, encode_probe(ProbeKind.PING, token), now)
        except (TableError, SessionNotReady) as exc:
            raise TransportUsageError(TransportReason.NOT_CONNECTED, f"cannot probe {peer}: {exc}") from exc
        self._probes[token] = _Probe(peer, now, waiter)
        self.pump()

    def check_health(self) -> None:
        """Count the probes unanswered in time as lost, then probe every peer."""
        now = self.now()
        for token, probe in list(self._probes.items()):
            if now - probe.sent >= self.settings.probe_timeout:
                del self._probes[token]
                self.answered.append(False)
        for peer in list(self.peers):
            try:
                self._probe(peer, None)
            except TransportUsageError:
                self.answered.append(False)

    def malformed(self) -> int:
        return self.table.counts[TableCount.MALFORMED]

    def health(
        self, kind: TransportKind, state: TransportState, connections: int, malformed: int = 0
    ) -> TransportHealth:
        """The path's numbers; ``malformed`` adds what the owner dropped before the table."""
        samples = list(self.rtt)
        answered = list(self.answered)
        return TransportHealth(
            kind=kind,
            state=state,
            connections=connections,
            messages_sent=self.sent,
            messages_received=self.received,
            bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received,
            send_failures=self.send_failures,
            malformed_dropped=malformed + self.malformed(),
            rtt_ms=statistics.median(samples) * 1000 if samples else None,
            loss=answered.count(False) / len(answered) if answered else None,
        )


def dial_error(event: DialFailed[A]) -> TransportPeerError:
    addr = tuple(event.addr) if isinstance(event.addr, tuple) else (event.addr, "?")
    where = f"{event.expected_peer_id} at {addr[0]} port {addr[1]}"
    error = event.error
    if isinstance(error, PeerVerificationError) and error.reason is VerifyFailure.WRONG_PEER:
        return TransportPeerError(TransportReason.PEER_MISMATCH, f"dialled {where}: {error}")
    if event.reason is HandshakeFailure.TIMEOUT:
        return TransportPeerError(TransportReason.CONNECT_TIMEOUT, f"no handshake answer from {where}")
    if event.reason is HandshakeFailure.PATH_GONE:
        return TransportPeerError(
            TransportReason.CONNECT_FAILED, f"the way to {where} went during the handshake"
        )
    return TransportPeerError(TransportReason.AUTH_FAILED, f"{where} failed the handshake: {error}")


class OverSessionPath(Generic[A]):
    """The Transport methods that a transport running its sessions in a ``SessionPath`` (UDP,
    TURN) passes straight to it; mixed in before ``Transport``."""

    _path: SessionPath[A]

    async def disconnect(self, peer: PeerId) -> None:
        self._path.disconnect(peer)

    async def ping(self, peer: PeerId) -> float:
        """One probe round trip to ``peer`` in seconds (also an RTT sample for ``health``)."""
        return await self._path.ping(peer)

    def events(self) -> AsyncIterator[TransportEvent]:
        return unbatched(self._path.events.__aiter__())

    def batched_events(self) -> AsyncIterator[BatchedEvent]:
        return self._path.events.__aiter__()
