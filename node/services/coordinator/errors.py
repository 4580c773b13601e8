"""The application API's typed errors: what ``connect`` and ``send`` raise, the reason an enum.

``ApiUsageError`` is the caller's misuse (a message too large, the node stopping);
``PeerUnreachableError`` is the peer or the network failing us (no path, no acknowledgement).
A delivery failure also carries the delivery core's ``FailReason``.
"""

from __future__ import annotations

import enum

from node.errors import LocalError, ReasonError, RemoteError
from node.proto.delivery.events import FailReason


class ApiReason(enum.Enum):
    TOO_LARGE = "message too large"
    CLOSED = "the node is stopping"
    UNKNOWN_PEER = "unknown peer"
    NO_PATH = "no usable path"
    CONNECT_FAILED = "connect failed"
    DELIVERY_FAILED = "delivery failed"


class ApiError(ReasonError[ApiReason]):
    """Root of the API's errors; ``reason`` says which."""


class ApiUsageError(ApiError, LocalError):
    """The caller asked for something the node cannot do."""


class PeerUnreachableError(ApiError, RemoteError):
    """The peer could not be reached, or did not acknowledge; ``failure`` for DELIVERY_FAILED."""

    def __init__(self, reason: ApiReason, detail: str, failure: FailReason | None = None) -> None:
        self.failure = failure
        super().__init__(reason, detail)
