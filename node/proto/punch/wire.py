"""The check message: ``magic | kind | side | token | transaction id | payload``.

The token (16 bytes, agreed through the introducer) says which punch a check belongs to; only a
check carrying it is treated as authenticated at this layer (identity is proven by the session
handshake run on the nominated path). The transaction id matches an answer to its check. The side
byte lets an agent ignore its own checks turned back by a hairpinning NAT; side A controls (it
nominates, RFC 8445 §6.1.1), side B follows its nomination. The payload is opaque
to the core: the caller's bytes, echoed to its driver in events.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from node.proto.punch.errors import PunchDrop, PunchWireError

MAGIC = b"BCP\x01"
TOKEN_SIZE = 16
MAX_PAYLOAD = 512  # keeps a check well inside one unfragmented datagram on any path
_HEADER = struct.Struct("!4sBB16sQ")


class Kind(enum.Enum):
    REQUEST = 1
    ANSWER = 2
    NOMINATE = 3  # a request that also tells the controlled side which pair to use (RFC 8445 §8.1.1)


class Side(enum.Enum):
    """Which end of the punch: the one that asked the introducer (A) or the one asked (B)."""

    A = 0
    B = 1


@dataclass(frozen=True, slots=True)
class Check:
    kind: Kind
    side: Side
    token: bytes
    transaction: int
    payload: bytes


def is_check(data: bytes) -> bool:
    """True when ``data`` is meant for the punching core (the driver passes the rest on)."""
    return data[:4] == MAGIC


def encode(check: Check) -> bytes:
    head = _HEADER.pack(MAGIC, check.kind.value, check.side.value, check.token, check.transaction)
    return head + check.payload


def decode(data: bytes) -> Check:
    if len(data) < _HEADER.size or len(data) > _HEADER.size + MAX_PAYLOAD:
        raise PunchWireError(
            PunchDrop.MALFORMED, f"{len(data)} bytes, expected {_HEADER.size}..{_HEADER.size + MAX_PAYLOAD}"
        )
    magic, kind, side, token, transaction = _HEADER.unpack_from(data)
    if magic != MAGIC or kind not in (1, 2, 3) or side not in (0, 1):
        raise PunchWireError(PunchDrop.MALFORMED, f"kind {kind} side {side}")
    return Check(Kind(kind), Side(side), token, transaction, data[_HEADER.size :])
