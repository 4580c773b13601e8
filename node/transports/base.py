"""The one interface every path to a peer implements: UDP direct, TCP-TLS, TURN relay and BLE.

The coordinator speaks only this interface; the data it carries (peer ids, frames, endpoints,
events, health) is the shared vocabulary in node.proto.vocabulary. A transport moves *frames*
(an application message with a message id and a priority) to a *peer* named by its identity
(peer id), over whatever endpoint the transport knows how to reach. Identity is proven per
transport at connect (TLS certificate bound to the key on TCP; a signed hello on UDP, TURN and
BLE), so a ``PeerConnected`` event always names a verified peer and failover moves traffic between paths to
the same peer.

Lifecycle: ``async with transport:`` starts it (listening sockets, tasks in its own TaskGroup)
and closes it on exit; ``events()`` yields what happens until the transport closes (or
``batched_events()``, the same with the messages that arrived together as one event).
"""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Self, TypeAlias

from node.errors import LocalError, ReasonError, RemoteError
from node.proto.vocabulary import (
    MESSAGE_SETTERS,
    BatchedEvent,
    Capabilities,
    Endpoint,
    Frame,
    MessageReceived,
    MessagesReceived,
    PeerId,
    TransportEvent,
    TransportHealth,
    TransportKind,
    TransportReason,
)

# Opens a socket (family, type) where the caller wants it: the lab passes one that opens it
# inside a host's network namespace; the node's own default is plain ``socket.socket``.
SocketFactory: TypeAlias = Callable[[int, int], socket.socket]


async def unbatched(batches: AsyncIterator[BatchedEvent]) -> AsyncIterator[TransportEvent]:
    """``events()`` of a transport that receives in batches: each message of a MessagesReceived as
    its own MessageReceived, in order; other events as they are."""
    new, (set_peer, set_frame) = object.__new__, MESSAGE_SETTERS
    async for event in batches:
        if isinstance(event, MessagesReceived):
            peer = event.peer
            for frame in event.frames:
                message = new(MessageReceived)  # = MessageReceived(peer, frame), faster
                set_peer(message, peer)
                set_frame(message, frame)
                yield message
        else:
            yield event


class TransportError(ReasonError[TransportReason]):
    """Root of transport failures; ``reason`` lets the coordinator decide without parsing text."""

    def __init__(self, reason: TransportReason, detail: str) -> None:
        # ``detail`` is required here (optional in the base): every caller says what failed.
        super().__init__(reason, detail)


class TransportUsageError(TransportError, LocalError):
    """We asked for something the transport cannot do (too large, closed, wrong endpoint kind)."""


class TransportPeerError(TransportError, RemoteError):
    """The path or the peer failed us (unreachable, timed out, wrong identity)."""


class BreakerOpenError(TransportPeerError):
    """A dial refused untried: the remote failed often enough lately that its breaker is open.
    ``retry_in_s`` is the time until the breaker half-opens and admits a trial dial, so a
    redial loop waits exactly that long; its own backoff on top would leave a remote that came
    back unused for up to a further backoff ceiling."""

    def __init__(self, detail: str, retry_in_s: float) -> None:
        self.retry_in_s = retry_in_s
        super().__init__(TransportReason.BREAKER_OPEN, detail)


class Transport(ABC):
    """A path family to peers. Implementations: tcp_tls, turn (node.transports), udp and ble to come."""

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
