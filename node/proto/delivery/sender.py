"""The sending half of delivery for one peer: a bounded window, retransmission, failure reports.

Shape of aioquic's cores: ``offer`` and ``on_ack`` feed it, ``datagrams_to_send`` drains DATA
frames (the caller picks the path: one, or the two best when ``multipath``), ``get_timer`` /
``handle_timer(now)`` drive resends, ``next_event`` reports Acknowledged / Failed.

- Window: reliable messages count against ``window_messages`` and ``window_bytes`` until
  acknowledged; ``offer`` returns None when one more would not fit (the driver waits for an
  Acknowledged and offers again: no unbounded queue, no silent drop). Unreliable messages are
  sent once and never occupy the window.
- Acknowledged means cumulatively acknowledged: in the peer's inbox. A message only selectively
  acknowledged (held out of order at the peer) stays in the window, but is not resent on timeout.
- Resends: after the RTO (RFC 6298, rtt.py), then backing off from ``retry_backoff_s``
  (DeliverySettings.resend_wait), each wait within ``failover_timeout_s``; ``path_failed`` resends
  every unacknowledged message at once and starts the RTT estimate over (the next path is
  another path). A message not acknowledged after ``retries`` resends fails, and every other
  unacknowledged message fails with it: the receiver releases each class in order, so nothing
  after the hole could be delivered. The next message starts a new epoch (a new stream).
- Busy peer (its ACKs carry BUSY: inbox full) or one that holds everything we sent out of order:
  no per-message resends; a probe (the oldest message of each class, resent) every
  ``retry_backoff_s`` asks for an ACK (TCP's zero-window probe, RFC 9293 §3.8.6.1). Any ACK
  resets the probe count, so a busy peer is waited for as long as it answers; ``retries``
  unanswered probes in a row fail the stream as above. When BUSY clears, what the peer refused
  is resent at once.
- Karn's rule (RFC 6298 §3): an RTT sample is taken only from a message transmitted once (a
  multipath pair counts as one transmission: both copies leave together).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from heapq import heappop, heappush

from node.proto.delivery.errors import AckError, AckProblem, DeliveryMisuse, DeliveryUsageError
from node.proto.delivery.events import Acknowledged, Failed, FailReason, SenderEvent, SendReason, Transmit
from node.proto.delivery.ids import MessageId, new_epoch
from node.proto.delivery.rtt import RttEstimator
from node.proto.delivery.settings import DeliverySettings
from node.proto.delivery.wire import AckFrame, encode_data
from node.proto.vocabulary import Priority

__all__ = ["PeerSender", "SenderStats"]

_CLASSES = len(Priority)
_ORDER = itertools.count()  # ties in the deadline heap: never compare two _Outstanding


class _Outstanding:
    __slots__ = (
        "acked",
        "attempts",
        "data",
        "deadline",
        "message_id",
        "sacked",
        "sent_at",
        "size",
        "transmissions",
    )

    def __init__(self, message_id: MessageId, data: bytes, size: int, now: float, deadline: float) -> None:
        self.message_id = message_id
        self.data = data
        self.size = size
        self.sent_at = now
        self.deadline = deadline
        self.attempts = 0  # resends counted against `retries`
        self.transmissions = 1  # every send, probes included (Karn's rule)
        self.sacked = False
        self.acked = False  # out of the window: its entries in the deadline heap are stale


@dataclass(frozen=True, slots=True)
class SenderStats:
    epoch: int
    in_flight: int
    in_flight_bytes: int
    srtt_s: float | None
    rto_s: float
    busy: bool
    resends: int
    failed: int
    stale_acks: int  # ACKs of an epoch this sender no longer uses (counted, ignored)


class PeerSender:
    def __init__(self, settings: DeliverySettings, epoch_source: Callable[[], int] = new_epoch) -> None:
        self._settings = settings
        self._epoch_source = epoch_source
        self._rtt = RttEstimator(settings.rto_initial_s, settings.rto_min_s, settings.rto_ceiling_s)
        self._transmits: list[Transmit] = []
        self._events: deque[SenderEvent] = deque()
        self._held: list[MessageId] = []  # newly selectively acknowledged, for ``newly_held``
        self._resends = 0
        self._failed = 0
        self._stale_acks = 0
        self._start_epoch()

    def _start_epoch(self) -> None:
        self._epoch = self._epoch_source()
        self._next_seq = [0] * _CLASSES
        self._next_unreliable = [0] * _CLASSES
        # Per class, insertion order is sequence order: acknowledgements pop from the front.
        self._outstanding: list[dict[int, _Outstanding]] = [{} for _ in range(_CLASSES)]
        # Resend deadlines, a lazy min-heap: an entry is pushed whenever its deadline is set and
        # stale copies (acknowledged, selectively acknowledged, deadline moved) are popped when
        # they reach the top, so ``get_timer`` costs O(log n) per change, not a scan of the window.
        self._deadlines: list[tuple[float, int, _Outstanding]] = []
        self._count = 0
        self._bytes = 0
        self._busy = False
        self._probes = 0
        self._last_heard = 0.0  # last ACK, or the send that started an empty window
        # Since when no path to the peer exists (None: one does). Resends then wait instead of
        # spending their retries on nothing, up to failover_timeout_s.
        self._stalled_since: float | None = None

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def rto(self) -> float:
        return self._rtt.rto

    def can_offer(self, size: int) -> bool:
        s = self._settings
        return self._count < s.window_messages and self._bytes + size <= s.window_bytes

    def offer(
        self, payload: bytes, priority: Priority, now: float, reliable: bool = True
    ) -> MessageId | None:
        """Queue one message for sending: its id, or None when the window is full (wait, retry)."""
        size = len(payload)
        if size > self._settings.max_message_bytes:
            raise DeliveryUsageError(
                DeliveryMisuse.MESSAGE_TOO_LARGE,
                f"{size} bytes, the limit is {self._settings.max_message_bytes}",
            )
        multipath = self._settings.multipath and priority >= Priority.HIGH
        if not reliable:
            sequence = self._next_unreliable[priority]
            self._next_unreliable[priority] = sequence + 1
            message_id = MessageId(self._epoch, priority, sequence, reliable=False)
            data = encode_data(self._epoch, priority, sequence, False, payload, floor=sequence)
            self._transmits.append(Transmit(message_id, data, SendReason.FIRST, multipath))
            return message_id
        if not self.can_offer(size):
            return None
        stream = self._outstanding[priority]
        sequence = self._next_seq[priority]
        self._next_seq[priority] = sequence + 1
        floor = next(iter(stream)) if stream else sequence
        message_id = MessageId(self._epoch, priority, sequence)
        data = encode_data(self._epoch, priority, sequence, True, payload, floor=floor)
        if not self._count:
            self._last_heard = now  # silence is measured from the first message in flight
        entry = stream[sequence] = _Outstanding(message_id, data, size, now, now + self._rtt.rto)
        heappush(self._deadlines, (entry.deadline, next(_ORDER), entry))
        self._count += 1
        self._bytes += size
        self._transmits.append(Transmit(message_id, data, SendReason.FIRST, multipath))
        return message_id

    def on_ack(self, ack: AckFrame, now: float) -> None:
        """An ACK from the peer. ``AckError`` (state untouched) if it acknowledges the unsent."""
        if ack.epoch != self._epoch:
            self._stale_acks += 1
            return
        sent = self._next_seq[ack.priority]
        if ack.next > sent or (ack.ranges and ack.ranges[-1][1] >= sent):
            raise AckError(
                AckProblem.BEYOND_SENT,
                f"{ack.priority.name} ACK up to {max([ack.next - 1, *(last for _, last in ack.ranges)])},"
                f" only {sent} sent",
            )
        self._last_heard = now
        self._probes = 0
        stream = self._outstanding[ack.priority]
        newest: _Outstanding | None = None
        while stream:
            sequence = next(iter(stream))
            if sequence >= ack.next:
                break
            entry = stream.pop(sequence)
            entry.acked = True
            self._count -= 1
            self._bytes -= entry.size
            self._events.append(Acknowledged(entry.message_id))
            newest = entry
        if stream:
            lowest = next(iter(stream))
            for first, last in ack.ranges:
                for sequence in range(max(first, lowest), last + 1):
                    entry = stream[sequence]  # every sequence from `lowest` to `sent` is outstanding
                    if not entry.sacked:
                        entry.sacked = True
                        self._held.append(entry.message_id)
                        newest = entry
        if newest is not None and newest.transmissions == 1:  # Karn's rule, RFC 6298 §3
            self._rtt.sample(now - newest.sent_at)
        if ack.busy != self._busy:
            self._busy = ack.busy
            if not ack.busy:
                self._resend_all(now, SendReason.RESUME, count=False)

    def path_failed(self, now: float) -> None:
        """The path in use failed: resend every unacknowledged message now, on the next path.
        Not a retry of the messages': the path failed, not their delivery over a working one."""
        self._rtt.reset()  # RFC 9000 §9.4: a new path, a new round trip
        self._resend_all(now, SendReason.PATH_FAILED, count=False)

    def no_path(self, now: float) -> None:
        """The caller has no path to the peer at all (a relay being remade, a link down): what
        is unacknowledged waits, its retries untouched, until ``path_back``; if no path comes
        back within ``failover_timeout_s`` every such message fails (NO_PATH)."""
        if self._stalled_since is None and self._count:
            self._stalled_since = now

    def path_back(self, now: float) -> None:
        """A path to the peer exists again: everything unacknowledged goes out on it now."""
        if self._stalled_since is not None:
            self._stalled_since = None
            self._rtt.reset()
            self._resend_all(now, SendReason.PATH_FAILED, count=False)

    def _resend_all(self, now: float, reason: SendReason, count: bool) -> None:
        for stream in self._outstanding:
            for entry in list(stream.values()):
                if entry.sacked:
                    continue
                if count and entry.attempts >= self._settings.retries:
                    self._fail_all(entry)
                    return
                self._resend(entry, now, reason, count)

    def _resend(self, entry: _Outstanding, now: float, reason: SendReason, count: bool) -> None:
        if count:
            entry.attempts += 1
        entry.transmissions += 1
        entry.sent_at = now
        entry.deadline = now + self._settings.resend_wait(self._rtt.rto, entry.attempts)
        heappush(self._deadlines, (entry.deadline, next(_ORDER), entry))
        self._resends += 1
        multipath = self._settings.multipath and entry.message_id.priority >= Priority.HIGH
        self._transmits.append(Transmit(entry.message_id, entry.data, reason, multipath))

    def _fail_all(self, culprit: _Outstanding, reason: FailReason = FailReason.RETRIES_EXHAUSTED) -> None:
        self._events.append(Failed(culprit.message_id, reason))
        for stream in self._outstanding:
            for entry in stream.values():
                if entry is not culprit:
                    self._events.append(Failed(entry.message_id, FailReason.STREAM_BROKEN))
        self._failed += self._count
        self._start_epoch()

    def _probing(self) -> bool:
        """Resends wait for the peer: it said busy, or it holds every message we have in flight."""
        return self._busy or all(e.sacked for stream in self._outstanding for e in stream.values())

    def _probe_deadline(self) -> float:
        wait = min(self._settings.retry_backoff_s * (1 << self._probes), self._settings.failover_timeout_s)
        return self._last_heard + wait

    def get_timer(self) -> float | None:
        """The next deadline (absolute, in the caller's `now` units), or None when idle."""
        if not self._count:
            return None
        if self._stalled_since is not None:
            return self._stalled_since + self._settings.failover_timeout_s
        if self._probing():
            return self._probe_deadline()
        heap = self._deadlines
        while heap:
            deadline, _, entry = heap[0]
            if not (entry.acked or entry.sacked or entry.deadline != deadline):
                return deadline
            heappop(heap)
        return None  # not reached: with none probing, some entry is unacknowledged

    def handle_timer(self, now: float) -> None:
        if not self._count:
            return
        stalled = self._stalled_since
        if stalled is not None:
            if now >= stalled + self._settings.failover_timeout_s:
                self._stalled_since = None
                first = next(e for stream in self._outstanding for e in stream.values())
                self._fail_all(first, FailReason.NO_PATH)
            return
        if self._probing():
            if now >= self._probe_deadline():
                self._probe(now)
            return
        for stream in self._outstanding:
            for entry in list(stream.values()):
                if entry.sacked or entry.deadline > now:
                    continue
                if entry.attempts >= self._settings.retries:
                    self._fail_all(entry)
                    return
                self._resend(entry, now, SendReason.TIMEOUT, count=True)

    def _probe(self, now: float) -> None:
        self._probes += 1
        if self._probes > self._settings.retries:
            self._fail_all(next(e for stream in self._outstanding for e in stream.values()))
            return
        self._last_heard = now
        for stream in self._outstanding:
            # A peer that held these out of order may have lost them (it restarted): its answer
            # to the probe says again what it holds, and the rest are resent on their timers.
            for entry in stream.values():
                entry.sacked = False
                entry.deadline = now + self._settings.resend_wait(self._rtt.rto, entry.attempts)
                heappush(self._deadlines, (entry.deadline, next(_ORDER), entry))
            if stream:
                self._resend(next(iter(stream.values())), now, SendReason.PROBE, count=False)

    def outstanding(self, message_id: MessageId) -> bool:
        """Whether ``message_id`` is still unacknowledged in this sender's window (a resend it
        queued earlier may have been answered since)."""
        if message_id.epoch != self._epoch:
            return False
        return message_id.sequence in self._outstanding[message_id.priority]

    def newly_held(self) -> list[MessageId]:
        """Messages the peer has said it holds (selectively acknowledged, out of order or while
        its inbox is full) since the last call. Not Acknowledged yet, but the path they went on
        delivered them: the driver's path statistics want to know now, not when the peer's
        application gets round to them."""
        held, self._held = self._held, []
        return held

    def datagrams_to_send(self) -> list[Transmit]:
        transmits, self._transmits = self._transmits, []
        return transmits

    def next_event(self) -> SenderEvent | None:
        return self._events.popleft() if self._events else None

    def stats(self) -> SenderStats:
        return SenderStats(
            self._epoch,
            self._count,
            self._bytes,
            self._rtt.srtt,
            self._rtt.rto,
            self._busy,
            self._resends,
            self._failed,
            self._stale_acks,
        )
