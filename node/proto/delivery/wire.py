"""The delivery frames on the wire: DATA and ACK, carried as the payload of a path's frame.

    DATA: type=1 u8 | flags u8 (bit 0: reliable) | class u8 | epoch u64 | sequence u64 |
          behind u32 | payload
    ACK:  type=2 u8 | flags u8 (bit 0: busy)     | class u8 | epoch u64 | next u64 | count u8 |
          count x (gap u32, length u32)

Big-endian. ``sequence - behind`` is the sender's floor: the lowest reliable sequence of the class
it still holds unacknowledged (every one below was acknowledged). A receiver that has never seen
the epoch (the stream is new, or the receiving node restarted and lost its state) starts there,
rather than waiting forever for sequences that were delivered before; unreliable DATA has
``behind`` 0. ``next`` is the cumulative acknowledgement: every reliable sequence below it is in
the receiver's inbox. The ranges are selective acknowledgements of messages held out of order
above it (received, not yet released), in QUIC's gap/length shape (RFC 9000 §19.3.1) but
counting upwards: range i starts ``gap`` after the end of range i-1 (after ``next`` for the
first); between ranges a gap of 0 would merge two, so it must be at least 1. The first range
may start at ``next`` itself (gap 0): that message is held, in order, waiting for inbox room.
``busy`` says the receiver's inbox is full: alive, but taking nothing new (a zero window, RFC
9293 §3.8.6.1).

Decoding is strict: any byte the format does not allow raises ``WireError``; nothing else
escapes for any input (tests/unit/delivery/test_wire.py fuzzes it).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from node.proto.delivery.errors import WireError, WireProblem
from node.proto.vocabulary import Priority

__all__ = [
    "ACK_HEADER",
    "DATA_HEADER",
    "MAX_ACK_RANGES",
    "AckFrame",
    "DataFrame",
    "DeliveryFrame",
    "ack_class",
    "decode",
    "encode_ack",
    "encode_data",
]

TYPE_DATA: Final = 1
TYPE_ACK: Final = 2
FLAG_RELIABLE: Final = 0x01
FLAG_BUSY: Final = 0x01
MAX_ACK_RANGES: Final = 32  # ACKs stay under ~300 bytes: one small datagram on any path
_U64: Final = 1 << 64

_DATA = struct.Struct(">BBBQQI")
_ACK = struct.Struct(">BBBQQB")
_RANGE = struct.Struct(">II")
DATA_HEADER: Final = _DATA.size
ACK_HEADER: Final = _ACK.size
_PRIORITIES: Final = tuple(Priority)


@dataclass(frozen=True, slots=True)
class DataFrame:
    epoch: int
    priority: Priority
    sequence: int
    reliable: bool
    payload: bytes
    floor: int  # the sender's lowest unacknowledged reliable sequence (== sequence if unreliable)


@dataclass(frozen=True, slots=True)
class AckFrame:
    epoch: int
    priority: Priority
    next: int  # cumulative: every sequence below this is in the inbox
    ranges: tuple[tuple[int, int], ...]  # (first, last) inclusive, ascending, from `next` up
    busy: bool = False


DeliveryFrame: TypeAlias = DataFrame | AckFrame


def encode_data(
    epoch: int, priority: Priority, sequence: int, reliable: bool, payload: bytes, *, floor: int
) -> bytes:
    flags = FLAG_RELIABLE if reliable else 0
    return _DATA.pack(TYPE_DATA, flags, priority, epoch, sequence, sequence - floor) + payload


def encode_ack(
    epoch: int, priority: Priority, next_: int, ranges: Sequence[tuple[int, int]], busy: bool
) -> bytes:
    """``ranges`` ascending, disjoint and non-adjacent, from ``next_`` up; at most MAX_ACK_RANGES."""
    parts = [_ACK.pack(TYPE_ACK, FLAG_BUSY if busy else 0, priority, epoch, next_, len(ranges))]
    previous_end = next_  # one past the last sequence covered so far (next_ itself is missing)
    for first, last in ranges:
        parts.append(_RANGE.pack(first - previous_end, last - first + 1))
        previous_end = last + 1
    return b"".join(parts)


def ack_class(ack: bytes) -> int:
    """The class byte of an encoded ACK (``encode_ack``'s output): a newer ACK of the same class
    says all an older one did (cumulative, ranges from ``next`` up, busy now), so a driver keeps
    only the latest per class while a path is busy."""
    return ack[2]


def decode(data: bytes, max_payload: int) -> DeliveryFrame:
    """One DATA or ACK frame; ``WireError`` for anything malformed."""
    if not data:
        raise WireError(WireProblem.TRUNCATED, "empty delivery frame")
    kind = data[0]
    if kind == TYPE_DATA:
        return _decode_data(data, max_payload)
    if kind == TYPE_ACK:
        return _decode_ack(data)
    raise WireError(WireProblem.UNKNOWN_TYPE, f"type {kind} is neither DATA (1) nor ACK (2)")


def _priority(value: int) -> Priority:
    if value >= len(_PRIORITIES):
        raise WireError(WireProblem.BAD_PRIORITY, f"class {value}, the highest is {len(_PRIORITIES) - 1}")
    return _PRIORITIES[value]


def _decode_data(data: bytes, max_payload: int) -> DataFrame:
    if len(data) < DATA_HEADER:
        raise WireError(WireProblem.TRUNCATED, f"DATA of {len(data)} bytes, the header is {DATA_HEADER}")
    _, flags, klass, epoch, sequence, behind = _DATA.unpack_from(data)
    if flags & ~FLAG_RELIABLE:
        raise WireError(WireProblem.RESERVED_FLAGS, f"DATA flags 0x{flags:02x}")
    priority = _priority(klass)
    reliable = bool(flags & FLAG_RELIABLE)
    if behind > sequence or (behind and not reliable):
        raise WireError(WireProblem.BAD_FLOOR, f"{behind} behind sequence {sequence} (reliable: {reliable})")
    size = len(data) - DATA_HEADER
    if size > max_payload:
        raise WireError(WireProblem.PAYLOAD_TOO_LARGE, f"{size} bytes, the limit is {max_payload}")
    return DataFrame(epoch, priority, sequence, reliable, data[DATA_HEADER:], sequence - behind)


def _decode_ack(data: bytes) -> AckFrame:
    if len(data) < ACK_HEADER:
        raise WireError(WireProblem.TRUNCATED, f"ACK of {len(data)} bytes, the header is {ACK_HEADER}")
    _, flags, klass, epoch, next_, count = _ACK.unpack_from(data)
    if flags & ~FLAG_BUSY:
        raise WireError(WireProblem.RESERVED_FLAGS, f"ACK flags 0x{flags:02x}")
    priority = _priority(klass)
    if count > MAX_ACK_RANGES:
        raise WireError(WireProblem.TOO_MANY_RANGES, f"{count} ranges, at most {MAX_ACK_RANGES}")
    expected = ACK_HEADER + count * _RANGE.size
    if len(data) < expected:
        raise WireError(
            WireProblem.TRUNCATED, f"ACK of {len(data)} bytes, its {count} ranges need {expected}"
        )
    if len(data) > expected:
        raise WireError(WireProblem.TRAILING_BYTES, f"{len(data) - expected} bytes after {count} ranges")
    ranges = []
    previous_end = next_
    for i, (gap, length) in enumerate(_RANGE.iter_unpack(data[ACK_HEADER:])):
        first = previous_end + gap
        last = first + length - 1
        if (gap == 0 and i) or length == 0 or last >= _U64:
            raise WireError(
                WireProblem.BAD_RANGE, f"range {i}: gap {gap}, length {length} after {previous_end}"
            )
        ranges.append((first, last))
        previous_end = last + 1
    return AckFrame(epoch, priority, next_, tuple(ranges), bool(flags & FLAG_BUSY))
