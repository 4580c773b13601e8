"""The shared vocabulary of every layer: peer ids, priorities, frames, endpoints, transport events.

Plain data, no I/O: the sans-IO cores (link framing, and the coordinator and the datagram session
driver to come), the transports, BlueZ and the services all speak it. The Transport interface
that moves these frames is node.transports.base.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any, TypeAlias

PeerId: TypeAlias = str
"""A peer's identity: the base32 SHA-256 of its Ed25519 public key (see node.proto.identity)."""


class TransportKind(Enum):
    UDP = "udp"
    TCP_TLS = "tcp_tls"
    TURN = "turn"
    BLE = "ble"

    # Members are singletons compared by identity, so the identity hash is consistent with
    # equality, and it runs in C: Enum's own hashes the name in Python, on every path lookup.
    __hash__ = object.__hash__


class Priority(IntEnum):
    """Send priority: higher drains first when a path is congested (game moves over chatter)."""

    BULK = 0
    NORMAL = 1
    HIGH = 2
    CONTROL = 3  # handshakes, acks, keepalives


class TransportState(Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    DEGRADED = "degraded"  # up, but failing health checks or with its breaker open
    FAILED = "failed"


class DisconnectReason(Enum):
    CLOSED_LOCALLY = "closed_locally"
    CLOSED_BY_PEER = "closed_by_peer"
    TIMEOUT = "timeout"  # consent/keepalive silence past its limit
    NETWORK_DOWN = "network_down"  # netlink reported the link or route gone
    AUTH_FAILED = "auth_failed"  # the peer did not prove the identity we expected
    PROTOCOL_ERROR = "protocol_error"  # malformed frames past the tolerated count
    RELAY_LOST = "relay_lost"  # TURN allocation or BLE relay gone
    SHUTDOWN = "shutdown"  # the node is stopping


@dataclass(frozen=True, slots=True)
class Capabilities:
    max_message_size: int  # largest payload a single send() accepts
    reliable: bool  # the transport retransmits by itself (TCP); False: coordinator acks/retries
    ordered: bool  # frames arrive in send order


@dataclass(frozen=True, slots=True)
class IpEndpoint:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int

    def __str__(self) -> str:
        host = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RelayEndpoint:
    """A peer reached through a TURN relay: the server, and the peer's address as the relay sees it."""

    server: IpEndpoint
    peer: IpEndpoint


@dataclass(frozen=True, slots=True)
class BleEndpoint:
    address: str  # the device address BlueZ reports ("AA:BB:CC:DD:EE:FF")


Endpoint: TypeAlias = IpEndpoint | RelayEndpoint | BleEndpoint


@dataclass(frozen=True, slots=True)
class Frame:
    """One application message as it travels: the id makes acks and deduplication possible."""

    message_id: int  # unsigned 64-bit, unique per sender
    payload: bytes
    priority: Priority = Priority.NORMAL


@dataclass(frozen=True, slots=True)
class PeerConnected:
    """A path to ``peer`` at ``endpoint`` works. Again for a peer already connected when the
    path moved: a new connection replaced the old, or the peer roamed to a new address."""

    peer: PeerId
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    peer: PeerId
    reason: DisconnectReason


@dataclass(frozen=True, slots=True)
class MessageReceived:
    peer: PeerId
    frame: Frame


TransportEvent: TypeAlias = PeerConnected | PeerDisconnected | MessageReceived


@dataclass(frozen=True, slots=True)
class MessagesReceived:
    """Messages from one peer that arrived together (one read of a stream), in order."""

    peer: PeerId
    frames: Sequence[Frame]


BatchedEvent: TypeAlias = PeerConnected | PeerDisconnected | MessagesReceived


# Receive hot paths build a Frame and a MessageReceived per message. A frozen dataclass's
# __init__ is a Python frame storing each field through object.__setattr__; the hot loops
# (node.proto.link.frames, the tcp_tls events) create the instance with object.__new__ and set its
# slots with these setters instead: the same instance at about half the cost. A test keeps the
# setters in step with the dataclasses' fields.
SlotSetter: TypeAlias = Callable[[Any, Any], None]


def _slot_setters(cls: type, *names: str) -> tuple[SlotSetter, ...]:
    return tuple(getattr(cls, name).__set__ for name in names)


FRAME_SETTERS = _slot_setters(Frame, "message_id", "payload", "priority")
MESSAGE_SETTERS = _slot_setters(MessageReceived, "peer", "frame")


def make_frame(message_id: int, payload: bytes, priority: Priority) -> Frame:
    """``Frame(message_id, payload, priority)`` through FRAME_SETTERS."""
    frame = object.__new__(Frame)
    set_id, set_payload, set_priority = FRAME_SETTERS
    set_id(frame, message_id)
    set_payload(frame, payload)
    set_priority(frame, priority)
    return frame


@dataclass(frozen=True, slots=True)
class TransportHealth:
    """A snapshot for scoring and metrics; cheap to take, never blocks."""

    kind: TransportKind
    state: TransportState
    connections: int
    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    send_failures: int = 0
    malformed_dropped: int = 0
    rtt_ms: float | None = None  # median of the recent samples
    loss: float | None = None  # fraction lost over the recent samples


class TransportReason(Enum):
    NOT_CONNECTED = "not_connected"
    CONNECT_FAILED = "connect_failed"
    CONNECT_TIMEOUT = "connect_timeout"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    MESSAGE_TOO_LARGE = "message_too_large"
    CLOSED = "closed"
    PEER_MISMATCH = "peer_mismatch"
    UNSUPPORTED_ENDPOINT = "unsupported_endpoint"
    AUTH_FAILED = "auth_failed"  # the peer's identity did not verify (or it refused ours)
    REFUSED = "refused"  # the peer refused us for another reason (e.g. its connection limit)
    BREAKER_OPEN = "breaker_open"  # this remote failed too often; not tried until it half-opens
