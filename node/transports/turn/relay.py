"""The TURN relay transport: peers reached through our allocation on a TURN server (RFC 8656),
behind the common ``Transport`` interface.

``connect(peer, endpoint)`` takes the address the relay should send to (``RelayEndpoint.peer``,
usually the other side's own relayed address, or an ``IpEndpoint``), installs its permission and
channel and waits until the relay lets it in. Each frame travels in one relayed datagram in the
node's frame format (``node.proto.link.frames``: DATA kind, priority, message id). Datagrams from an
address no peer was connected at, or that are not one well-formed DATA frame, are counted drops.

The allocation is a ``RelayAllocation``: it survives the loss of a server by allocating again
(the next configured server when one is down) and re-opening every connected peer. The new
relayed address is ``relayed`` and goes to ``on_relay``; the peers must learn it (signalling's
job) before their traffic can follow.

Identity: this transport carries bytes. Proving the peer's identity over TURN is the datagram
secure session's job (``node.proto.session.secure_session``), layered above it; until it is adopted here,
``connect`` trusts the caller's pairing of peer id and address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from node.proto.breaker import BreakerFactory, CircuitBreaker
from node.proto.link import frames
from node.proto.turn.credentials import Credentials
from node.proto.turn.errors import TurnError
from node.proto.turn.events import Address
from node.proto.turn.uri import TurnServerAddress
from node.proto.vocabulary import (
    Capabilities,
    DisconnectReason,
    Endpoint,
    Frame,
    IpEndpoint,
    MessageReceived,
    PeerConnected,
    PeerDisconnected,
    PeerId,
    RelayEndpoint,
    TransportEvent,
    TransportHealth,
    TransportKind,
    TransportReason,
    TransportState,
)
from node.transports.base import Transport, TransportPeerError, TransportUsageError
from node.transports.turn.allocator import RelayAllocation, RelayHandler

log = logging.getLogger(__name__)

# One frame per relayed datagram: kept under a 1280-byte IPv6 minimum MTU with the frame header
# (14), a Send indication's STUN overhead (36) and IP/UDP headers (48).
MAX_RELAYED_PAYLOAD = 1180
EVENT_QUEUE_MAX = 4096


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """The relay's limits (the service takes them from ``[transport]``)."""

    max_connections: int = 100  # peers at once
    connect_timeout: float = 30.0  # seconds for a peer's permission and channel to be in place


