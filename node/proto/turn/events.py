"""Events of the sans-IO TURN client (node.proto.turn.client), drained with ``next_event()``."""

from __future__ import annotations

from dataclasses import dataclass

from node.proto.stun.attrs import IPAddress
from node.proto.turn.errors import TurnError

Address = tuple[IPAddress, int]


@dataclass(frozen=True, slots=True)
class Allocated:
    """The allocation exists (RFC 8656 §7.3): the relayed address peers send to."""

    relayed: Address
    mapped: Address | None  # XOR-MAPPED-ADDRESS: our address as the server saw it
    lifetime: int


@dataclass(frozen=True, slots=True)
class AllocationFailed:
    """Allocate did not succeed; the client is finished (try the next server)."""

    error: TurnError


@dataclass(frozen=True, slots=True)
class AllocationRefreshed:
    lifetime: int


@dataclass(frozen=True, slots=True)
class AllocationLost:
    """A refresh or another request failed, or the connection broke: re-allocate elsewhere."""

    error: TurnError


@dataclass(frozen=True, slots=True)
class PermissionInstalled:
    peer: Address


@dataclass(frozen=True, slots=True)
class PermissionFailed:
    """The server refused a permission or channel for ``peer`` (e.g. 403); queued data dropped."""

    peer: Address
    error: TurnError


@dataclass(frozen=True, slots=True)
class ChannelBound:
    peer: Address
    channel: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    peer: Address
    data: bytes
    channel: int | None  # None: it came in a Data indication


@dataclass(frozen=True, slots=True)
class Closed:
    """The allocation was released (Refresh with LIFETIME 0 answered, or it was never made)."""


TurnEvent = (
    Allocated
    | AllocationFailed
    | AllocationRefreshed
    | AllocationLost
    | PermissionInstalled
    | PermissionFailed
    | ChannelBound
    | DataReceived
    | Closed
)
