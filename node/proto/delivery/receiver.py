"""The receiving half of delivery, for every peer of the node: dedup, order, the inbox, ACKs.

``receive(peer, frame, now)`` takes a decoded DATA frame; ``next_event`` yields ``Delivered``
(the driver puts it in the inbox); ``datagrams_to_send(now)`` yields ``(peer, ACK bytes)`` due by
``now``; ``get_timer`` is the next delayed ACK's deadline (call ``datagrams_to_send`` then);
``consumed(size, now)`` says a subscriber took a message out of the inbox.

- Duplicate state is kept per (sender peer, epoch, class). A peer has one live epoch; a DATA of a
  new epoch (the sender restarted, or began its stream again after a failure) closes the old one:
  its held messages are discarded (never acknowledged, so the sender reported them failed) and
  the epoch is remembered (``remembered_epochs``, oldest forgotten first) so stragglers of it are
  dropped, not taken for a new stream.
- Reliable messages are released in sequence order per class. Out-of-order ones are held
  (``reorder_messages`` per class, ``reorder_bytes`` per peer); beyond that a message is refused
  (not held, not acknowledged: the sender still has it and resends it).
- The inbox (released, not yet consumed; ``inbox_messages`` / ``inbox_bytes``, node-wide) gates
  release: when it is full, messages wait in the reorder buffer, the cumulative ACK stops and ACKs
  carry BUSY, so senders wait. Nothing is dropped. ``consumed`` releases what waited and sends
  the window update at once.
- Unreliable messages: delivered at once, at most once (an RFC 6479 replay window per stream
  drops copies), never held for order and never acknowledged: holding one behind a lost earlier
  one would delay it for a message that is never resent, and a game sends unreliable what is
  stale by the time a newer one arrives. With the inbox full one is dropped and counted: it
  cannot wait, since nothing would resend it.
- ACKs (RFC 9000 §13.2.1-2 policy): at once for CONTROL and HIGH, for a message out of order, a
  duplicate (the sender missed our ACK) or a refusal, and when BUSY changes; otherwise every
  ``ack_every`` messages or after ``max_ack_delay_s``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from node.proto.delivery.errors import DeliveryMisuse, DeliveryUsageError
from node.proto.delivery.events import Delivered
from node.proto.delivery.ids import MessageId
from node.proto.delivery.settings import DeliverySettings
from node.proto.delivery.wire import MAX_ACK_RANGES, DataFrame, encode_ack
from node.proto.session.replay_window import ReplayVerdict, ReplayWindow
from node.proto.vocabulary import PeerId, Priority

__all__ = ["Receiver", "ReceiverStats"]

UNRELIABLE_WINDOW_BLOCKS = 16  # 960 sequences of reordering between unreliable copies


class _Stream:
    """One (epoch, class) of one peer."""

    __slots__ = ("held", "next", "stalled", "unacked", "unreliable")

    def __init__(self) -> None:
        self.next = 0  # every reliable sequence below this is released
        self.held: dict[int, bytes] = {}
        self.stalled = False  # its next message waits for room in the inbox
        self.unacked = 0  # released since the last ACK
        self.unreliable = ReplayWindow(UNRELIABLE_WINDOW_BLOCKS)


class _Peer:
    __slots__ = ("closed", "epoch", "held_bytes", "streams")

    def __init__(self, epoch: int, remembered: int) -> None:
        self.epoch = epoch
        self.streams = [_Stream() for _ in Priority]
        self.held_bytes = 0
        self.closed: deque[int] = deque(maxlen=remembered)


@dataclass(frozen=True, slots=True)
class ReceiverStats:
    delivered: int
    duplicates: int
    refused: int  # beyond the reorder buffer: left to the sender's resend
    stale_epoch: int  # DATA of an epoch already closed
    epochs_closed: int
    discarded_on_close: int  # held messages of a closed epoch (their sender reported them failed)
    unreliable_dropped: int  # unreliable messages that met a full inbox
    acks_sent: int
    inbox_messages: int
    inbox_bytes: int


class Receiver:
    def __init__(self, settings: DeliverySettings) -> None:
        self._settings = settings
        self._peers: dict[PeerId, _Peer] = {}
        self._events: deque[Delivered] = deque()
        self._ack_due: dict[tuple[PeerId, Priority], float] = {}
        self._inbox_count = 0
        self._inbox_bytes = 0
        self._stalled = False  # some stream waits for inbox room (consumed() looks for it)
        self._delivered = 0
        self._duplicates = 0
        self._refused = 0
        self._stale = 0
        self._closed = 0
        self._discarded = 0
        self._unreliable_dropped = 0
        self._acks = 0

    @property
    def inbox_full(self) -> bool:
        s = self._settings
        return self._inbox_count >= s.inbox_messages or self._inbox_bytes >= s.inbox_bytes

    def _room(self, size: int) -> bool:
        s = self._settings
        return self._inbox_count < s.inbox_messages and self._inbox_bytes + size <= s.inbox_bytes

    def receive(self, peer: PeerId, frame: DataFrame, now: float) -> bool:
        """Take one DATA frame; True when it was news (not a copy of something received, nor a
        straggler of a closed epoch)."""
        state = self._peers.get(peer)
        if state is None:
            state = self._peers[peer] = _Peer(frame.epoch, self._settings.remembered_epochs)
        elif frame.epoch != state.epoch:
            if frame.epoch in state.closed:
                self._stale += 1
                return False
            self._close_epoch(peer, state, frame.epoch)
        stream = state.streams[frame.priority]
        if not frame.reliable:
            return self._receive_unreliable(peer, stream, frame)
        sequence = frame.sequence
        if frame.floor > stream.next:
            # The sender had everything below its floor acknowledged: by us before we lost our
            # state (restart), or this is the first we hear of the stream. Start there.
            for old in [s for s in stream.held if s < frame.floor]:
                state.held_bytes -= len(stream.held.pop(old))
            stream.next = frame.floor
        key = (peer, frame.priority)
        if sequence < stream.next or sequence in stream.held:
            self._duplicates += 1
            self._ack_due[key] = now
            return False
        size = len(frame.payload)
        s = self._settings
        if sequence >= stream.next + s.reorder_messages or state.held_bytes + size > s.reorder_bytes:
            self._refused += 1
            self._ack_due[key] = now
            return True  # news all the same: refused for room, it comes again
        stream.held[sequence] = frame.payload
        state.held_bytes += size
        in_order = sequence == stream.next
        was_stalled = stream.stalled
        self._release(peer, state, stream, frame.priority)
        urgent = not in_order or frame.priority >= Priority.HIGH or stream.stalled or was_stalled
        if urgent or stream.unacked >= s.ack_every:
            self._ack_due[key] = now
        elif stream.unacked and key not in self._ack_due:
            self._ack_due[key] = now + s.max_ack_delay_s
        return True

    def _receive_unreliable(self, peer: PeerId, stream: _Stream, frame: DataFrame) -> bool:
        if stream.unreliable.check(frame.sequence) is not ReplayVerdict.FRESH:
            self._duplicates += 1  # a copy, or older than the window: at most once
            return False
        size = len(frame.payload)
        if not self._room(size):
            self._unreliable_dropped += 1
            return True
        stream.unreliable.mark(frame.sequence)
        self._deliver(peer, MessageId(frame.epoch, frame.priority, frame.sequence, False), frame.payload)
        return True

    def _close_epoch(self, peer: PeerId, state: _Peer, epoch: int) -> None:
        self._closed += 1
        for priority, stream in zip(Priority, state.streams, strict=True):
            self._discarded += len(stream.held)
            self._ack_due.pop((peer, priority), None)
        state.closed.append(state.epoch)
        state.epoch = epoch
        state.streams = [_Stream() for _ in Priority]
        state.held_bytes = 0

    def _release(self, peer: PeerId, state: _Peer, stream: _Stream, priority: Priority) -> None:
        held = stream.held
        while stream.next in held:
            payload = held[stream.next]
            if not self._room(len(payload)):
                stream.stalled = self._stalled = True
                return
            del held[stream.next]
            state.held_bytes -= len(payload)
            self._deliver(peer, MessageId(state.epoch, priority, stream.next), payload)
            stream.next += 1
            stream.unacked += 1
        stream.stalled = False

    def _deliver(self, peer: PeerId, message_id: MessageId, payload: bytes) -> None:
        self._inbox_count += 1
        self._inbox_bytes += len(payload)
        self._delivered += 1
        self._events.append(Delivered(peer, message_id, payload))

    def consumed(self, size: int, now: float) -> bool:
        """A subscriber took a message of ``size`` bytes out of the inbox. True when that let
        messages waiting for room be released (``next_event``) and an ACK is due: otherwise
        there is nothing new to drain, and the driver skips it (this runs for every message)."""
        if self._inbox_count < 1 or self._inbox_bytes < size:
            raise DeliveryUsageError(
                DeliveryMisuse.NOT_IN_INBOX,
                f"{size} bytes taken, the inbox holds {self._inbox_count} messages of {self._inbox_bytes}",
            )
        self._inbox_count -= 1
        self._inbox_bytes -= size
        if not self._stalled:
            return False
        self._stalled = False
        for peer, state in self._peers.items():
            for priority, stream in zip(Priority, state.streams, strict=True):
                if stream.stalled:
                    self._release(peer, state, stream, priority)
                    if not stream.stalled:
                        self._ack_due[(peer, priority)] = now  # the window update: BUSY is over
                    self._stalled = self._stalled or stream.stalled
        return True

    def forget(self, peer: PeerId) -> None:
        """Drop a peer's state (the coordinator forgot the peer); its held messages go with it."""
        state = self._peers.pop(peer, None)
        if state is not None:
            for priority, stream in zip(Priority, state.streams, strict=True):
                self._discarded += len(stream.held)
                self._ack_due.pop((peer, priority), None)

    def get_timer(self) -> float | None:
        return min(self._ack_due.values(), default=None)

    def datagrams_to_send(self, now: float) -> list[tuple[PeerId, bytes]]:
        due = [key for key, deadline in self._ack_due.items() if deadline <= now]
        out = []
        busy = self.inbox_full
        for key in due:
            del self._ack_due[key]
            peer, priority = key
            state = self._peers[peer]
            stream = state.streams[priority]
            stream.unacked = 0
            out.append((peer, encode_ack(state.epoch, priority, stream.next, _ranges(stream), busy)))
        self._acks += len(out)
        return out

    def next_event(self) -> Delivered | None:
        return self._events.popleft() if self._events else None

    def stats(self) -> ReceiverStats:
        return ReceiverStats(
            self._delivered,
            self._duplicates,
            self._refused,
            self._stale,
            self._closed,
            self._discarded,
            self._unreliable_dropped,
            self._acks,
            self._inbox_count,
            self._inbox_bytes,
        )


def _ranges(stream: _Stream) -> list[tuple[int, int]]:
    """The held sequences as ascending (first, last) ranges, the lowest MAX_ACK_RANGES of them."""
    ranges: list[tuple[int, int]] = []
    for sequence in sorted(stream.held):
        if ranges and ranges[-1][1] + 1 == sequence:
            ranges[-1] = (ranges[-1][0], sequence)
        elif len(ranges) == MAX_ACK_RANGES:
            break
        else:
            ranges.append((sequence, sequence))
    return ranges