class TurnRelayTransport(Transport):
    kind = TransportKind.TURN
    capabilities = Capabilities(max_message_size=MAX_RELAYED_PAYLOAD, reliable=False, ordered=False)

    def __init__(
        self,
        servers: Sequence[TurnServerAddress],
        credentials: Callable[[], Credentials],
        *,
        breaker: BreakerFactory = CircuitBreaker,
        settings: RelaySettings | None = None,
        on_relay: RelayHandler | None = None,
        **connection_options: Any,
    ) -> None:
        self._settings = settings or RelaySettings()
        self._on_relay = on_relay
        self.relay = RelayAllocation(
            servers,
            credentials,
            breaker=breaker,
            on_data=self._datagram,
            on_relay=self._relay_changed,
            **connection_options,
        )
        self._peers: dict[PeerId, Address] = {}
        self._by_address: dict[Address, PeerId] = {}
        self._events: asyncio.Queue[TransportEvent | None] = asyncio.Queue(EVENT_QUEUE_MAX)
        self._state = TransportState.STOPPED
        self._sent = self._received = self._bytes_sent = self._bytes_received = 0
        self._send_failures = self._malformed = self._dropped_events = 0

    @property
    def relayed(self) -> Address | None:
        return self.relay.relayed

    # -- lifecycle --------------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._state = TransportState.STARTING
        try:
            await self.relay.__aenter__()
        except BaseException:
            # Any failure to start (a TurnError, an OSError, cancellation) leaves it FAILED.
            self._state = TransportState.FAILED
            raise
        self._state = TransportState.READY
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.relay.__aexit__(exc_type, exc, tb)
        finally:
            for peer in list(self._peers):
                self._forget(peer, DisconnectReason.SHUTDOWN)
            self._state = TransportState.STOPPED
            self._emit(None)

    # -- Transport --------------------------------------------------------------------------------
    async def connect(self, peer: PeerId, endpoint: Endpoint) -> None:
        if self._state is TransportState.STOPPED:
            raise TransportUsageError(TransportReason.CLOSED, "the TURN transport is not running")
        if isinstance(endpoint, RelayEndpoint):
            target = endpoint.peer
        elif isinstance(endpoint, IpEndpoint):
            target = endpoint
        else:
            raise TransportUsageError(TransportReason.UNSUPPORTED_ENDPOINT, str(endpoint))
        if peer not in self._peers and len(self._peers) >= self._settings.max_connections:
            raise TransportUsageError(TransportReason.TOO_MANY_CONNECTIONS, f"{len(self._peers)} peers")
        address: Address = (target.ip, target.port)
        self.relay.open_peer(address)
        try:
            async with asyncio.timeout(self._settings.connect_timeout):
                await self.relay.peer_ready(address)
        except TimeoutError as exc:
            self.relay.close_peer(address)
            raise TransportPeerError(TransportReason.CONNECT_TIMEOUT, f"relay to {target}") from exc
        except TurnError as exc:
            self.relay.close_peer(address)
            raise TransportPeerError(TransportReason.CONNECT_FAILED, str(exc)) from exc
        old = self._peers.get(peer)
        if old is not None and old != address:
            self._by_address.pop(old, None)
        self._peers[peer] = address
        self._by_address[address] = peer
        self._emit(PeerConnected(peer, RelayEndpoint(self._server_endpoint(), target)))

    async def send(self, peer: PeerId, frame: Frame) -> None:
        self.check_size(frame)
        address = self._peers.get(peer)
        if address is None:
            raise TransportUsageError(TransportReason.NOT_CONNECTED, peer)
        data = frames.encode(frames.FrameKind.DATA, frame.payload, frame.message_id, frame.priority)
        before = self.relay.counters.dropped_no_relay
        self.relay.send(address, data)
        if self.relay.counters.dropped_no_relay != before:
            self._send_failures += 1  # no allocation right now: the coordinator retries elsewhere
            return
        self._sent += 1
        self._bytes_sent += len(frame.payload)

    async def disconnect(self, peer: PeerId) -> None:
        if peer in self._peers:
            self._forget(peer, DisconnectReason.CLOSED_LOCALLY)

    async def events(self) -> AsyncIterator[TransportEvent]:
        while True:
            event = await self._events.get()
            if event is None:
                return
            yield event

    def health(self) -> TransportHealth:
        state = self._state
        if state is TransportState.READY and self.relay.relayed is None:
            state = TransportState.DEGRADED  # between a lost allocation and the next one
        return TransportHealth(
            kind=self.kind,
            state=state,
            connections=len(self._peers),
            messages_sent=self._sent,
            messages_received=self._received,
            bytes_sent=self._bytes_sent,
            bytes_received=self._bytes_received,
            send_failures=self._send_failures,
            malformed_dropped=self._malformed,
        )

    # -- plumbing ---------------------------------------------------------------------------------
    def _datagram(self, source: Address, data: bytes) -> None:
        peer = self._by_address.get(source)
        if peer is None:
            self._malformed += 1
            return
        try:
            frame = frames.decode_datagram(data)
        except frames.FrameError:
            self._malformed += 1
            return
        self._received += 1
        self._bytes_received += len(frame.payload)
        self._emit(MessageReceived(peer, frame))

    def _relay_changed(self, relayed: Address | None) -> None:
        if relayed is None:
            log.warning("TURN relay lost; allocating again")
        else:
            log.info("TURN relayed address %s", _text(relayed))
        if self._on_relay is not None:
            self._on_relay(relayed)

    def _forget(self, peer: PeerId, reason: DisconnectReason) -> None:
        address = self._peers.pop(peer)
        self._by_address.pop(address, None)
        self.relay.close_peer(address)
        self._emit(PeerDisconnected(peer, reason))

    def _emit(self, event: TransportEvent | None) -> None:
        if self._events.full():
            self._dropped_events += 1
            return
        self._events.put_nowait(event)

    def _server_endpoint(self) -> IpEndpoint:
        conn = self.relay.connection
        if conn is None:
            return IpEndpoint(ipaddress.IPv4Address(0), 0)
        try:
            ip = ipaddress.ip_address(conn.server.host)
        except ValueError:
            ip = ipaddress.IPv4Address(0)  # a named server: the name is in the config
        return IpEndpoint(ip, conn.server.port)


def _text(address: Address) -> str:
    return str(IpEndpoint(address[0], address[1]))
