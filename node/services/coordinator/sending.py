"""The coordinator's sending side: every peer's delivery sender, and one sending task per peer.

- A peer's task (started when it has something to send, ended after ``_IDLE_S`` with nothing) is
  the only writer of its frames: DATA in the order its ``PeerSender`` made them, and the ACKs due
  to it (the latest per class). A peer whose path is backed up (a TCP connection whose buffer is
  full makes ``send`` wait) holds up only its own task, never the sends and ACKs of other peers.
  Memory stays bounded meanwhile: DATA by the peer's window, ACKs by one per class.
- Batching: ``send`` only offers its message and wakes the task, which runs after every caller
  woken in the same turn of the loop has offered, so one flush sends a turn's worth (and the
  datagram transports write it in one batch). Paths are chosen once per class per flush, and the
  core's samples are recorded per flush (sends) and per ACK (outcomes), not per message.
- What the sender reports: Acknowledged resolves the caller's future, Failed fails it with
  PeerUnreachableError(DELIVERY_FAILED); both are outcomes of the path the message last left on.
- A stalled path (stall.py): a send that waits on a path's backpressure for two RTOs (at least
  ``retry_backoff_s``) with nothing draining leaves its frame queued there and fails the path
  (DownReason.STALLED, cleared by the next proof of life over it): what was in flight on it is
  resent on the next path. On a path that is merely slow this costs one needless failover (the
  receiver deduplicates).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from node.proto.coordinator import Choice, Coordinator, CoordinatorError, DownReason, Outcome, PathKey
from node.proto.delivery.events import Acknowledged, SendReason, Transmit
from node.proto.delivery.ids import MessageId
from node.proto.delivery.settings import DeliverySettings
from node.proto.delivery.wire import ack_class
from node.proto.vocabulary import PeerId, Priority, TransportKind, make_frame
from node.services.coordinator.carriers import Carrier
from node.services.coordinator.errors import ApiReason, ApiUsageError, PeerUnreachableError
from node.services.coordinator.observer import NO_OBSERVER, CoordinatorObserver
from node.services.coordinator.outbound import PeerOutbound
from node.services.coordinator.stall import StallWatch
from node.services.coordinator.status import Counters
from node.transports.base import TransportError
from node.transports.isolation import ConnectionIsolation

log = logging.getLogger(__name__)

# Paths a transmission may try in a row when sends fail (each failure marks that path failed).
_MAX_TRIES = 4
# A peer's sending task ends after this long with nothing to send (the next send starts another).
_IDLE_S = 30.0


Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None] | None"]


class Sending:
    def __init__(
        self,
        *,
        coordinator: Coordinator,
        carriers: dict[TransportKind, Carrier],
        settings: DeliverySettings,
        counters: Counters,
        wall: ConnectionIsolation,
        loop: asyncio.AbstractEventLoop,
        spawn: Spawn,
        reply_path: dict[PeerId, PathKey],
        reply_also: dict[PeerId, PathKey],
        observer: CoordinatorObserver = NO_OBSERVER,
    ) -> None:
        self.observer = observer
        self.coordinator = coordinator
        self.carriers = carriers
        self.settings = settings
        self.counters = counters
        self.wall = wall
        self.loop = loop
        self._spawn = spawn
        self.reply_path = reply_path  # the path each peer's news last came on (the service's)
        self.reply_also = reply_also  # and one that since brought it copies (the service's)
        self.out: dict[PeerId, PeerOutbound] = {}
        self._frame_ids = itertools.count(1)

    def outbound(self, peer: PeerId) -> PeerOutbound:
        out = self.out.get(peer)
        if out is None:
            out = self.out[peer] = PeerOutbound(peer, self.settings, self.loop, self._on_sender_timer)
        return out

    def close(self) -> None:
        for peer, out in self.out.items():
            out.close()
            for future in out.acks.values():
                if not future.done():
                    future.set_exception(
                        ApiUsageError(ApiReason.CLOSED, f"the node stopped before {peer} acknowledged")
                    )

    # -- what wakes a peer's task ---------------------------------------------------------------

    def schedule(self, out: PeerOutbound) -> None:
        """``out`` has something to send: wake its task (start one if it has none)."""
        out.wake.set()
        if out.task is None:
            out.task = self._spawn(self._run(out), f"coordinator-send-{out.peer}")

    def path_up(self, peer: PeerId) -> None:
        """A path to ``peer`` came up: what waited for one goes out now."""
        out = self.out.get(peer)
        if out is not None:
            out.sender.path_back(self.loop.time())
            out.timer.rearm()
            self.schedule(out)

    def reply(self, peer: PeerId, ack: bytes) -> None:
        """An ACK the receiver made for ``peer``: it replaces an unsent one of its class."""
        out = self.outbound(peer)
        out.replies[ack_class(ack)] = ack
        self.schedule(out)

    def path_failed(self, peer: PeerId, key: PathKey) -> None:
        """``key`` failed: what was in flight on it is resent at once, on the next path."""
        out = self.out.get(peer)
        if out is not None and key in out.sent_on.values():
            out.failed_path = True
            self.schedule(out)

    def _on_sender_timer(self, out: PeerOutbound) -> None:
        self.sender_events(out)
        self.schedule(out)

    def after_ack(self, out: PeerOutbound) -> None:
        self.sender_events(out)
        out.timer.rearm()
        self.schedule(out)

    # -- the sender's reports --------------------------------------------------------------------

    def sender_events(self, out: PeerOutbound) -> None:
        sender, peer = out.sender, out.peer
        now = self.loop.time()
        acked: Counter[PathKey] = Counter()
        counters = self.counters
        sent_on, held_on = out.sent_on, out.held_on
        for mid in sender.newly_held():
            # Its path delivered it: that is the path's outcome now (the ACK that puts it in
            # the peer's inbox may come much later, when the peer's application takes more).
            path = sent_on.pop(mid, None)
            if path is not None:
                held_on[mid] = path
                acked[path] += 1
        while (event := sender.next_event()) is not None:
            mid = event.message_id
            path = sent_on.pop(mid, None)
            held = held_on.pop(mid, None) if held_on else None
            future = out.acks.pop(mid, None)
            if isinstance(event, Acknowledged):
                counters.acknowledged += 1
                if path is not None:
                    acked[path] += 1
                if future is not None and not future.done():
                    kind = path or held
                    future.set_result(None if kind is None else kind.kind)
                continue
            counters.failed += 1
            if path is not None:
                self.outcome(peer, path, Outcome.LOST, now)
            if future is not None and not future.done():
                future.set_exception(
                    PeerUnreachableError(
                        ApiReason.DELIVERY_FAILED,
                        f"message {mid} to {peer}: {event.reason.value}",
                        event.reason,
                    )
                )
        for path, n in acked.items():
            self.outcome(peer, path, Outcome.ACKED, now, n)
        out.grant()

    def outcome(self, peer: PeerId, key: PathKey, outcome: Outcome, now: float, count: int = 1) -> None:
        with contextlib.suppress(CoordinatorError):  # the path is gone: nothing to score
            self.coordinator.record_outcome(peer, key, outcome, now, count)

    def sent(self, peer: PeerId, key: PathKey, now: float, count: int = 1) -> None:
        with contextlib.suppress(CoordinatorError):
            self.coordinator.record_sent(peer, key, now, count)

    # -- a peer's task ----------------------------------------------------------------------------

    async def _run(self, out: PeerOutbound) -> None:
        wake = out.wake
        try:
            while True:
                try:
                    async with asyncio.timeout(_IDLE_S):
                        await wake.wait()
                except TimeoutError:
                    if not wake.is_set():
                        return  # idle: the next schedule() starts another
                wake.clear()
                await self.wall.run(self._send_due(out), f"sending to {out.peer}")
        finally:
            out.task = None

    async def _send_due(self, out: PeerOutbound) -> None:
        """Send what is due; a send stuck on a path fails the path and the rest goes on."""
        while True:
            try:
                async with asyncio.timeout(None) as guard:
                    watch = out.watch = StallWatch(self.loop, guard, self._stall_bound(out))
                    try:
                        await self._send_queued(out)
                    finally:
                        watch.close()
                        out.watch = None
                return
            except TimeoutError:
                if watch.stalled is None:
                    raise
                self._stalled(out, watch.stalled)

    def _stalled(self, out: PeerOutbound, key: PathKey) -> None:
        """A send waited the stall bound on ``key``: its frame stays queued there, the path
        fails, and what was in flight (the interrupted flush's rest included) goes out again on
        the next path."""
        self.counters.stalled += 1
        log.info("coordinator: %s path to %s took nothing for a while: failed", key.kind.value, out.peer)
        with contextlib.suppress(CoordinatorError):
            self.coordinator.path_failed(out.peer, key, DownReason.STALLED, self.loop.time())
        out.failed_path = True

    def _stall_bound(self, out: PeerOutbound) -> float:
        return max(2 * out.sender.rto, self.settings.retry_backoff_s)

    async def _send_queued(self, out: PeerOutbound) -> None:
        if out.replies:
            replies = list(out.replies.values())
            out.replies.clear()
            for ack in replies:
                await self._send_ack(out, ack)
        await self._flush(out)

    async def _send_ack(self, out: PeerOutbound, ack: bytes) -> None:
        """On the path the peer's news last came on (and on one that brought it copies since),
        else (or if that fails) the best one."""
        peer = out.peer
        key = self.reply_path.get(peer)
        also = self.reply_also.pop(peer, None)
        sent = key is not None and await self.send_on(out, key, ack, Priority.CONTROL)
        if also is not None and also != key:
            sent = await self.send_on(out, also, ack, Priority.CONTROL) or sent
        if sent:
            return
        try:
            best = self.coordinator.choose(peer, Priority.CONTROL, self.loop.time()).primary
        except CoordinatorError:
            return  # no path: the peer resends, and is acknowledged then
        if best != key:
            await self.send_on(out, best, ack, Priority.CONTROL)

    async def _flush(self, out: PeerOutbound) -> None:
        """Send what the peer's sender has queued; the paths' samples once, at the end."""
        sender = out.sender
        sent: Counter[PathKey] = Counter()
        chosen: dict[Priority, Choice] = {}
        try:
            while True:
                transmits = sender.datagrams_to_send()
                if not transmits:
                    if not out.failed_path:
                        break
                    out.failed_path = False
                    sender.path_failed(self.loop.time())
                    self.sender_events(out)
                    continue
                for transmit in transmits:
                    await self._transmit(out, transmit, chosen, sent)
        finally:
            now = self.loop.time()
            for key, n in sent.items():
                self.sent(out.peer, key, now, n)
            out.timer.rearm()

    async def _transmit(
        self, out: PeerOutbound, transmit: Transmit, chosen: dict[Priority, Choice], sent: Counter[PathKey]
    ) -> None:
        peer = out.peer
        mid = transmit.message_id
        priority = mid.priority
        if transmit.reason is SendReason.FIRST:
            self.counters.sent += 1
        elif not out.sender.outstanding(mid):
            # A resend the sender queued before an ACK resolved the message (the flush waited
            # on the socket meanwhile): nothing to send, and a send with no outcome to come
            # would leave its path looking silent. (Not ``out.acks``: a caller that gave up
            # waiting leaves its message in the stream, to be resent like any other.)
            return
        else:
            self.counters.resent += 1
        for _ in range(_MAX_TRIES):
            choice = chosen.get(priority)
            if choice is None:
                try:
                    choice = chosen[priority] = self.coordinator.choose(peer, priority, self.loop.time())
                except CoordinatorError:
                    # Reliable: held, retries untouched, until a path comes back (path_up) or the
                    # failover timeout ends; unreliable: gone.
                    self.counters.no_path += 1
                    out.sender.no_path(self.loop.time())
                    out.timer.rearm()
                    return
            key = choice.primary
            if await self.send_on(out, key, transmit.data, priority):
                self.observer.message_sent(key.kind)
                break
            # The transport has no connection there any more (its event may be on the way).
            self.coordinator.path_failed(peer, key, DownReason.DISCONNECTED, self.loop.time())
            chosen.clear()
            out.failed_path |= key in out.sent_on.values()
        else:
            return
        if not mid.reliable:
            return  # sent once, on the primary
        self._account(out, mid, key, transmit.reason, sent)
        extra = choice.extra if transmit.multipath else None
        if extra is not None and await self.send_on(out, extra, transmit.data, priority):
            self.observer.message_sent(extra.kind)

    def _account(
        self, out: PeerOutbound, mid: MessageId, key: PathKey, reason: SendReason, sent: Counter[PathKey]
    ) -> None:
        """The coordinator's samples: a send on ``key``; a resend after a timeout is a loss of
        the last transmission (as is one moved to another path)."""
        previous = out.sent_on.get(mid)
        if previous is None:
            sent[key] += 1
        elif previous != key or reason is SendReason.TIMEOUT:
            self.outcome(out.peer, previous, Outcome.LOST, self.loop.time())
            sent[key] += 1
        out.sent_on[mid] = key

    async def send_on(self, out: PeerOutbound, key: PathKey, data: bytes, priority: Priority) -> bool:
        peer = out.peer
        transport = self.carriers[key.kind].current()
        if transport is None:
            return False
        frame = make_frame(next(self._frame_ids), data, priority)
        watch = out.watch
        if watch is not None:
            watch.begin(key)
        try:
            await transport.send(peer, frame)
        except TransportError as exc:
            log.debug("coordinator: %s send to %s failed: %s", key.kind.value, peer, exc)
            return False
        finally:
            if watch is not None:
                watch.end()
        return True
