"""One link datagram split into GATT-sized chunks, and put back together per link.

A BLE link carries datagrams (a mesh frame around a secure-session datagram, up to
``MAX_DATAGRAM`` bytes) as GATT Write Commands (write without response) one way and Handle Value
Notifications the other. Each carries at most ATT_MTU - 3 bytes of value: both PDUs spend 1 byte
of opcode and 2 of handle (Bluetooth Core 5.3 Vol 3 Part F §3.4.5.3, §3.4.7.1). Both are
delivered in order on a link and never duplicated: the link layer acknowledges every PDU and
drops repeats by its SN/NESN bits (Vol 6 Part B §4.5.9), and ATT itself never retransmits. A
chunk is lost only when the link drops, and then the link's reassembler goes with it.

Wire format of a chunk (big-endian)::

    head   u8   bit 7 FIRST: this chunk begins a datagram; bits 0-6: the datagram's number,
                counted up by the sender per datagram on this link (mod 128)
    length u16  FIRST chunks only: the datagram's length, 1 .. MAX_DATAGRAM
    data        the next bytes of the datagram

Why not BitChat's fragment format: BitChat fragments at its mesh layer, so every fragment is a
whole relayed packet (its ~21-byte packet header with sender and recipient ids, then an 8-byte
fragment id, a 2-byte index, a 2-byte total and the original type: 13 bytes), and it sends
~469-byte fragments that need a large MTU. Here fragmentation is hop by hop, below the mesh:
the link already names the sender, and the link is ordered, so a chunk needs no sender, no
message id and no index. One byte per chunk is left: the FIRST bit and a 7-bit datagram number,
which lets a sender interleave datagrams on one link (a small urgent datagram need not wait
behind a 1300-byte one: at MTU 23 that is 64 writes). At most ``WINDOW`` (64) of the 128
numbers are in reassembly at once, so a continuation chunk names its datagram without doubt
unless 65 first chunks in a row were lost. The length rides once, in the
first chunk, instead of a LAST bit in every chunk: it bounds the reservation from the start,
rejects an oversize datagram at its first chunk and tells a complete datagram from a short one.
At MTU 23 that is 64 writes for a 1200-byte datagram where a 2-byte header would need 67.

Checks, all counted in ``stats().drops`` by ``ChunkDrop``, never raised: the sender numbers
datagrams in order and sends their first chunks in that order, so a first chunk whose number
skips ahead proves that reassemblies holding the skipped numbers (or numbers now more than
WINDOW behind) belong to datagrams whose end was lost: they are dropped as SUPERSEDED, and the
skipped datagrams' chunks are ORPHANs. A continuation that would overrun its length drops the reassembly
(OVERRUN); one whose first chunk never came is an ORPHAN. What one byte cannot see — a repeated
continuation chunk that still fits the length — is left to the secure session above, whose AEAD
rejects the datagram (node.proto.session).

Caps (``ChunkLimits``; BitChat's numbers, DESIGN.md "BLE", which BitChat applies per node):
128 reassemblies and 1 MiB of reassembly bytes for the whole node (``ReassemblyPool``, shared by
its links), 30 s from a datagram's first chunk, and per link the WINDOW of 64, so one link can
take at most half the node's reassemblies. New datagrams beyond a node cap are refused (a
flood from one link cannot evict another link's datagrams); beyond the link cap the link's own
oldest is dropped. At the defaults the count binds first (128 x MAX_DATAGRAM = 256 KiB); the
byte cap matters when the count is raised.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from bluez.proto.errors import BleProtoMisuse, BleProtoUsageError, ChunkDrop

__all__ = [
    "ATT_MAX_MTU",
    "ATT_MIN_MTU",
    "ATT_OVERHEAD",
    "FIRST_OVERHEAD",
    "HEADER_SIZE",
    "L2CAP_HEADER",
    "MAX_DATAGRAM",
    "NUMBERS",
    "WINDOW",
    "ChunkLimits",
    "Fragmenter",
    "LinkReassembler",
    "LinkStats",
    "PoolStats",
    "ReassemblyPool",
    "chunk_capacity",
    "chunk_count",
]

ATT_MIN_MTU: Final = 23  # Core 5.3 Vol 3 Part F §3.2.8: the default (and minimum) LE ATT_MTU
ATT_MAX_MTU: Final = 517  # BlueZ's BT_ATT_MAX_LE_MTU: a 512-byte value (§3.2.9) plus 5 of header
ATT_OVERHEAD: Final = 3  # Write Command / Notification: opcode 1 + handle 2 (§3.4.5.3, §3.4.7.1)
L2CAP_HEADER: Final = 4  # Core 5.3 Vol 3 Part A §3.1: length 2 + channel id 2, per ATT PDU
HEADER_SIZE: Final = 1  # every chunk
FIRST_OVERHEAD: Final = HEADER_SIZE + 2  # a first chunk also carries the datagram's length
MAX_DATAGRAM: Final = 2048  # a session datagram (~1300 bytes) plus the mesh header, with room
NUMBERS: Final = 128  # 7-bit datagram numbers
WINDOW: Final = 64  # numbers in reassembly at once on a link: half, so reuse is never ambiguous
_FIRST: Final = 0x80
_NUMBER: Final = 0x7F
_MIB: Final = 1 << 20


def chunk_capacity(att_mtu: int) -> int:
    """Bytes of one chunk (a Write Command's or Notification's value) at ``att_mtu``."""
    if not ATT_MIN_MTU <= att_mtu <= ATT_MAX_MTU:
        raise BleProtoUsageError(BleProtoMisuse.BAD_MTU, f"ATT MTU {att_mtu}")
    return att_mtu - ATT_OVERHEAD


def chunk_count(size: int, att_mtu: int) -> int:
    """How many chunks carry a datagram of ``size`` bytes at ``att_mtu``."""
    capacity = chunk_capacity(att_mtu)
    rest = max(0, size - (capacity - FIRST_OVERHEAD))
    return 1 + -(-rest // (capacity - HEADER_SIZE))


class Fragmenter:
    """The sending side of one link: numbers its datagrams and cuts them into chunks.

    The driver sends each datagram's chunks in order, and the first chunks of its datagrams in
    the order ``fragment`` returned them; it may interleave the rest as it likes."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def fragment(self, datagram: bytes, att_mtu: int, *, reserve: int = 0) -> list[bytes]:
        """The chunks of ``datagram`` at ``att_mtu``, each ``reserve`` bytes short of a full
        value (a peripheral's notifications spend one byte on the central's tag: bluez/links.py)."""
        size = len(datagram)
        if not 0 < size <= MAX_DATAGRAM:
            reason = BleProtoMisuse.EMPTY_DATAGRAM if not size else BleProtoMisuse.DATAGRAM_TOO_LARGE
            raise BleProtoUsageError(reason, f"{size} bytes (maximum {MAX_DATAGRAM})")
        capacity = chunk_capacity(att_mtu) - reserve
        if capacity <= FIRST_OVERHEAD:
            raise BleProtoUsageError(BleProtoMisuse.BAD_MTU, f"ATT MTU {att_mtu} less {reserve} reserved")
        number = self._next
        self._next = (number + 1) & _NUMBER
        first_size = capacity - FIRST_OVERHEAD
        view = memoryview(datagram)
        chunks = [b"".join((bytes((_FIRST | number, size >> 8, size & 0xFF)), view[:first_size]))]
        head = bytes((number,))
        step = capacity - HEADER_SIZE
        join = b"".join
        chunks.extend(join((head, view[offset : offset + step])) for offset in range(first_size, size, step))
        return chunks


