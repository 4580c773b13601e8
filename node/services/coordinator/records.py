"""What the application API hands out: received messages, peer events, a connect result."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from node.proto.coordinator import PathKey
from node.proto.delivery.ids import MessageId
from node.proto.vocabulary import PeerId, Priority, TransportKind


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message from a peer, as a subscriber takes it from the inbox."""

    peer: PeerId
    message_id: str  # MessageId's text: unique per sending node, the same on both nodes
    priority: Priority
    path: TransportKind  # the kind of path the message last arrived on from this peer
    data: bytes


class PeerState(enum.Enum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class PeerEvent:
    """A path to ``peer`` came up or went away."""

    peer: PeerId
    state: PeerState
    path: PathKey


class PathMethod(enum.Enum):
    """How a path to a peer was found (``connect --json``'s ``method``)."""

    HOST = "host"  # dialled at an address given (or a host candidate)
    SRFLX = "srflx"
    PRFLX = "prflx"
    PREDICTION = "prediction"
    BIRTHDAY = "birthday"
    RELAY = "relay"
    TCP_TLS = "tcp_tls"


class TraversalOutcome(enum.Enum):
    """How a peer's NAT traversal ended (``bitcraps_nat_traversal_total{outcome}``)."""

    PENDING = "pending"
    DIRECT = "direct"  # a punched UDP path was proven
    RELAY = "relay"  # no direct path; the relay carries the traffic
    FAILED = "failed"  # neither


@dataclass(frozen=True, slots=True)
class Traversal:
    """What an introduction to a peer learned: the remote endpoints of its relay paths (a UDP
    session to one of them is relayed, not direct), and the direct path a punch proved."""

    started: float  # the loop's clock when the introduction began
    relays: frozenset[str] = frozenset()  # PathKey.remote texts
    direct: str | None = None  # PathKey.remote of the punched path
    method: PathMethod | None = None
    direct_after_s: float | None = None
    outcome: TraversalOutcome = TraversalOutcome.PENDING


@dataclass(frozen=True, slots=True)
class Connected:
    """``connect``'s answer: the path traffic uses now, and every path known; whether it is
    direct and how it was found; how long until the first path worked and (when a punch
    proved one already) until the direct path."""

    peer: PeerId
    active: PathKey
    paths: tuple[PathKey, ...]
    direct: bool = True
    method: PathMethod = PathMethod.HOST
    time_to_first_s: float | None = None
    time_to_direct_s: float | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """``deliver``'s answer: the message's id and the kind of path that carried it (the one its
    acknowledgement answered for a reliable message; None when not known)."""

    message_id: MessageId
    path: TransportKind | None
