"""Typed errors of the STUN/TURN codec (node.proto.stun and its helpers).

Reasons are enum fields, so a caller decides on types and codes, never on message text.
"""

from __future__ import annotations

import enum

from node.errors import LocalError, ReasonError, RemoteError


class DecodeReason(enum.Enum):
    """Why bytes from the network were rejected."""

    TOO_SHORT = "too short"
    NOT_STUN = "top two bits not zero (RFC 8489 §5)"
    BAD_MAGIC = "bad magic cookie (RFC 8489 §5)"
    BAD_LENGTH = "length field disagrees with the data"
    UNKNOWN_METHOD = "unknown method"
    BAD_ATTRIBUTE = "malformed attribute value"
    BAD_ORDER = "attribute after FINGERPRINT (RFC 8489 §14.7)"
    BAD_FINGERPRINT = "FINGERPRINT mismatch (RFC 8489 §14.7)"
    BAD_CHANNEL = "channel number outside 0x4000-0x4FFF (RFC 8656 §12)"
    STREAM_BROKEN = "stream framing lost earlier; the connection must be closed"


class StunDecodeError(ReasonError[DecodeReason], RemoteError):
    """A peer or server sent bytes that are not a valid STUN message or ChannelData frame.

    ``transaction_id`` is set when the header was readable, so a server can still answer
    (e.g. 400 for an unknown method); ``attribute_type`` names the attribute at fault.
    """

    def __init__(
        self,
        reason: DecodeReason,
        detail: str = "",
        *,
        transaction_id: bytes | None = None,
        attribute_type: int | None = None,
    ) -> None:
        self.transaction_id = transaction_id
        self.attribute_type = attribute_type
        super().__init__(reason, detail)


class StreamOverflowError(RemoteError):
    """The peer sent more bytes than the stream receive buffer may hold."""

    def __init__(self, limit: int, wanted: int) -> None:
        self.limit = limit
        self.wanted = wanted
        super().__init__(f"stream receive buffer cap {limit} exceeded ({wanted} bytes)")


class StunEncodeError(LocalError):
    """We asked the codec to encode something the wire format or the RFCs do not allow."""
