"""The arguments of the application API's control commands (``connect``, ``send``), read and
checked by control_args; anything wrong is a ``bad_request`` naming the argument, so a handler
only sees a valid peer id, parsed URIs and sane counts."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from node.proto.peer_uri import PeerUriError, is_peer_id, parse_peer_uri
from node.proto.vocabulary import Priority
from node.services.control_args import ArgumentError

# transport.connect_timeout_s's own ceiling: a connect never waits longer.
MAX_CONNECT_TIMEOUT_S = 600.0
# Generated messages per request: enough for any load test, and the node never holds them (each
# is made when its turn comes), so the bound is on time, not memory.
MAX_COUNT = 1_000_000
INDEX_BYTES = 8  # a generated message starts with its index, big-endian
DEFAULT_SIZE = 64
# transport.max_message_bytes's own ceiling; the node's real limit is checked before a message is made.
MAX_SIZE = 64 << 20


class PriorityName(enum.Enum):
    """A priority as the control socket and the CLI spell it."""

    BULK = "bulk"
    NORMAL = "normal"
    HIGH = "high"
    CONTROL = "control"

    @property
    def priority(self) -> Priority:
        return Priority[self.name]


def _check_peer_id(peer_id: str) -> None:
    if not is_peer_id(peer_id):
        raise ArgumentError("peer_id", "must be a peer id (52 base32 characters)")


@dataclass(frozen=True, slots=True)
class ConnectArgs:
    """``connect``: dial ``peer_id`` at ``uris`` (none: its static addresses, or wait for it)."""

    peer_id: str
    uris: tuple[str, ...] = ()
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        _check_peer_id(self.peer_id)
        for i, uri in enumerate(self.uris):
            try:
                parse_peer_uri(uri)
            except PeerUriError as exc:
                raise ArgumentError(f"uris[{i}]", f"is not a peer address ({exc})") from None
        if self.timeout_s is not None and not 0 < self.timeout_s <= MAX_CONNECT_TIMEOUT_S:
            raise ArgumentError("timeout_s", f"must be above 0 and at most {MAX_CONNECT_TIMEOUT_S:g} seconds")


@dataclass(frozen=True, slots=True)
class DisconnectArgs:
    """``disconnect``: close every path to ``peer_id``."""

    peer_id: str

    def __post_init__(self) -> None:
        _check_peer_id(self.peer_id)


@dataclass(frozen=True, slots=True)
class SendArgs:
    """``send``: the messages in ``messages_b64``, or ``count`` generated ones of ``size`` bytes
    (message i starts with i as INDEX_BYTES bytes big-endian, then filler)."""

    peer_id: str
    priority: PriorityName = PriorityName.NORMAL
    reliable: bool = True
    messages_b64: tuple[str, ...] | None = None
    count: int | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        _check_peer_id(self.peer_id)
        if (self.messages_b64 is None) == (self.count is None):
            raise ArgumentError("messages_b64", "or 'count' must be given, and not both")
        if self.messages_b64 is not None and not self.messages_b64:
            raise ArgumentError("messages_b64", "must hold at least one message")
        if self.count is not None and not 1 <= self.count <= MAX_COUNT:
            raise ArgumentError("count", f"must be between 1 and {MAX_COUNT}")
        if self.size is not None:
            if self.count is None:
                raise ArgumentError("size", "goes with 'count' (generated messages) only")
            if not INDEX_BYTES <= self.size <= MAX_SIZE:
                raise ArgumentError("size", f"must be between {INDEX_BYTES} (the index) and {MAX_SIZE}")
