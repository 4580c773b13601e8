"""The coordinator service: the asyncio driver of the coordinator core (path choice) and the
delivery cores (exactly-once, in order per class) over every transport of the node.

It owns, in one TaskGroup (via the service's exit stack):
- one reader per transport (``batched_events``): PeerConnected adds a path (or moves it: a new
  connection replaced the old, or a UDP peer roamed to a new address), PeerDisconnected removes
  it (what was in flight on it is resent on the next path at once), MessagesReceived are
  delivery DATA (to the Receiver, then the inbox) and ACK frames (to the peer's sender);
- one sending task per peer (node.services.coordinator.sending): its DATA and the ACKs due to
  it, so a peer whose path is backed up holds up no other;
- the tick, health checks and load updates (node.services.coordinator.upkeep);
- dialling: static peers (``[peers] static``) kept dialled in the background with backoff, and
  ``connect`` attempts (node.services.coordinator.dialing).
Timers of the delivery cores run on ``CoreTimer``s. Nothing a peer sends can raise into the
TaskGroup: event handling runs behind a ``ConnectionIsolation`` wall, malformed delivery frames
are counted (``malformed``) and logged once.

The application API (``NodeApi``, node.services.coordinator.api) calls ``connect``, ``send``,
``inbox``, ``events`` and ``peers`` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from contextlib import AsyncExitStack
from ipaddress import IPv4Address, IPv6Address
from typing import Any, TypeAlias

from node.config import Config
from node.errors import NodeError
from node.proto.coordinator import (
    TICK_INTERVAL_S,
    Coordinator,
    CoordinatorError,
    PathKey,
    PeerView,
)
from node.proto.delivery.errors import AckError, AckProblem, WireError
from node.proto.delivery.ids import MessageId
from node.proto.delivery.receiver import Receiver
from node.proto.delivery.wire import DataFrame, decode
from node.proto.natprobe.types import NatType
from node.proto.peer_uri import PeerUri
from node.proto.vocabulary import (
    BatchedEvent,
    DisconnectReason,
    Endpoint,
    Frame,
    MessagesReceived,
    PeerConnected,
    PeerId,
    Priority,
    TransportKind,
)
from node.services.ble import BleService
from node.services.coordinator.carriers import BleCarrier, Carrier, TlsCarrier, TurnCarrier, UdpCarrier
from node.services.coordinator.dialing import Dialer
from node.services.coordinator.errors import ApiReason, ApiUsageError, PeerUnreachableError
from node.services.coordinator.inbox import Inbox
from node.services.coordinator.observer import NO_OBSERVER, CoordinatorObserver
from node.services.coordinator.outbound import PeerOutbound
from node.services.coordinator.paths import PathBook
from node.services.coordinator.peer_events import PeerEvents
from node.services.coordinator.records import (
    Connected,
    InboundMessage,
    PathMethod,
    PeerEvent,
    PeerState,
    Sent,
    Traversal,
)
from node.services.coordinator.sending import Sending
from node.services.coordinator.settings import coordinator_settings, delivery_settings, max_payload
from node.services.coordinator.status import CoordinatorView, Counters, PeerRow
from node.services.coordinator.upkeep import Upkeep
from node.services.service import Service
from node.services.tcp_tls import TcpTlsService
from node.services.turn import TurnService
from node.services.udp import UdpService
from node.transports.isolation import ConnectionIsolation
from node.transports.timer import CoreTimer

log = logging.getLogger(__name__)

# A side protocol's frame handler: (peer, kind of path it came on, the frame's payload).
SideHandler: TypeAlias = Callable[[PeerId, TransportKind, bytes], None]
# Asks the introducers for ``peer`` and sets up its paths (relay, then a punch) within a deadline
# in seconds; raises a NodeError when no introducer knows the peer.
Introduce: TypeAlias = Callable[[PeerId, float], Awaitable[None]]
# Traversal records kept (one per peer, the newest): beyond it the oldest is forgotten.
MAX_TRAVERSALS = 4096

# A path that was dead may come back without any event (a health check answers): waiters for a
# usable path look again this often.
_RECHECK_S = TICK_INTERVAL_S


class CoordinatorService(Service[CoordinatorView]):
    name = "coordinator"

    def __init__(
        self,
        config: Config,
        peer_id: PeerId,
        udp: UdpService,
        tls: TcpTlsService | None = None,
        turn: TurnService | None = None,
        *,
        ble: BleService | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.peer_id = peer_id
        capacity = config.transport.max_connections
        carriers: list[Carrier] = [UdpCarrier(udp, capacity)]
        if tls is not None:
            carriers.append(TlsCarrier(tls, capacity))
        if turn is not None:
            carriers.append(TurnCarrier(turn, capacity))
        if ble is not None:
            carriers.append(BleCarrier(ble))
        self.carriers: dict[TransportKind, Carrier] = {c.kind: c for c in carriers}
        self.coordinator = Coordinator(coordinator_settings(config), breaker=config.breaker.new_breaker)
        self.delivery = delivery_settings(config)
        self.max_payload = max_payload(config)
        self.receiver = Receiver(self.delivery)
        self.inbox = Inbox(self._taken)
        self.events = PeerEvents()
        self.book = PathBook()
        self.counters = Counters()
        self.wall = ConnectionIsolation("coordinator")
        self.dialer = Dialer(config, self.carriers, self.book, self._spawn)
        self._observer: CoordinatorObserver = NO_OBSERVER
        self._static: dict[PeerId, list[PeerUri]] = {}
        for static in config.peers.static_peers:
            if static.peer_id != peer_id:
                self._static.setdefault(static.peer_id, []).append(static.uri)
        # The path a peer's news (DATA not received before) last came on: its ACKs go there. And
        # a path that since brought only copies (or ACKs): the next ACK goes there too. Copies
        # come both when the peer resends on a new path (our ACKs on the old one were lost: it
        # must hear us on the new one) and when a path back from an outage delivers its stale
        # backlog (the peer's traffic is elsewhere: ACKs must not follow the backlog alone).
        self._reply: dict[PeerId, PathKey] = {}
        self._reply_also: dict[PeerId, PathKey] = {}
        self._arrived: dict[PeerId, TransportKind] = {}
        # Frames of side protocols that share the paths with delivery (the rendezvous, type 3),
        # by their first byte: the delivery decoder refuses them, then their handler takes them.
        self.side_handlers: dict[int, SideHandler] = {}
        # The rendezvous: connect() without addresses asks it (set by the daemon when there are
        # introducers), and it records what each peer's traversal found.
        self.introduce: Introduce | None = None
        self.traversals: OrderedDict[PeerId, Traversal] = OrderedDict()
        self._side_ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sending: Sending | None = None
        self._upkeep: Upkeep | None = None
        self._receiver_timer: CoreTimer | None = None
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def observer(self) -> CoordinatorObserver:
        """Told what happens, for the node's metrics (the daemon sets its NodeMetrics here)."""
        return self._observer

    @observer.setter
    def observer(self, observer: CoordinatorObserver) -> None:
        self._observer = observer
        for part in (self._sending, self._upkeep):
            if part is not None:
                part.observer = observer

    def set_nat_type(self, nat: NatType) -> None:
        """NAT discovery classified this node's NAT: the decision matrix's prior follows it."""
        self.coordinator.set_nat_type(nat)

    # -- lifecycle ----------------------------------------------------------------------------

    async def _start(self, stack: AsyncExitStack) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._sending = Sending(
            coordinator=self.coordinator,
            carriers=self.carriers,
            settings=self.delivery,
            counters=self.counters,
            wall=self.wall,
            loop=loop,
            spawn=self._spawn_quietly,
            reply_path=self._reply,
            reply_also=self._reply_also,
            observer=self.observer,
        )
        self._upkeep = Upkeep(
            config=self.config,
            coordinator=self.coordinator,
            carriers=self.carriers,
            book=self.book,
            sending=self._sending,
            counters=self.counters,
            wall=self.wall,
            spawn=self._spawn,
            observer=self.observer,
        )
        self._receiver_timer = CoreTimer(loop, self.receiver.get_timer, _no_timer_work, self._take_acks)
        stack.callback(self._close)  # the first in, so the last out: after every task ended
        self._group = await stack.enter_async_context(asyncio.TaskGroup())
        stack.callback(self._cancel_tasks)  # before the TaskGroup waits for them
        for carrier in self.carriers.values():
            self._spawn(self._read(carrier), f"coordinator-{carrier.kind.value}")
        self._upkeep.start()
        for peer, uris in self._static.items():
            for uri in uris:
                self._spawn(self.dialer.keep_dialled(peer, uri), f"coordinator-static-{uri}")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        if self._group is None or self._closing:
            coro.close()
            raise ApiUsageError(ApiReason.CLOSED, f"the coordinator is not running ({name})")
        task = self._group.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _spawn_quietly(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None] | None:
        """``_spawn`` for what the node starts by itself (a peer's sending task): None once closing."""
        if self._group is None or self._closing:
            coro.close()
            return None
        return self._spawn(coro, name)

    def _cancel_tasks(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()

    def _close(self) -> None:
        self._closing = True
        self.inbox.close()
        self.events.close()
        if self._receiver_timer is not None:
            self._receiver_timer.close()
        if self._sending is not None:
            self._sending.close()

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    @property
    def sending(self) -> Sending:
        if self._sending is None:
            raise ApiUsageError(ApiReason.CLOSED, "the coordinator has not started")
        return self._sending

    # -- transport events -----------------------------------------------------------------------

    async def _read(self, carrier: Carrier) -> None:
        call = self.wall.call
        who = f"{carrier.kind.value} event"
        async for transport in carrier.streams():
            async for event in transport.batched_events():
                call(self._on_event, who, carrier, event)

    def _on_event(self, carrier: Carrier, event: BatchedEvent) -> None:
        now = self._now()
        if isinstance(event, MessagesReceived):
            self._on_messages(carrier.kind, event.peer, event.frames, now)
        elif isinstance(event, PeerConnected):
            self._path_up(carrier, event.peer, event.endpoint, now)
        else:
            key = self.book.remove(event.peer, carrier.kind)
            if key is not None:
                self._forget(event.peer, key, event.reason, now)

    def _path_up(self, carrier: Carrier, peer: PeerId, endpoint: Endpoint, now: float) -> None:
        key = PathKey.of(carrier.kind, carrier.local(peer, endpoint), endpoint)
        replaced = self.book.add(peer, key)
        self.coordinator.add_path(peer, key, now)
        if replaced is not None:
            # The transport's path to the peer moved (a new connection replaced the old, or the
            # peer roamed to a new address): the old path is gone, and what was in flight on it
            # goes again (on the new one, unless a better path exists).
            self._forget(peer, replaced, DisconnectReason.CLOSED_BY_PEER, now)
        log.info(
            "coordinator: path up: peer=%s kind=%s local=%s remote=%s",
            peer,
            key.kind.value,
            key.local,
            key.remote,
        )
        self.events.publish(PeerEvent(peer, PeerState.CONNECTED, key))
        if self._sending is not None:
            self._sending.path_up(peer)
        if self._upkeep is not None:
            # An RTT sample at once: until the path has one its RTO is the initial 1 s, and
            # calling it silent (two RTOs) would take 2 s instead of a few hundred ms.
            self._spawn_quietly(self._upkeep.probe(peer, key), f"coordinator-probe-{peer}")

    def _forget(self, peer: PeerId, key: PathKey, reason: DisconnectReason, now: float) -> None:
        with contextlib.suppress(CoordinatorError):
            self.coordinator.remove_path(peer, key, reason, now)
        if self._reply.get(peer) == key:
            del self._reply[peer]
        if self._reply_also.get(peer) == key:
            del self._reply_also[peer]
        log.info(
            "coordinator: path down: peer=%s kind=%s remote=%s reason=%s",
            peer,
            key.kind.value,
            key.remote,
            reason.value,
        )
        self.events.publish(PeerEvent(peer, PeerState.DISCONNECTED, key))
        if peer in self.coordinator.peers():
            self.sending.path_failed(peer, key)  # resend what was in flight on it, on the next path

    def _on_messages(self, kind: TransportKind, peer: PeerId, frames: Sequence[Frame], now: float) -> None:
        key = self.book.get(peer, kind)
        news = False
        self._arrived[peer] = kind
        receiver = self.receiver
        limit = self.max_payload
        acked: PeerOutbound | None = None
        for frame in frames:
            try:
                decoded = decode(frame.payload, limit)
            except WireError as exc:
                side = self.side_handlers.get(frame.payload[0]) if frame.payload else None
                if side is None:
                    self._malformed(peer, exc)
                else:  # a side protocol's frame (rendezvous): not delivery traffic
                    side(peer, kind, frame.payload)
                continue
            if isinstance(decoded, DataFrame):
                news |= receiver.receive(peer, decoded, now)
                continue
            out = self.sending.out.get(peer)
            try:
                if out is None:
                    raise AckError(AckProblem.BEYOND_SENT, "an ACK, and this node never sent it anything")
                out.sender.on_ack(decoded, now)
            except AckError as exc:
                self._malformed(peer, exc)
                continue
            acked = out
        if key is not None:
            if news or peer not in self._reply:
                self._reply[peer] = key
                self._reply_also.pop(peer, None)
            elif self._reply[peer] != key:
                self._reply_also[peer] = key
        if acked is not None:
            if key is not None:
                with contextlib.suppress(CoordinatorError):
                    self.coordinator.record_heard(peer, key, now)
            self.sending.after_ack(acked)
        self._deliver()
        self._take_acks()

    def _malformed(self, peer: PeerId, exc: NodeError) -> None:
        self.counters.malformed += 1
        n = self.counters.malformed
        if n & (n - 1) == 0:  # the 1st, then the 2nd, 4th, 8th...: a peer cannot flood the log
            log.warning("coordinator: dropped a delivery frame from %s (%d so far): %s", peer, n, exc)

    def _deliver(self) -> None:
        receiver, inbox, arrived, counters = self.receiver, self.inbox, self._arrived, self.counters
        observer = self.observer
        while (event := receiver.next_event()) is not None:
            mid = event.message_id
            peer = event.peer
            kind = arrived[peer]
            inbox.put(InboundMessage(peer, str(mid), mid.priority, kind, event.payload))
            counters.received += 1
            observer.message_received(kind)

    def _take_acks(self) -> None:
        acks = self.receiver.datagrams_to_send(self._now())
        if acks:
            reply = self.sending.reply
            for peer, ack in acks:
                reply(peer, ack)
        if self._receiver_timer is not None:
            self._receiver_timer.rearm()

    def _taken(self, size: int) -> None:
        """A subscriber took a message of ``size`` bytes: the Receiver may release more."""
        if self.receiver.consumed(size, self._now()):
            self._deliver()
            self._take_acks()

    # -- the API's operations -----------------------------------------------------------------

    async def send(self, peer: PeerId, data: bytes, priority: Priority, reliable: bool) -> MessageId:
        return (await self.deliver(peer, data, priority, reliable)).message_id

    async def deliver(self, peer: PeerId, data: bytes, priority: Priority, reliable: bool) -> Sent:
        """``send``, also telling the kind of path the message was acknowledged on (reliable) or
        sent on (unreliable), for the control socket's per-kind counts."""
        if self._closing or self._loop is None:
            raise ApiUsageError(ApiReason.CLOSED, f"cannot send to {peer}: the coordinator is not running")
        size = len(data)
        if size > self.max_payload:
            raise ApiUsageError(
                ApiReason.TOO_LARGE,
                f"{size} bytes to {peer}; at most {self.max_payload} (transport.max_message_bytes)",
            )
        if not self._usable_now(peer):
            await self._usable(peer)
        sending = self.sending
        out = sending.outbound(peer)
        loop = self._loop
        if not reliable:
            mid = out.sender.offer(data, priority, loop.time(), reliable=False)
            assert mid is not None  # unreliable messages never wait for the window
            connected = self._connected(peer)  # the primary the flush picks now
            sending.schedule(out)
            return Sent(mid, None if connected is None else connected.active.kind)
        while True:
            if out.room or not out.sender.can_offer(size):
                await out.wait_for_room(size)
            offered = out.sender.offer(data, priority, loop.time())
            if offered is not None:
                break
        mid = offered
        future: asyncio.Future[TransportKind | None] = loop.create_future()
        out.acks[mid] = future
        out.grant()
        # No timer rearm here: the message leaves with the task's next flush, which rearms
        # the timer once for the whole batch (a rearm per message cost ~1.5 µs of heap work).
        sending.schedule(out)  # its task sends this turn's messages together
        try:
            kind = await future
        finally:
            out.acks.pop(mid, None)  # given up on (cancelled): still delivered, nobody waits
        return Sent(mid, kind)

    def _usable_now(self, peer: PeerId) -> bool:
        try:
            self.coordinator.choose(peer, Priority.NORMAL, self._now())
        except CoordinatorError:
            return False
        return True

    async def _usable(self, peer: PeerId) -> None:
        """Return when ``peer`` has a usable path; wait up to the failover timeout for one."""
        if self._usable_now(peer):
            return
        known = (
            peer in self.coordinator.peers()
            or peer in self.sending.out
            or peer in self._static
            or self.dialer.dialling[peer] > 0
        )
        if not known:
            raise PeerUnreachableError(
                ApiReason.UNKNOWN_PEER, f"{peer}: no path to it and none being dialled (connect to it first)"
            )
        wait = self.config.transport.failover_timeout_s
        try:
            async with asyncio.timeout(wait):
                while not self._usable_now(peer):
                    await self._changed_or_recheck()
        except TimeoutError:
            raise PeerUnreachableError(
                ApiReason.NO_PATH,
                f"no usable path to {peer} within {wait:g} s (transport.failover_timeout_s)",
            ) from None

    async def _changed_or_recheck(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_RECHECK_S):
                await self.book.changed()

    async def connect(self, peer: PeerId, uris: Sequence[PeerUri], wait_s: float | None) -> Connected:
        if self._closing:
            raise ApiUsageError(ApiReason.CLOSED, f"cannot connect to {peer}: the coordinator is not running")
        wait = self.config.transport.connect_timeout_s if wait_s is None else wait_s
        started = self._now()
        targets = list(uris) or self._static.get(peer, [])
        errors: list[str] = []
        dialer = self.dialer
        attempts = [self._spawn(dialer.attempt(peer, uri, errors), f"connect-{uri}") for uri in targets]
        if not uris and self.introduce is not None:
            attempts.append(self._spawn(self._introduced(peer, wait, errors), f"introduce-{peer}"))
        dialer.dialling[peer] += 1
        try:
            async with asyncio.timeout(wait):
                while (connected := self._connected(peer)) is None:
                    if attempts and all(a.done() for a in attempts) and len(errors) == len(attempts):
                        raise PeerUnreachableError(ApiReason.CONNECT_FAILED, f"{peer}: {'; '.join(errors)}")
                    await self._changed_or_recheck()
                return dataclasses.replace(connected, time_to_first_s=self._now() - started)
        except TimeoutError:
            why = "; ".join(errors) if errors else "no path came up"
            raise PeerUnreachableError(ApiReason.NO_PATH, f"{peer} within {wait:g} s: {why}") from None
        finally:
            dialer.dialling[peer] -= 1
            if not dialer.dialling[peer]:
                del dialer.dialling[peer]

    async def _introduced(self, peer: PeerId, wait: float, errors: list[str]) -> None:
        assert self.introduce is not None
        try:
            await self.introduce(peer, wait)
        except NodeError as exc:
            errors.append(f"rendezvous: {exc}")
        finally:
            self.book.poke()

    async def disconnect(self, peer: PeerId) -> tuple[TransportKind, ...]:
        """Close every path to ``peer`` (each transport's connection or session); the kinds
        closed. A static peer is dialled again by its keeper; an introduced one only when asked."""
        closed: list[TransportKind] = []
        for kind, carrier in self.carriers.items():
            transport = carrier.current()
            if transport is not None and self.book.get(peer, kind) is not None:
                await transport.disconnect(peer)
                closed.append(kind)
        return tuple(closed)

    def _connected(self, peer: PeerId) -> Connected | None:
        try:
            active = self.coordinator.choose(peer, Priority.NORMAL, self._now()).primary
        except CoordinatorError:
            return None
        direct, method = self.describe(peer, active)
        traversal = self.traversals.get(peer)
        after = None if traversal is None else traversal.direct_after_s
        return Connected(peer, active, self.coordinator.paths(peer), direct, method, None, after)

    def has_path(self, peer: PeerId) -> bool:
        """Whether any path to ``peer`` is known (working or not)."""
        return any(self.book.get(peer, kind) is not None for kind in self.carriers)

    def describe(self, peer: PeerId, key: PathKey) -> tuple[bool, PathMethod]:
        """Whether ``key`` is a direct path to ``peer``, and how it was found."""
        if key.kind is TransportKind.TURN:
            return False, PathMethod.RELAY
        if key.kind is TransportKind.TCP_TLS:
            return True, PathMethod.TCP_TLS
        traversal = self.traversals.get(peer)
        if traversal is not None:
            if key.remote in traversal.relays:
                return False, PathMethod.RELAY  # a UDP session to the peer's relayed address
            if key.remote == traversal.direct and traversal.method is not None:
                return True, traversal.method
        return True, PathMethod.HOST

    def record_traversal(self, peer: PeerId, traversal: Traversal) -> None:
        self.traversals[peer] = traversal
        self.traversals.move_to_end(peer)
        while len(self.traversals) > MAX_TRAVERSALS:
            self.traversals.popitem(last=False)

    async def send_side(self, peer: PeerId, payload: bytes) -> None:
        """Send a side protocol's frame to ``peer`` on its TCP-TLS link (reliable, in order; a
        side protocol keeps no state a lost link would not reset). Raises a TransportError when
        there is no such link."""
        carrier = self.carriers.get(TransportKind.TCP_TLS)
        transport = None if carrier is None else carrier.current()
        if transport is None:
            raise ApiUsageError(ApiReason.CLOSED, "TCP-TLS is off: no link for rendezvous frames")
        await transport.send(peer, Frame(next(self._side_ids), payload, Priority.HIGH))

    # -- the link monitor -----------------------------------------------------------------------

    def network_down(self, lost: Collection[IPv4Address | IPv6Address]) -> None:
        """The link monitor saw these local addresses go: every path leaving from one fails now
        and traffic moves at once (the transports also close what they carried on them)."""
        now = self._now()
        for ip in lost:
            self.coordinator.link_down(str(ip), now)
        if self._upkeep is not None:
            self._upkeep.tick()

    # -- views --------------------------------------------------------------------------------

    def peers(self) -> tuple[PeerView, ...]:
        return self.coordinator.snapshot(self._now()) if self._loop is not None else ()

    def status(self) -> CoordinatorView:
        rows = tuple(PeerRow(v.peer, v.active, len(v.paths)) for v in self.peers())
        return CoordinatorView(rows, dataclasses.replace(self.counters), len(self.inbox))


def _no_timer_work(now: float) -> None:
    """The Receiver's timer only makes delayed ACKs due; ``datagrams_to_send`` takes them."""
