"""Which protocol one datagram on the node's UDP port belongs to, without guessing.

- A secure-session message starts with its type word (node.proto.session.messages: one type byte
  in 1..6 and three zero bytes, little-endian). Checked first: a STUN message could only start the
  same way with type 0x0100..0x0600 and length 0, which is no method STUN defines (RFC 8489 §18.2),
  so the order settles the one overlap.
- STUN has its first two bits 0 and the magic cookie 0x2112A442 at bytes 4-7 (RFC 8489 §5; RFC 7983
  §7 demultiplexes on the same first byte). The message class is in bits C1 (type bit 8: the low bit
  of byte 0) and C0: C1 set is a success or error response, which answers one of our own client
  transactions; C1 clear is a request or an indication, the responder's business.
- A hole-punching check starts with its magic ``BCP\x01`` (node.proto.punch.wire): its first byte
  0x42 has the two top bits 01, so it is neither STUN nor a session type word.
- Anything else is counted and dropped by the caller.
"""

from __future__ import annotations

import enum

from node.proto.punch.wire import is_check
from node.proto.session.messages import MessageType
from node.proto.stun.message import is_stun

__all__ = ["SESSION_WORDS", "Kind", "classify"]

SESSION_WORDS = frozenset(int(kind).to_bytes(4, "little") for kind in MessageType)
_C1 = 0x01  # RFC 8489 §5: the class bit C1 is bit 8 of the message type, the low bit of byte 0


class Kind(enum.Enum):
    SESSION = "secure-session message"
    STUN_REQUEST = "STUN request or indication"
    STUN_RESPONSE = "STUN success or error response"
    PUNCH = "hole-punching check"
    UNKNOWN = "neither STUN nor a session message"


def classify(data: bytes) -> Kind:
    if data[:4] in SESSION_WORDS:
        return Kind.SESSION
    if is_check(data):
        return Kind.PUNCH
    if is_stun(data):
        return Kind.STUN_RESPONSE if data[0] & _C1 else Kind.STUN_REQUEST
    return Kind.UNKNOWN
