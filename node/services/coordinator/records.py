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


@dataclass(frozen=True, slots=True)
class Connected:
    """``connect``'s answer: the path traffic uses now, and every path known."""

    peer: PeerId
    active: PathKey
    paths: tuple[PathKey, ...]


@dataclass(frozen=True, slots=True)
class Sent:
    """``deliver``'s answer: the message's id and the kind of path that carried it (the one its
    acknowledgement answered for a reliable message; None when not known)."""

    message_id: MessageId
    path: TransportKind | None
