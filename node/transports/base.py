"""The one interface every path to a peer implements: UDP direct, TCP-TLS, TURN relay and BLE.

The coordinator speaks only this interface. A transport moves *frames* (an application message
with a message id and a priority) to a *peer* named by its identity (peer id), over whatever
endpoint the transport knows how to reach. Identity is proven per transport at connect (TLS
certificate bound to the key on TCP; a signed hello on UDP, TURN and BLE), so a
``PeerConnected`` event always names a verified peer and failover moves traffic between paths to
the same peer.

Lifecycle: ``async with transport:`` starts it (listening sockets, tasks in its own TaskGroup)
and closes it on exit; ``events()`` yields what happens until the transport closes (or
``batched_events()``, the same with the messages that arrived together as one event).
"""

from __future__ import annotations

import ipaddress
import socket
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from types import TracebackType
from typing import Any, Self, TypeAlias

from node.errors import LocalError, NodeError, RemoteError

# Opens a socket (family, type) where the caller wants it: the lab passes one that opens it
# inside a host's network namespace; the node's own default is plain ``socket.socket``.
SocketFactory: TypeAlias = Callable[[int, int], socket.socket]

PeerId: TypeAlias = str
"""A peer's identity: the base32 SHA-256 of its Ed25519 public key (see node.identity)."""


class TransportKind(Enum):
    UDP = "udp"
    TCP_TLS = "tcp_tls"
    TURN = "turn"
    BLE = "ble"


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
# (node.proto.frames, the tcp_tls events) create the instance with object.__new__ and set its
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


class TransportError(NodeError):
    """Root of transport failures; ``reason`` lets the coordinator decide without parsing text."""


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


class TransportUsageError(TransportError, LocalError):
    """We asked for something the transport cannot do (too large, closed, wrong endpoint kind)."""

    def __init__(self, reason: TransportReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason


class TransportPeerError(TransportError, RemoteError):
    """The path or the peer failed us (unreachable, timed out, wrong identity)."""

    def __init__(self, reason: TransportReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason


class Transport(ABC):
    """A path family to peers. Implementations: udp, tcp_tls, turn_relay (node.transports), ble (bluez)."""

    kind: TransportKind
    capabilities: Capabilities

    @abstractmethod
    async def __aenter__(self) -> Self:
        """Start: bind/listen, start owned tasks. Returns once the transport is ready to serve."""

    @abstractmethod
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close every connection (peers get ``DisconnectReason.SHUTDOWN``) and stop all tasks."""

    @abstractmethod
    async def connect(self, peer: PeerId, endpoint: Endpoint) -> None:
        """Open a path to ``peer`` at ``endpoint`` and verify its identity.

        Raises TransportPeerError (CONNECT_FAILED, CONNECT_TIMEOUT, PEER_MISMATCH) or
        TransportUsageError (TOO_MANY_CONNECTIONS, UNSUPPORTED_ENDPOINT, CLOSED).
        """

    @abstractmethod
    async def send(self, peer: PeerId, frame: Frame) -> None:
        """Queue ``frame`` for ``peer`` by priority. Returns when accepted (not when delivered).

        Raises TransportUsageError(MESSAGE_TOO_LARGE) above ``capabilities.max_message_size``
        and TransportUsageError(NOT_CONNECTED) when there is no path to the peer.
        """

    @abstractmethod
    async def disconnect(self, peer: PeerId) -> None:
        """Close the path to ``peer``; a ``PeerDisconnected(CLOSED_LOCALLY)`` event follows."""

    @abstractmethod
    def events(self) -> AsyncIterator[TransportEvent]:
        """Events in the order they happened; ends when the transport is closed."""

    async def batched_events(self) -> AsyncIterator[BatchedEvent]:
        """``events()`` for a consumer that takes messages in batches: the same events in the
        same order, except that messages that arrived together come as one MessagesReceived
        (no per-message event object or step of the iterator). Read one or the other, not both.

        This default gives every message a batch of its own; a transport that receives in
        batches overrides it."""
        async for event in self.events():
            if isinstance(event, MessageReceived):
                yield MessagesReceived(event.peer, (event.frame,))
            else:
                yield event

    @abstractmethod
    def health(self) -> TransportHealth:
        """The current health/metrics snapshot."""

    def check_size(self, frame: Frame) -> None:
        """Shared guard for ``send``: reject a frame this transport cannot carry, with a typed error."""
        if len(frame.payload) > self.capabilities.max_message_size:
            raise TransportUsageError(
                TransportReason.MESSAGE_TOO_LARGE,
                f"{len(frame.payload)} bytes > {self.capabilities.max_message_size} on {self.kind.value}",
            )