@dataclass(frozen=True, slots=True)
class ChunkLimits:
    """Reassembly caps: ``max_reassemblies`` and ``max_bytes`` for the whole node
    (ReassemblyPool), ``link_reassemblies`` per link (at most WINDOW), ``max_age`` seconds from a
    datagram's first chunk."""

    max_reassemblies: int = 128
    max_bytes: int = _MIB
    link_reassemblies: int = WINDOW
    max_age: float = 30.0

    def __post_init__(self) -> None:
        if not (
            1 <= self.link_reassemblies <= min(WINDOW, self.max_reassemblies)
            and self.max_age > 0
            and self.max_bytes >= MAX_DATAGRAM
        ):
            raise BleProtoUsageError(
                BleProtoMisuse.BAD_LIMITS,
                f"need 1 <= link_reassemblies <= min({WINDOW}, max_reassemblies), max_age > 0, "
                f"max_bytes >= {MAX_DATAGRAM}: {self}",
            )


@dataclass(frozen=True, slots=True)
class LinkStats:
    reassemblies: int
    buffered_bytes: int  # reserved by this link's reassemblies (their datagrams' lengths)
    delivered: int
    drops: Mapping[ChunkDrop, int]


@dataclass(frozen=True, slots=True)
class PoolStats:
    links: int
    reassemblies: int
    buffered_bytes: int
    delivered: int
    drops: Mapping[ChunkDrop, int]  # every link's, closed ones included


class ReassemblyPool:
    """The node's reassembly bytes, shared by its links; ``open_link()`` makes a link's reassembler."""

    def __init__(self, limits: ChunkLimits = ChunkLimits()) -> None:
        self.limits = limits
        self._used = 0
        self._count = 0
        self._links: set[LinkReassembler] = set()
        self._closed_delivered = 0
        self._closed_drops: Counter[ChunkDrop] = Counter()

    def open_link(self) -> LinkReassembler:
        link = LinkReassembler(self)
        self._links.add(link)
        return link

    def _reserve(self, size: int) -> ChunkDrop | None:
        """Admits a new reassembly of ``size`` bytes, or says why not."""
        if self._count >= self.limits.max_reassemblies:
            return ChunkDrop.NODE_FULL
        if self._used + size > self.limits.max_bytes:
            return ChunkDrop.BYTES_FULL
        self._used += size
        self._count += 1
        return None

    def _release(self, size: int) -> None:
        self._used -= size
        self._count -= 1

    def _closed(self, link: LinkReassembler) -> None:
        if link in self._links:
            self._links.remove(link)
            self._closed_delivered += link._delivered
            self._closed_drops.update(link._drops)

    def stats(self) -> PoolStats:
        drops = Counter(self._closed_drops)
        delivered = self._closed_delivered
        reassemblies = 0
        for link in self._links:
            drops.update(link._drops)
            delivered += link._delivered
            reassemblies += len(link._active)
        return PoolStats(len(self._links), reassemblies, self._used, delivered, dict(drops))


