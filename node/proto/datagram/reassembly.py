"""Bounded reassembly of fragmented messages (wire format: node.proto.datagram.fragments).

``Reassembler.receive(sender, data, now)`` takes one fragment (the plaintext of one authenticated
datagram) from the sender the caller names (a peer id, a session: any hashable key) and returns
the message as a ``Frame`` when that fragment completes it, once: the fragments held are joined
into the payload in one copy. Fragments may arrive in any order, duplicated or not at all; a
message that stops making progress for ``max_age`` expires (``get_timer`` / ``handle_timer(now)``,
and every ``receive`` expires what is due first, so the caps hold even without the timer).

Caps (``ReassemblyLimits``), all counted when they bite (``stats().drops``, by ``FragmentDrop``):

- a message's length: ``max_message``;
- reassemblies in progress: ``max_reassemblies`` in all, ``sender_max_reassemblies`` per sender;
- buffered bytes: ``max_bytes`` in all, ``sender_max_bytes`` per sender. A reassembly reserves
  its whole cost when it starts, so it can always finish once admitted: the message length plus
  ``FRAGMENT_OVERHEAD`` per fragment for what holding a fragment costs beyond its payload (the
  datagram's object and header, a list slot). MIN_CHUNK bounds that overhead at twice the length;
  at the UDP chunk size it is about 6 %.

Admission of a new message (the eviction policy): the sender first makes room within its own
share by dropping its own stalest reassembly (least recent progress; a sender can only crowd out
itself). When the global caps are still short, the sender holding the most of the short resource
(reassemblies or bytes; among equals, the one with the stalest reassembly) loses its stalest one,
but only if it holds more than the newcomer will once admitted; otherwise the newcomer drops its own
stalest, or is refused when it holds none. This is max-min fairness: a sender loses a
reassembly to another's only while it holds the most of the short resource and more than the
other will once admitted. A flood of first fragments from one sender only churns that sender's
own share; a flood from many senders, each claiming messages as large as a legitimate peer's
(or many small ones), is refused or churns itself; either way the legitimate message in progress
completes and every refusal or eviction is counted. A legitimate message larger than every
flooder's holding can still lose to them when the bytes run short: it is then over its fair share.

A message already delivered is remembered (``max_completed`` entries, for ``max_age``), so a late
duplicate of one of its fragments is ignored instead of starting a reassembly that can only expire.
A message of one fragment is delivered at once, without any reservation.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Final, Generic, TypeAlias, TypeVar

from node.proto.datagram.errors import FragmentDrop, FragmentError, FragmentMisuse, FragmentUsageError
from node.proto.datagram.fragments import HEADER, HEADER_SIZE, MIN_CHUNK, PRIORITY_MASK, fragment_count
from node.proto.vocabulary import FRAME_SETTERS, Frame, Priority, make_frame

__all__ = ["FRAGMENT_OVERHEAD", "Reassembler", "ReassemblyLimits", "ReassemblyStats"]

K = TypeVar("K", bound=Hashable)

FRAGMENT_OVERHEAD: Final = 64  # CPython: a bytes object's 33 bytes, the 19-byte header, a list slot
_MIB: Final = 1 << 20
_PRIORITY: Final = tuple(Priority)
_UNPACK_FROM: Final = HEADER.unpack_from
_new = object.__new__
_SET_ID, _SET_PAYLOAD, _SET_PRIORITY = FRAME_SETTERS
_Header: TypeAlias = tuple[int, int, int, int, int]  # flags, message id, total, chunk, index


@dataclass(frozen=True, slots=True)
class ReassemblyLimits:
    """The caps. Defaults: BitChat's 128 concurrent reassemblies and 30 s (DESIGN.md "BLE"); a
    1 MiB message (transport.max_message_bytes); a sender may hold half the bytes and a quarter of
    the reassemblies, so no one sender can fill them."""

    max_message: int = _MIB
    max_reassemblies: int = 128
    max_bytes: int = 4 * _MIB
    sender_max_reassemblies: int = 32
    sender_max_bytes: int = 2 * _MIB
    max_age: float = 30.0
    max_completed: int = 1024

    def __post_init__(self) -> None:
        checks = (
            (0 <= self.max_message <= self.sender_max_bytes, "need 0 <= max_message <= sender_max_bytes"),
            (
                1 <= self.sender_max_reassemblies <= self.max_reassemblies,
                "need 1 <= sender_max_reassemblies <= max_reassemblies",
            ),
            (self.sender_max_bytes <= self.max_bytes, "sender_max_bytes must be <= max_bytes"),
            (self.max_age > 0, "max_age must be > 0"),
            (self.max_completed >= 0, "max_completed must be >= 0"),
        )
        for ok, problem in checks:
            if not ok:
                raise FragmentUsageError(FragmentMisuse.BAD_LIMITS, f"{problem}: {self}")


@dataclass(frozen=True, slots=True)
class ReassemblyStats:
    """A snapshot for ``status``."""

    reassemblies: int
    buffered_bytes: int  # reserved by the reassemblies in progress, overhead included
    senders: int  # senders with a reassembly in progress
    delivered: int  # messages delivered (single-fragment ones included)
    drops: Mapping[FragmentDrop, int]


class _Reassembly(Generic[K]):
    __slots__ = ("chunk", "cost", "flags", "key", "last", "missing", "parts", "share", "total")

    def __init__(self, key: tuple[K, int], share: _Share[K], header: _Header, count: int) -> None:
        self.key = key
        self.share = share
        self.flags, _, self.total, self.chunk, _ = header
        self.parts: list[bytes] = [b""] * count  # b"": not yet received (a real fragment is longer)
        self.missing = count
        self.cost = self.total + count * FRAGMENT_OVERHEAD
        self.last = 0.0  # time of the last new fragment


class _Share(Generic[K]):
    """What one sender holds: its reassemblies by message id, stalest first."""

    __slots__ = ("cost", "entries", "sender")

    def __init__(self, sender: K) -> None:
        self.sender = sender
        self.cost = 0
        self.entries: OrderedDict[int, _Reassembly[K]] = OrderedDict()


class Reassembler(Generic[K]):
    """Reassembles the messages of many senders within ``ReassemblyLimits``; see the module doc."""

    def __init__(self, limits: ReassemblyLimits = ReassemblyLimits()) -> None:
        self.limits = limits
        self._active: OrderedDict[tuple[K, int], _Reassembly[K]] = OrderedDict()  # stalest first
        self._shares: dict[K, _Share[K]] = {}
        self._completed: dict[tuple[K, int], float] = {}  # delivered -> when, oldest first
        self._cost = 0
        self._delivered = 0
        self._drops: Counter[FragmentDrop] = Counter()
        self._due = math.inf  # no expiry before this (may be early, never late)

    # -- input ----------------------------------------------------------------------------------

    def receive(self, sender: K, data: bytes, now: float) -> Frame | None:
        """Feed one fragment (``data`` must not change afterwards: it is held as given).

        Returns the message this fragment completes, else None. Raises FragmentError (already
        counted, and its message's reassembly dropped) when the fragment is malformed or
        contradicts its message.
        """
        if now >= self._due:
            self._expire(now)
        size = len(data)
        if size < HEADER_SIZE:
            raise self._reject(FragmentDrop.TRUNCATED, f"{size} bytes, the header alone is {HEADER_SIZE}")
        header: _Header = _UNPACK_FROM(data)
        flags, message_id, total, chunk, index = header
        key = (sender, message_id)
        entry = self._active.get(key)
        if entry is None:
            if (
                index == 0
                and size - HEADER_SIZE == total <= chunk
                and chunk >= MIN_CHUNK
                and flags <= PRIORITY_MASK
                and total <= self.limits.max_message
            ):
                # A whole message in one fragment (most game messages): the checks of _count for
                # one fragment, passed, and _deliver inline; no reassembly state at all.
                completed = self._completed
                if key in completed:
                    self._drops[FragmentDrop.DUPLICATE] += 1
                    return None
                self._delivered += 1
                max_completed = self.limits.max_completed
                if max_completed:
                    completed[key] = now
                    if self._due == math.inf:
                        self._due = now + self.limits.max_age
                    if len(completed) > max_completed:
                        del completed[next(iter(completed))]
                frame = _new(Frame)  # = make_frame(message_id, payload, priority), without the call
                _SET_ID(frame, message_id)
                _SET_PAYLOAD(frame, data[HEADER_SIZE:])
                _SET_PRIORITY(frame, _PRIORITY[flags])
                return frame
            return self._start(sender, key, header, data, now)
        # The fast path: a fragment of a message in progress, checked against its first fragment.
        if flags != entry.flags or total != entry.total or chunk != entry.chunk:
            self._remove(entry)
            raise self._reject(
                FragmentDrop.INCONSISTENT,
                f"message {message_id}: flags {flags} length {total} chunk {chunk}; its first fragment "
                f"said flags {entry.flags} length {entry.total} chunk {entry.chunk}",
            )
        last = len(entry.parts) - 1
        if (index >= last and (index > last or size - HEADER_SIZE != total - last * chunk)) or (
            index < last and size - HEADER_SIZE != chunk
        ):
            self._remove(entry)
            raise self._reject(FragmentDrop.BAD_GEOMETRY, _geometry(header, size, last + 1))
        held = entry.parts[index]
        if not held:
            return self._add(entry, index, data, now)
        if held != data:
            self._remove(entry)
            raise self._reject(FragmentDrop.CONFLICTING_DUPLICATE, f"message {message_id} fragment {index}")
        self._drops[FragmentDrop.DUPLICATE] += 1
        return None

    def _start(self, sender: K, key: tuple[K, int], header: _Header, data: bytes, now: float) -> Frame | None:
        """The first fragment seen of a message: checked alone, then delivered or admitted."""
        count = self._count(header, len(data))
        if key in self._completed:
            self._drops[FragmentDrop.DUPLICATE] += 1
            return None
        if count == 1:
            return self._deliver(key, header[0], data[HEADER_SIZE:], now)
        entry = self._admit(sender, key, header, count)
        return None if entry is None else self._add(entry, header[4], data, now)

    def _count(self, header: _Header, size: int) -> int:
        """The message's fragment count, once the header and the fragment's size agree."""
        flags, message_id, total, chunk, index = header
        limit = self.limits.max_message
        if flags & ~PRIORITY_MASK:
            raise self._reject(FragmentDrop.RESERVED_BITS, f"message {message_id}: flags {flags:#04x}")
        if total > limit:
            raise self._reject(FragmentDrop.TOO_LARGE, f"message {message_id}: {total} bytes > {limit}")
        if chunk < MIN_CHUNK:
            raise self._reject(
                FragmentDrop.BAD_GEOMETRY, f"message {message_id}: chunk {chunk} < {MIN_CHUNK}"
            )
        count = fragment_count(total, chunk)
        last = count - 1
        if index > last or size - HEADER_SIZE != (chunk if index < last else total - last * chunk):
            raise self._reject(FragmentDrop.BAD_GEOMETRY, _geometry(header, size, count))
        return count

    def _reject(self, reason: FragmentDrop, detail: str) -> FragmentError:
        self._drops[reason] += 1
        return FragmentError(reason, detail)

    def _add(self, entry: _Reassembly[K], index: int, data: bytes, now: float) -> Frame | None:
        entry.parts[index] = data
        entry.missing -= 1
        if entry.missing:
            entry.last = now
            if self._due == math.inf:
                self._due = now + self.limits.max_age
            self._active.move_to_end(entry.key)
            entry.share.entries.move_to_end(entry.key[1])
            return None
        self._remove(entry)
        payload = b"".join([memoryview(part)[HEADER_SIZE:] for part in entry.parts])
        return self._deliver(entry.key, entry.flags, payload, now)

    def _deliver(self, key: tuple[K, int], flags: int, payload: bytes, now: float) -> Frame:
        self._delivered += 1
        completed = self._completed
        if self.limits.max_completed:
            completed[key] = now
            if self._due == math.inf:
                self._due = now + self.limits.max_age
            if len(completed) > self.limits.max_completed:
                del completed[next(iter(completed))]
        return make_frame(key[1], payload, _PRIORITY[flags])

    # -- admission and eviction -----------------------------------------------------------------

    def _admit(self, sender: K, key: tuple[K, int], header: _Header, count: int) -> _Reassembly[K] | None:
        limits = self.limits
        cost = header[2] + count * FRAGMENT_OVERHEAD
        if cost > limits.sender_max_bytes:  # at this chunk size it can never fit a sender's share
            raise self._reject(
                FragmentDrop.TOO_LARGE,
                f"message {header[1]}: {count} fragments of {header[3]} bytes cost {cost} > sender_max_bytes",
            )
        share = self._shares.get(sender) or _Share(sender)  # registered once it holds an entry
        while share.entries and (
            len(share.entries) >= limits.sender_max_reassemblies
            or share.cost + cost > limits.sender_max_bytes
        ):
            self._evict(share, FragmentDrop.EVICTED_OWN_SHARE)
        while len(self._active) >= limits.max_reassemblies or self._cost + cost > limits.max_bytes:
            usage = _usage_bytes if len(self._active) < limits.max_reassemblies else _usage_count
            victim = max(self._shares.values(), key=usage)
            after = share.cost + cost if usage is _usage_bytes else len(share.entries) + 1
            if victim is not share and usage(victim)[0] > after:
                self._evict(victim, FragmentDrop.EVICTED_FAIR_SHARE)
            elif share.entries:
                self._evict(share, FragmentDrop.EVICTED_OWN_SHARE)
            else:
                self._drops[FragmentDrop.REFUSED_FULL] += 1
                return None
        entry = _Reassembly(key, share, header, count)
        self._shares[sender] = share
        share.entries[key[1]] = entry
        share.cost += entry.cost
        self._cost += entry.cost
        self._active[key] = entry
        return entry

    def _evict(self, share: _Share[K], reason: FragmentDrop) -> None:
        self._drops[reason] += 1
        self._remove(next(iter(share.entries.values())))

    def _remove(self, entry: _Reassembly[K]) -> None:
        share = entry.share
        del share.entries[entry.key[1]]
        share.cost -= entry.cost
        self._cost -= entry.cost
        del self._active[entry.key]
        if not share.entries:
            del self._shares[share.sender]

    # -- timers ---------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When the stalest reassembly expires, or None when none is in progress."""
        for entry in self._active.values():
            return entry.last + self.limits.max_age
        return None

    def handle_timer(self, now: float) -> None:
        self._expire(now)

    def _expire(self, now: float) -> None:
        limit = now - self.limits.max_age
        active = self._active
        due = math.inf
        while active:
            entry = next(iter(active.values()))
            if entry.last > limit:
                due = entry.last
                break
            self._drops[FragmentDrop.EXPIRED] += 1
            self._remove(entry)
        completed = self._completed
        while completed:
            key = next(iter(completed))
            if completed[key] > limit:
                due = min(due, completed[key])
                break
            del completed[key]
        self._due = due + self.limits.max_age

    # -- status ---------------------------------------------------------------------------------

    def stats(self) -> ReassemblyStats:
        return ReassemblyStats(
            reassemblies=len(self._active),
            buffered_bytes=self._cost,
            senders=len(self._shares),
            delivered=self._delivered,
            drops=dict(self._drops),
        )


def _geometry(header: _Header, size: int, count: int) -> str:
    """Why a fragment's index or size does not fit its message."""
    _, message_id, total, chunk, index = header
    if index >= count:
        return f"message {message_id}: index {index} of {count} fragments"
    expected = chunk if index < count - 1 else total - (count - 1) * chunk
    return f"message {message_id}: fragment {index} of {count} has {size - HEADER_SIZE} bytes, not {expected}"


def _usage_bytes(share: _Share[K]) -> tuple[int, float]:
    """Bytes held, then staleness (older progress ranks higher) to break ties."""
    return share.cost, -next(iter(share.entries.values())).last


def _usage_count(share: _Share[K]) -> tuple[int, float]:
    return len(share.entries), -next(iter(share.entries.values())).last
