"""The in-process application API: what a game (or the control socket, later) calls on the node.

    api = NodeApi(node.coordinator)
    connected = await api.connect(peer_id, ["udp://127.0.0.1:9000"], timeout=10)
    message_id = await api.send(peer_id, b"roll", Priority.HIGH)      # returns once acknowledged
    async for message in api.messages(): ...                            # each to one subscriber
    async for event in api.peer_events(): ...                           # to every subscriber
    api.peers()                                                          # paths and scores

Errors are typed (node.services.coordinator.errors): ``ApiUsageError`` (TOO_LARGE, CLOSED) and
``PeerUnreachableError`` (UNKNOWN_PEER, NO_PATH, CONNECT_FAILED, DELIVERY_FAILED with the
delivery core's ``FailReason``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from node.proto.coordinator import PeerView
from node.proto.peer_uri import PeerUri, parse_peer_uri
from node.proto.vocabulary import PeerId, Priority, TransportKind
from node.services.coordinator.records import Connected, InboundMessage, PeerEvent, Sent, Traversal
from node.services.coordinator.service import CoordinatorService


class NodeApi:
    def __init__(self, service: CoordinatorService) -> None:
        self._service = service

    async def connect(
        self,
        peer: PeerId,
        uris: Iterable[PeerUri | str] = (),
        timeout: float | None = None,  # noqa: ASYNC109 - the issue's API: how long to wait for a path
    ) -> Connected:
        """Dial ``peer`` at ``uris`` (``udp://H:P``, ``tls://H:P``; none: its static addresses, or
        wait for it to connect to us) and return once a path works: the active path and all
        paths. ``timeout`` defaults to ``transport.connect_timeout_s``. Raises PeerUriError for a
        bad URI, PeerUnreachableError (CONNECT_FAILED when every attempt failed, NO_PATH on
        timeout)."""
        parsed = [uri if isinstance(uri, PeerUri) else parse_peer_uri(uri) for uri in uris]
        return await self._service.connect(peer, parsed, timeout)

    async def disconnect(self, peer: PeerId) -> tuple[TransportKind, ...]:
        """Close every path to ``peer``; the kinds of path closed (none: it had none)."""
        return await self._service.disconnect(peer)

    async def send(
        self, peer: PeerId, data: bytes, priority: Priority = Priority.NORMAL, reliable: bool = True
    ) -> str:
        """Send ``data`` to ``peer``; returns the message id (as ``messages()`` shows it on the
        peer) once acknowledged (reliable: the message is in the peer's inbox) or sent
        (unreliable: once, never resent). Waits for room in the peer's window (never an
        unbounded queue). Raises ApiUsageError(TOO_LARGE), PeerUnreachableError(UNKNOWN_PEER /
        NO_PATH within ``transport.failover_timeout_s`` / DELIVERY_FAILED after the retries)."""
        return str(await self._service.send(peer, data, priority, reliable))

    async def deliver(
        self, peer: PeerId, data: bytes, priority: Priority = Priority.NORMAL, reliable: bool = True
    ) -> Sent:
        """``send``, also telling the kind of path that carried the message (``str(message_id)``
        is ``send``'s answer)."""
        return await self._service.deliver(peer, data, priority, reliable)

    def messages(self) -> AsyncIterator[InboundMessage]:
        """Received messages, oldest first; each goes to exactly one subscriber. Taking one makes
        room in the inbox (the node acknowledges again once it had stopped). Ends when the node
        stops."""
        return self._service.inbox.messages()

    def peer_events(self) -> AsyncIterator[PeerEvent]:
        """Paths coming up and going away, from now on, to every subscriber."""
        return self._service.events.subscribe()

    def traversal(self, peer: PeerId) -> Traversal | None:
        """What the last introduction to ``peer`` found (None: never introduced)."""
        return self._service.traversals.get(peer)

    def peers(self) -> tuple[PeerView, ...]:
        """Every peer with its active path and each path's state, score, RTT, loss, breaker."""
        return self._service.peers()
