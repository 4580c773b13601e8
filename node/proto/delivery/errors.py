"""Typed errors of the delivery core (node.proto.delivery).

``WireError`` is a peer's malformed DATA or ACK (a ``RemoteError``: the driver logs one line, counts
it and carries on); ``AckError`` is a well-formed ACK that contradicts what this node sent (also the
peer's fault: the sender's state is left untouched). ``DeliveryUsageError`` is our own misuse:
settings out of range, or a message above the size limit handed to ``offer``.
"""

from __future__ import annotations

import enum

from node.errors import LocalError, ReasonError, RemoteError

__all__ = ["AckError", "AckProblem", "DeliveryMisuse", "DeliveryUsageError", "WireError", "WireProblem"]


class WireProblem(enum.Enum):
    TRUNCATED = "shorter than its header"
    UNKNOWN_TYPE = "unknown frame type"
    RESERVED_FLAGS = "reserved flag bits set"
    BAD_PRIORITY = "priority class out of range"
    BAD_FLOOR = "floor above the sequence, or set on unreliable DATA"
    PAYLOAD_TOO_LARGE = "payload above the message size limit"
    TOO_MANY_RANGES = "more selective-ack ranges than allowed"
    BAD_RANGE = "selective-ack range empty, overlapping, adjacent or beyond 64 bits"
    TRAILING_BYTES = "bytes after the last ack range"


class WireError(ReasonError[WireProblem], RemoteError):
    """A delivery frame from a peer could not be decoded; it was dropped."""


class AckProblem(enum.Enum):
    BEYOND_SENT = "acknowledges a sequence number this node never sent"


class AckError(ReasonError[AckProblem], RemoteError):
    """A peer's ACK contradicts what this node sent; it was ignored."""


class DeliveryMisuse(enum.Enum):
    MESSAGE_TOO_LARGE = "message above max_message_bytes"
    BAD_SETTINGS = "delivery settings out of range or inconsistent"
    NOT_IN_INBOX = "consumed more than the inbox holds"


class DeliveryUsageError(ReasonError[DeliveryMisuse], LocalError):
    """The caller asked the delivery core for something it cannot do."""
