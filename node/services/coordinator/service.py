"""The coordinator service: the asyncio driver of the coordinator core (path choice) and the
delivery cores (exactly-once, in order per class) over every transport of the node.

It owns, in one TaskGroup (via the service's exit stack):
- one reader per transport (``batched_events``): PeerConnected adds a path, PeerDisconnected
  removes it (what was in flight on it is resent on the next path at once), MessagesReceived
  are delivery DATA (to the Receiver, then the inbox) and ACK frames (to the peer's sender);
- the pump: every frame leaves from here or from a caller's ``send`` (one flush per peer at a
  time, so frames leave in the order the sender made them); ACKs go back on the path the data
  came from (else the best one);
- the tick (``TICK_INTERVAL_S``): the core re-ranks paths; failovers are counted and logged;
  a half-open breaker's trial is a ping on that path;
- health checks every ``transport.health_check_interval_s`` (a ping per path: an RTT sample)
  and load updates every ``coordinator.metric_update_interval_s``;
- dialling: static peers (``[peers] static``) kept dialled in the background with backoff,
  and ``connect`` attempts.
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
from collections import Counter
from collections.abc import Collection, Coroutine, Iterable, Sequence
from contextlib import AsyncExitStack
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from node.config import Config
from node.errors import NodeError
from node.proto.coordinator import (
    TICK_INTERVAL_S,
    ActivePathChanged,
    ChangeReason,
    Coordinator,
    CoordinatorError,
    DownReason,
    Outcome,
    PathHealthChanged,
    PathKey,
    PeerView,
    TrialDue,
)
from node.proto.delivery.errors import AckError, AckProblem, WireError
from node.proto.delivery.events import Acknowledged, SendReason, Transmit
from node.proto.delivery.ids import MessageId
from node.proto.delivery.receiver import Receiver
from node.proto.delivery.wire import DATA_HEADER, DataFrame, decode
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
    make_frame,
)
from node.services.coordinator.carriers import Carrier, TlsCarrier, TurnCarrier, UdpCarrier
from node.services.coordinator.dialing import Backoff, endpoint_of
from node.services.coordinator.errors import ApiReason, ApiUsageError, PeerUnreachableError
from node.services.coordinator.inbox import Inbox
from node.services.coordinator.observer import NO_OBSERVER, CoordinatorObserver
from node.services.coordinator.outbound import PeerOutbound
from node.services.coordinator.paths import PathBook
from node.services.coordinator.peer_events import PeerEvents
from node.services.coordinator.records import Connected, InboundMessage, PeerEvent, PeerState, Sent
from node.services.coordinator.settings import coordinator_settings, delivery_settings, max_payload
from node.services.coordinator.status import CoordinatorView, Counters, PeerRow
from node.services.service import Service
from node.services.tcp_tls import TcpTlsService
from node.services.turn import TurnService
from node.services.udp import UdpService
from node.transports.base import TransportError
from node.transports.isolation import ConnectionIsolation
from node.transports.timer import CoreTimer

log = logging.getLogger(__name__)

# A path that was dead may come back without any event (a health check answers): waiters for a
# usable path look again this often.
_RECHECK_S = TICK_INTERVAL_S
# Paths a transmission may try in a row when sends fail (each failure marks that path failed).
_MAX_TRIES = 4


class CoordinatorService(Service[CoordinatorView]):
    name = "coordinator"

    def __init__(
        self,
        config: Config,
        peer_id: PeerId,
        udp: UdpService,
        tls: TcpTlsService | None = None,
        turn: TurnService | None = None,
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
        # Told what happens, for the node's metrics (the daemon sets its NodeMetrics here).
        self.observer: CoordinatorObserver = NO_OBSERVER
        self._static: dict[PeerId, list[PeerUri]] = {}
        for static in config.peers.static_peers:
            if static.peer_id != peer_id:
                self._static.setdefault(static.peer_id, []).append(static.uri)
        self._out: dict[PeerId, PeerOutbound] = {}
        self._reply: dict[PeerId, PathKey] = {}  # the path a peer's data last came on
        self._arrived: dict[PeerId, TransportKind] = {}
        self._acks: list[tuple[PeerId, bytes]] = []  # ACKs due, for the pump
        self._due: set[PeerOutbound] = set()  # senders with frames to flush, for the pump
        self._wake = asyncio.Event()
        self._frame_ids = itertools.count(1)
        self._dialling: Counter[PeerId] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._receiver_timer: CoreTimer | None = None
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def _start(self, stack: AsyncExitStack) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._receiver_timer = CoreTimer(loop, self.receiver.get_timer, _no_timer_work, self._take_acks)
        stack.callback(self._close)  # the first in, so the last out: after every task ended
        self._group = await stack.enter_async_context(asyncio.TaskGroup())
        stack.callback(self._cancel_tasks)  # before the TaskGroup waits for them
        for carrier in self.carriers.values():
            self._spawn(self._read(carrier), f"coordinator-{carrier.kind.value}")
        self._spawn(self._pump(), "coordinator-pump")
        self._spawn(self._ticks(), "coordinator-tick")
        self._spawn(self._health_checks(), "coordinator-health")
        self._spawn(self._load_updates(), "coordinator-load")
        for peer, uris in self._static.items():
            for uri in uris:
                self._spawn(self._keep_dialled(peer, uri), f"coordinator-static-{uri}")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        if self._group is None or self._closing:
            coro.close()
            raise ApiUsageError(ApiReason.CLOSED, f"the coordinator is not running ({name})")
        task = self._group.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
        for peer, out in self._out.items():
            out.close()
            for future in out.acks.values():
                if not future.done():
                    future.set_exception(
                        ApiUsageError(ApiReason.CLOSED, f"the node stopped before {peer} acknowledged")
                    )

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

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
        if replaced is not None:  # the transport's new connection to the peer replaced the old
            self._forget(peer, replaced, DisconnectReason.CLOSED_BY_PEER, now)
        self.coordinator.add_path(peer, key, now)
        log.info(
            "coordinator: path up: peer=%s kind=%s local=%s remote=%s",
            peer,
            key.kind.value,
            key.local,
            key.remote,
        )
        self.events.publish(PeerEvent(peer, PeerState.CONNECTED, key))

    def _forget(self, peer: PeerId, key: PathKey, reason: DisconnectReason, now: float) -> None:
        with contextlib.suppress(CoordinatorError):
            self.coordinator.remove_path(peer, key, reason, now)
        if self._reply.get(peer) == key:
            del self._reply[peer]
        log.info(
            "coordinator: path down: peer=%s kind=%s remote=%s reason=%s",
            peer,
            key.kind.value,
            key.remote,
            reason.value,
        )
        self.events.publish(PeerEvent(peer, PeerState.DISCONNECTED, key))
        out = self._out.get(peer)
        if out is not None and key in out.sent_on.values() and peer in self.coordinator.peers():
            out.failed_path = True  # resend what was in flight on it, now, on the next path
            self._schedule(out)

    def _on_messages(self, kind: TransportKind, peer: PeerId, frames: Sequence[Frame], now: float) -> None:
        key = self.book.get(peer, kind)
        if key is not None:
            self._reply[peer] = key
        self._arrived[peer] = kind
        receiver = self.receiver
        limit = self.max_payload
        acked: PeerOutbound | None = None
        for frame in frames:
            try:
                decoded = decode(frame.payload, limit)
            except WireError as exc:
                self._malformed(peer, exc)
                continue
            if isinstance(decoded, DataFrame):
                receiver.receive(peer, decoded, now)
                continue
            out = self._out.get(peer)
            try:
                if out is None:
                    raise AckError(AckProblem.BEYOND_SENT, "an ACK, and this node never sent it anything")
                out.sender.on_ack(decoded, now)
            except AckError as exc:
                self._malformed(peer, exc)
                continue
            acked = out
        if acked is not None:
            self._after_sender(acked)
        self._deliver()
        self._take_acks()

    def _malformed(self, peer: PeerId, exc: NodeError) -> None:
        self.counters.malformed += 1
        n = self.counters.malformed
        if n & (n - 1) == 0:  # the 1st, then the 2nd, 4th, 8th...: a peer cannot flood the log
            log.warning("coordinator: dropped a delivery frame from %s (%d so far): %s", peer, n, exc)

    def _deliver(self) -> None:
        receiver, inbox, arrived = self.receiver, self.inbox, self._arrived
        while (event := receiver.next_event()) is not None:
            mid = event.message_id
            peer = event.peer
            kind = arrived[peer]
            inbox.put(InboundMessage(peer, str(mid), mid.priority, kind, event.payload))
            self.counters.received += 1
            self.observer.message_received(kind)

    def _take_acks(self) -> None:
        acks = self.receiver.datagrams_to_send(self._now())
        if acks:
            self._acks.extend(acks)
            self._wake.set()
        if self._receiver_timer is not None:
            self._receiver_timer.rearm()

    def _taken(self, size: int) -> None:
        """A subscriber took a message of ``size`` bytes: the Receiver may release more."""
        self.receiver.consumed(size, self._now())
        self._deliver()
        self._take_acks()

    # -- the sending side -----------------------------------------------------------------------

    def _outbound(self, peer: PeerId) -> PeerOutbound:
        out = self._out.get(peer)
        if out is None:
            assert self._loop is not None
            out = self._out[peer] = PeerOutbound(peer, self.delivery, self._loop, self._on_sender_timer)
        return out

    def _on_sender_timer(self, out: PeerOutbound) -> None:
        self._sender_events(out)
        self._schedule(out)

    def _schedule(self, out: PeerOutbound) -> None:
        self._due.add(out)
        self._wake.set()

    def _after_sender(self, out: PeerOutbound) -> None:
        self._sender_events(out)
        out.timer.rearm()
        self._schedule(out)

    def _sender_events(self, out: PeerOutbound) -> None:
        sender, peer = out.sender, out.peer
        now = self._now()
        while (event := sender.next_event()) is not None:
            mid = event.message_id
            path = out.sent_on.pop(mid, None)
            future = out.acks.pop(mid, None)
            if isinstance(event, Acknowledged):
                self.counters.acknowledged += 1
                if path is not None:
                    self._outcome(peer, path, Outcome.ACKED, now)
                if future is not None and not future.done():
                    future.set_result(None if path is None else path.kind)
                continue
            self.counters.failed += 1
            if path is not None:
                self._outcome(peer, path, Outcome.LOST, now)
            if future is not None and not future.done():
                future.set_exception(
                    PeerUnreachableError(
                        ApiReason.DELIVERY_FAILED,
                        f"message {mid} to {peer}: {event.reason.value}",
                        event.reason,
                    )
                )
        out.grant()

    def _outcome(self, peer: PeerId, key: PathKey, outcome: Outcome, now: float) -> None:
        with contextlib.suppress(CoordinatorError):  # the path is gone: nothing to score
            self.coordinator.record_outcome(peer, key, outcome, now)

    def _sent(self, peer: PeerId, key: PathKey, now: float) -> None:
        with contextlib.suppress(CoordinatorError):
            self.coordinator.record_sent(peer, key, now)

    async def _pump(self) -> None:
        wake, run = self._wake, self.wall.run
        while True:
            await wake.wait()
            wake.clear()
            while self._acks or self._due:
                if self._acks:
                    acks, self._acks = self._acks, []
                    await run(self._send_acks(acks), "sending acknowledgements")
                while self._due:
                    out = self._due.pop()
                    await run(self._flush(out), f"sending to {out.peer}")

    async def _send_acks(self, acks: Iterable[tuple[PeerId, bytes]]) -> None:
        for peer, data in acks:
            key = self._reply.get(peer)
            if key is not None and await self._send_on(peer, key, data, Priority.CONTROL):
                continue
            try:
                best = self.coordinator.choose(peer, Priority.CONTROL, self._now()).primary
            except CoordinatorError:
                continue  # no path: the peer resends, and is acknowledged then
            if best != key:
                await self._send_on(peer, best, data, Priority.CONTROL)

    async def _flush(self, out: PeerOutbound) -> None:
        """Send what the peer's sender has queued (one flush per peer at a time)."""
        if out.flushing:
            return  # the flush under way takes these too
        out.flushing = True
        sender = out.sender
        try:
            while True:
                transmits = sender.datagrams_to_send()
                if not transmits:
                    if not out.failed_path:
                        break
                    out.failed_path = False
                    sender.path_failed(self._now())
                    self._sender_events(out)
                    continue
                for transmit in transmits:
                    await self._transmit(out, transmit)
        except BaseException:
            self._schedule(out)  # cancelled mid-way (a caller gave up): the pump goes on
            raise
        finally:
            out.flushing = False
            out.timer.rearm()

    async def _transmit(self, out: PeerOutbound, transmit: Transmit) -> None:
        peer = out.peer
        mid = transmit.message_id
        now = self._now()
        if transmit.reason is SendReason.FIRST:
            self.counters.sent += 1
        else:
            self.counters.resent += 1
        for _ in range(_MAX_TRIES):
            try:
                choice = self.coordinator.choose(peer, mid.priority, now)
            except CoordinatorError:
                self.counters.no_path += 1  # reliable: resent on its timer; unreliable: gone
                return
            key = choice.primary
            if await self._send_on(peer, key, transmit.data, mid.priority):
                self.observer.message_sent(key.kind)
                break
            # The transport has no connection there any more (its event may be on the way).
            self.coordinator.path_failed(peer, key, DownReason.DISCONNECTED, now)
            out.failed_path |= key in out.sent_on.values()
        else:
            return
        if not mid.reliable:
            return  # sent once, on the primary
        self._account(out, mid, key, transmit.reason, now)
        extra = choice.extra if transmit.multipath else None
        if extra is not None and await self._send_on(peer, extra, transmit.data, mid.priority):
            self.observer.message_sent(extra.kind)

    def _account(
        self, out: PeerOutbound, mid: MessageId, key: PathKey, reason: SendReason, now: float
    ) -> None:
        """The coordinator's samples: a send on ``key``; a resend after a timeout is a loss of
        the last transmission (as is one moved to another path)."""
        previous = out.sent_on.get(mid)
        if previous is None:
            self._sent(out.peer, key, now)
        elif previous != key or reason is SendReason.TIMEOUT:
            self._outcome(out.peer, previous, Outcome.LOST, now)
            self._sent(out.peer, key, now)
        out.sent_on[mid] = key

    async def _send_on(self, peer: PeerId, key: PathKey, data: bytes, priority: Priority) -> bool:
        transport = self.carriers[key.kind].current()
        if transport is None:
            return False
        try:
            await transport.send(peer, make_frame(next(self._frame_ids), data, priority))
        except TransportError as exc:
            log.debug("coordinator: %s send to %s failed: %s", key.kind.value, peer, exc)
            return False
        return True

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
                f"{size} bytes to {peer}; at most {self.max_payload} (transport.max_message_bytes"
                f" less the {DATA_HEADER}-byte delivery header)",
            )
        await self._usable(peer)
        out = self._outbound(peer)
        loop = self._loop
        if not reliable:
            mid = out.sender.offer(data, priority, loop.time(), reliable=False)
            assert mid is not None  # unreliable messages never wait for the window
            connected = self._connected(peer)  # the primary the flush picks now
            await self._flush(out)
            return Sent(mid, None if connected is None else connected.active.kind)
        while True:
            await out.wait_for_room(size)
            offered = out.sender.offer(data, priority, loop.time())
            if offered is not None:
                break
        mid = offered
        future: asyncio.Future[TransportKind | None] = loop.create_future()
        out.acks[mid] = future
        out.grant()
        out.timer.rearm()
        try:
            await self._flush(out)
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
            or peer in self._out
            or peer in self._static
            or self._dialling[peer] > 0
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
        targets = list(uris) or self._static.get(peer, [])
        errors: list[str] = []
        attempts = [self._spawn(self._dial_once(peer, uri, errors), f"connect-{uri}") for uri in targets]
        self._dialling[peer] += 1
        try:
            async with asyncio.timeout(wait):
                while (connected := self._connected(peer)) is None:
                    if attempts and all(a.done() for a in attempts) and len(errors) == len(attempts):
                        raise PeerUnreachableError(ApiReason.CONNECT_FAILED, f"{peer}: {'; '.join(errors)}")
                    await self._changed_or_recheck()
                return connected
        except TimeoutError:
            why = "; ".join(errors) if errors else "no path came up"
            raise PeerUnreachableError(ApiReason.NO_PATH, f"{peer} within {wait:g} s: {why}") from None
        finally:
            self._dialling[peer] -= 1
            if not self._dialling[peer]:
                del self._dialling[peer]

    def _connected(self, peer: PeerId) -> Connected | None:
        try:
            active = self.coordinator.choose(peer, Priority.NORMAL, self._now()).primary
        except CoordinatorError:
            return None
        return Connected(peer, active, self.coordinator.paths(peer))

    async def _dial_once(self, peer: PeerId, uri: PeerUri, errors: list[str]) -> None:
        try:
            await self._dial(peer, uri)
        except NodeError as exc:
            errors.append(f"{uri}: {exc}")
        finally:
            self.book.poke()

    async def _dial(self, peer: PeerId, uri: PeerUri) -> None:
        """One attempt to open a path to ``peer`` at ``uri``; raises a typed NodeError."""
        carrier = self.carriers.get(uri.kind)
        transport = None if carrier is None else carrier.current()
        if transport is None:
            raise PeerUnreachableError(
                ApiReason.CONNECT_FAILED, f"{uri}: the {uri.kind.value} transport is off"
            )
        async with asyncio.timeout(self.config.transport.connect_timeout_s):
            endpoint = await endpoint_of(peer, uri)
        turn = self.carriers.get(TransportKind.TURN)
        if uri.kind is TransportKind.UDP and turn is not None and turn.current() is not None:
            # The same address through our own relay: a `turn` path beside the direct one.
            self._spawn(self._dial_relayed(peer, turn, endpoint), f"relay-{uri}")
        try:
            await transport.connect(peer, endpoint)
        except TimeoutError:
            raise PeerUnreachableError(ApiReason.CONNECT_FAILED, f"{uri}: no answer") from None

    async def _dial_relayed(self, peer: PeerId, turn: Carrier, endpoint: Endpoint) -> None:
        transport = turn.current()
        if transport is None:
            return
        try:
            await transport.connect(peer, endpoint)
        except NodeError as exc:
            log.debug("coordinator: no relayed path to %s at %s: %s", peer, endpoint, exc)

    async def _keep_dialled(self, peer: PeerId, uri: PeerUri) -> None:
        """A static peer: dialled whenever this kind of path to it is missing, with backoff."""
        t = self.config.transport
        backoff = Backoff(t.retry_backoff_s, self.config.breaker.recovery_timeout_s)
        failures = 0
        while True:
            if self.book.get(peer, uri.kind) is None:
                try:
                    await self._dial(peer, uri)
                except NodeError as exc:
                    failures += 1
                    level = logging.INFO if failures == 1 else logging.DEBUG
                    log.log(
                        level,
                        "coordinator: static peer %s at %s unreachable (%d tries): %s",
                        peer,
                        uri,
                        failures,
                        exc,
                    )
                    await asyncio.sleep(backoff.next())
                    continue
                failures = 0
                backoff.reset()
            await self.book.changed()  # the path came (or will), or went: look again

    # -- the core's clock, health and load --------------------------------------------------------

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(TICK_INTERVAL_S)
            self.wall.call(self._tick, "coordinator tick")

    def _tick(self) -> None:
        for event in self.coordinator.tick(self._now()):
            if isinstance(event, ActivePathChanged):
                self._moved(event)
            elif isinstance(event, TrialDue):
                self._spawn(self._probe(event.peer, event.path, trial=True), f"trial-{event.peer}")
            elif isinstance(event, PathHealthChanged):
                log.debug(
                    "coordinator: path health: peer=%s path=%s %s -> %s",
                    event.peer,
                    event.path,
                    event.old.name,
                    event.new.name,
                )

    def network_down(self, lost: Collection[IPv4Address | IPv6Address]) -> None:
        """The link monitor saw these local addresses go: every path leaving from one fails now
        and traffic moves at once (the transports also close what they carried on them)."""
        now = self._now()
        for ip in lost:
            self.coordinator.link_down(str(ip), now)
        self._tick()

    def _moved(self, event: ActivePathChanged) -> None:
        old, new = event.old, event.new
        if old is not None and new is not None:
            self.counters.failovers += 1
            self.observer.failover()
        log.info(
            "coordinator: active path: peer=%s priorities=%s from=%s to=%s reason=%s",
            event.peer,
            ",".join(sorted(p.name.lower() for p in event.priorities)),
            "-" if old is None else f"{old.kind.value}:{old.remote}",
            "-" if new is None else f"{new.kind.value}:{new.remote}",
            event.reason.value,
        )
        out = self._out.get(event.peer)
        if (
            out is not None
            and old is not None
            and new is not None
            and event.reason in (ChangeReason.FAILED, ChangeReason.CRITICAL, ChangeReason.PREDICTED)
            and old in out.sent_on.values()
        ):
            out.failed_path = True  # what waits for an ACK on the old path goes again on the new
            self._schedule(out)

    async def _health_checks(self) -> None:
        while True:
            await asyncio.sleep(self.config.transport.health_check_interval_s)
            for peer in self.coordinator.peers():
                for key in self.coordinator.paths(peer):
                    self._spawn(self._probe(peer, key, trial=False), f"health-{peer}")

    async def _probe(self, peer: PeerId, key: PathKey, trial: bool) -> None:
        """A ping on ``key``: an RTT sample; a breaker's trial also records the outcome."""
        carrier = self.carriers[key.kind]
        if carrier.current() is None:
            return
        if trial:
            self._sent(peer, key, self._now())
        try:
            async with asyncio.timeout(self.config.transport.failover_timeout_s):
                rtt = await carrier.ping(peer)
        except (NodeError, TimeoutError):
            if trial:
                self._outcome(peer, key, Outcome.LOST, self._now())
            return
        if not self.book.holds(peer, key):
            return  # another connection replaced it meanwhile
        now = self._now()
        with contextlib.suppress(CoordinatorError):
            self.coordinator.record_rtt(peer, key, rtt, now)
            self.observer.path_rtt(key.kind, rtt)
        if trial:
            self._outcome(peer, key, Outcome.ACKED, now)

    async def _load_updates(self) -> None:
        while True:
            await asyncio.sleep(self.config.coordinator.metric_update_interval_s)
            for kind, local in self.book.locals():
                carrier = self.carriers[kind]
                transport = carrier.current()
                if transport is not None:
                    connections = transport.health().connections
                    self.coordinator.set_load(kind, local, connections, carrier.capacity())
            # Behind the wall: a metrics fault must not end the load updates.
            self.wall.call(self.observer.paths, "coordinator metrics", self.peers())

    # -- views --------------------------------------------------------------------------------

    def peers(self) -> tuple[PeerView, ...]:
        return self.coordinator.snapshot(self._now()) if self._loop is not None else ()

    def status(self) -> CoordinatorView:
        rows = tuple(PeerRow(v.peer, v.active, len(v.paths)) for v in self.peers())
        return CoordinatorView(rows, dataclasses.replace(self.counters), len(self.inbox))


def _no_timer_work(now: float) -> None:
    """The Receiver's timer only makes delayed ACKs due; ``datagrams_to_send`` takes them."""