class _Partial:
    __slots__ = ("have", "length", "number", "parts", "started")

    def __init__(self, number: int, length: int, first: memoryview, now: float) -> None:
        self.number = number
        self.length = length
        self.parts = [first]
        self.have = len(first)
        self.started = now


class LinkReassembler:
    """The receiving side of one link (from ``ReassemblyPool.open_link``); see the module doc."""

    def __init__(self, pool: ReassemblyPool) -> None:
        self._pool = pool
        self._limits = pool.limits
        self._active: OrderedDict[int, _Partial] = OrderedDict()  # by number, oldest first
        self._last_first: int | None = None
        self._buffered = 0
        self._delivered = 0
        self._drops: Counter[ChunkDrop] = Counter()
        self._due = math.inf

    def receive(self, chunk: bytes, now: float) -> bytes | None:
        """Feed one chunk (held as given: it must not change). Returns the datagram it completes."""
        if now >= self._due:
            self._expire(now)
        if not chunk:
            self._drops[ChunkDrop.TRUNCATED] += 1
            return None
        head = chunk[0]
        number = head & _NUMBER
        if head & _FIRST:
            return self._first(number, chunk, now)
        partial = self._active.get(number)
        if partial is None:
            self._drops[ChunkDrop.ORPHAN] += 1
            return None
        size = len(chunk) - HEADER_SIZE
        if not size:
            self._drops[ChunkDrop.TRUNCATED] += 1
            return None
        have = partial.have + size
        if have > partial.length:
            self._drop(partial, ChunkDrop.OVERRUN)
            return None
        partial.parts.append(memoryview(chunk)[HEADER_SIZE:])
        partial.have = have
        if have < partial.length:
            return None
        self._remove(partial)
        self._delivered += 1
        return b"".join(partial.parts)

    def _first(self, number: int, chunk: bytes, now: float) -> bytes | None:
        last = self._last_first
        if last is not None:
            skip = (number - last) & _NUMBER
            if not skip:
                self._drops[ChunkDrop.DUPLICATE] += 1
                return None
            # Numbers last+1 .. number were (re)used by the sender since, and numbers WINDOW or
            # more behind this one will be reused before long: what we hold under them lost its
            # end (or belongs to a datagram long gone) and can never complete correctly.
            stale = [
                p
                for p in self._active.values()
                if (p.number - last - 1) & _NUMBER < skip or (number - p.number) & _NUMBER >= WINDOW
            ]
            for partial in stale:
                self._drop(partial, ChunkDrop.SUPERSEDED)
        self._last_first = number
        if len(chunk) < FIRST_OVERHEAD:
            self._drops[ChunkDrop.TRUNCATED] += 1
            return None
        length = (chunk[1] << 8) | chunk[2]
        size = len(chunk) - FIRST_OVERHEAD
        if length > MAX_DATAGRAM:
            self._drops[ChunkDrop.TOO_LARGE] += 1
            return None
        if not length or size > length:
            self._drops[ChunkDrop.BAD_LENGTH] += 1
            return None
        if size == length:
            self._delivered += 1
            return chunk[FIRST_OVERHEAD:]
        active = self._active
        while len(active) >= self._limits.link_reassemblies:
            self._drop(next(iter(active.values())), ChunkDrop.TOO_MANY)
        refused = self._pool._reserve(length)
        if refused is not None:
            self._drops[refused] += 1
            return None
        self._buffered += length
        active[number] = _Partial(number, length, memoryview(chunk)[FIRST_OVERHEAD:], now)
        if self._due == math.inf:
            self._due = now + self._limits.max_age
        return None

    def _drop(self, partial: _Partial, reason: ChunkDrop) -> None:
        self._drops[reason] += 1
        self._remove(partial)

    def _remove(self, partial: _Partial) -> None:
        del self._active[partial.number]
        self._buffered -= partial.length
        self._pool._release(partial.length)

    # -- timers ---------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When the oldest reassembly expires, or None when none is in progress."""
        for partial in self._active.values():
            return partial.started + self._limits.max_age
        return None

    def handle_timer(self, now: float) -> None:
        self._expire(now)

    def _expire(self, now: float) -> None:
        self._due = math.inf
        active = self._active
        while active:
            partial = next(iter(active.values()))
            if partial.started + self._limits.max_age > now:
                self._due = partial.started + self._limits.max_age
                return
            self._drop(partial, ChunkDrop.EXPIRED)

    def close(self) -> None:
        """The link is gone: its reassemblies are dropped and their bytes returned to the pool."""
        for partial in list(self._active.values()):
            self._drop(partial, ChunkDrop.LINK_CLOSED)
        self._pool._closed(self)

    def stats(self) -> LinkStats:
        return LinkStats(len(self._active), self._buffered, self._delivered, dict(self._drops))
