"""The TURN relay transport: peers reached through our allocation on a TURN server (RFC 8656),
behind the common ``Transport`` interface, each proving its identity in a secure session.

The relayed path carries the same sessions as the node's UDP port: a ``SessionPath``
(node.transports.session_path: one ``SessionTable``, sessions by receiver index, fragments of
``TURN_PLAINTEXT`` and bounded reassembly, keepalive and consent) whose datagrams go to and come
from peer addresses through the allocation (ChannelData or Send indications: the connection's
business). The TURN server and everything between sees only sealed session messages.

``connect(peer, endpoint)`` takes the address the relay should send to (``RelayEndpoint.peer``,
usually the other side's own relayed address, or an ``IpEndpoint``), installs its permission and
channel, waits until the relay lets it in, then runs the handshake through the relay and returns
once the peer proved ``peer``'s identity (another id: TransportPeerError(PEER_MISMATCH)). The
address-to-peer map is the sessions' own: an address belongs to a peer only once a session there
authenticated, and a peer's address moves only with an authenticated datagram (roaming as on UDP);
the caller's pairing of id and address is never taken on trust. A peer whose address moved keeps
its permission at the new address.

The allocation is a ``RelayAllocation``: it survives the loss of a server by allocating again
(the next configured server when one is down) and re-opening every permitted peer. The new
relayed address is ``relayed`` and goes to ``on_relay``; the peers must learn it (signalling's
job) before their traffic can follow.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address
from types import TracebackType
from typing import Any, Self

from node.proto.breaker import BreakerFactory, CircuitBreaker
from node.proto.datagram.fragments import TURN_PLAINTEXT
from node.proto.datagram.reassembly import ReassemblyLimits
from node.proto.identity import Identity
from node.proto.session.table_types import DEFAULT_TABLE_CONFIG
from node.proto.session.trust import PeerVerifier
from node.proto.turn.credentials import Credentials
from node.proto.turn.errors import TurnError
from node.proto.turn.events import Address
from node.proto.turn.uri import TurnServerAddress
from node.proto.vocabulary import (
    Capabilities,
    Endpoint,
    Frame,
    IpEndpoint,
    PeerConnected,
    PeerId,
    RelayEndpoint,
    TransportHealth,
    TransportKind,
    TransportReason,
    TransportState,
)
from node.transports.base import Transport, TransportPeerError, TransportUsageError
from node.transports.session_path import OverSessionPath, PathSettings, SessionPath
from node.transports.turn.allocator import RelayAllocation, RelayHandler

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """The relay's limits (the service takes them from ``[transport]``)."""

    max_connections: int = 100  # peers at once
    connect_timeout: float = 30.0  # seconds for a peer's permission, then again for its handshake
    max_message: int = 1 << 20  # transport.max_message_bytes
    event_queue: int = 4096  # received messages held for the consumer, at most
    health_check_interval: float = 10.0  # transport.health_check_interval_s: probes of each peer
    reassembly: ReassemblyLimits = field(default_factory=ReassemblyLimits)

    def path(self) -> PathSettings:
        # Fragments fit a ChannelData datagram of 1200 bytes (RFC 8656 §12.4: 4 bytes of header);
        # before the channel is bound a Send indication's 36 keeps it under IPv6's 1280 anyway.
        return PathSettings(
            max_message=self.max_message,
            plaintext=TURN_PLAINTEXT,
            connect_timeout=self.connect_timeout,
            event_queue=self.event_queue,
            health_check_interval=self.health_check_interval,
            table=replace(DEFAULT_TABLE_CONFIG, max_sessions=self.max_connections),
            reassembly=self.reassembly,
        )


class TurnRelayTransport(OverSessionPath[Address], Transport):
    kind = TransportKind.TURN

    def __init__(
        self,
        servers: Sequence[TurnServerAddress],
        credentials: Callable[[], Credentials],
        identity: Identity,
        verifier: PeerVerifier,
        *,
        credential: bytes = b"",
        breaker: BreakerFactory = CircuitBreaker,
        settings: RelaySettings | None = None,
        on_relay: RelayHandler | None = None,
        **connection_options: Any,
    ) -> None:
        self._settings = settings = settings or RelaySettings()
        self.capabilities = Capabilities(settings.max_message, reliable=False, ordered=False)
        self._on_relay = on_relay
        self.relay = RelayAllocation(
            servers,
            credentials,
            breaker=breaker,
            on_data=self._datagram,
            on_relay=self._relay_changed,
            **connection_options,
        )
        self._path: SessionPath[Address] = SessionPath(
            identity,
            verifier,
            settings.path(),
            self._transmit,
            self._endpoint,
            name="TURN",
            credential=credential,
        )
        self._path.on_address = self._address_moved
        self._state = TransportState.STOPPED
        self._dialling: Counter[Address] = Counter()  # addresses a connect is waiting on

    @property
    def relayed(self) -> Address | None:
        return self.relay.relayed

    # -- lifecycle --------------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._state = TransportState.STARTING
        self._path.start(asyncio.get_running_loop())
        try:
            await self.relay.__aenter__()
        except BaseException:
            # Any failure to start (a TurnError, an OSError, cancellation) leaves it FAILED.
            self._state = TransportState.FAILED
            self._path.close()
            raise
        self._state = TransportState.READY
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._path.begin_close()
        try:
            await self.relay.__aexit__(exc_type, exc, tb)
        finally:
            self._path.close()
            self._state = TransportState.STOPPED

    # -- Transport --------------------------------------------------------------------------------
    async def connect(self, peer: PeerId, endpoint: Endpoint) -> None:
        if self._state is TransportState.STOPPED or self._path.closing:
            raise TransportUsageError(TransportReason.CLOSED, "the TURN transport is not running")
        if isinstance(endpoint, RelayEndpoint):
            target = endpoint.peer
        elif isinstance(endpoint, IpEndpoint):
            target = endpoint
        else:
            raise TransportUsageError(TransportReason.UNSUPPORTED_ENDPOINT, str(endpoint))
        if peer in self._path.peers:
            return
        address: Address = (target.ip, target.port)
        self.relay.open_peer(address)
        self._dialling[address] += 1
        try:
            try:
                async with asyncio.timeout(self._settings.connect_timeout):
                    await self.relay.peer_ready(address)
            except TimeoutError as exc:
                raise TransportPeerError(
                    TransportReason.CONNECT_TIMEOUT,
                    f"the relay did not let {target} in within {self._settings.connect_timeout:g} s",
                ) from exc
            except TurnError as exc:
                raise TransportPeerError(
                    TransportReason.CONNECT_FAILED, f"no permission for {target}: {exc}"
                ) from exc
            await self._path.connect(peer, address, f"{target} through the relay")
        except BaseException:
            if address not in self._path.peers.values() and self._dialling[address] == 1:
                self.relay.close_peer(address)
            raise
        finally:
            self._dialling[address] -= 1
            if not self._dialling[address]:
                del self._dialling[address]

    async def send(self, peer: PeerId, frame: Frame) -> None:
        self.check_size(frame)
        self._path.send(peer, frame)

    def health(self) -> TransportHealth:
        state = self._state
        if state is TransportState.READY and self.relay.relayed is None:
            state = TransportState.DEGRADED  # between a lost allocation and the next one
        return self._path.health(self.kind, state, len(self._path.peers))

    def network_down(self, lost: Collection[IPv4Address | IPv6Address]) -> bool:
        """The link monitor saw local addresses go: when the allocation's connection
        used one, it is remade now (True). Sessions over the relay then follow its new address."""
        return self.relay.network_down(lost)

    def peers(self) -> dict[PeerId, Address]:
        """Each proven peer and the address its session authenticated from."""
        return dict(self._path.peers)

    # -- plumbing ---------------------------------------------------------------------------------
    def _datagram(self, source: Address, data: bytes) -> None:
        # Everything relayed to us is a session message (or garbage: the table counts it).
        if not self._path.closing:
            self._path.receive(data, source)

    def _transmit(self, out: list[tuple[bytes, Address]]) -> None:
        relay = self.relay
        for data, address in out:
            before = relay.counters.dropped_no_relay
            relay.send(address, data)
            if relay.counters.dropped_no_relay != before:
                self._path.send_failures += 1  # no allocation right now: the coordinator retries

    def _address_moved(self, peer: PeerId, old: Address | None, new: Address | None) -> None:
        """A session authenticated ``peer`` at ``new`` (None: the peer is gone)."""
        if new is not None:
            self.relay.open_peer(new)  # kept open, and restored after a re-allocation
        if old is not None and old not in self._path.peers.values() and not self._dialling[old]:
            self.relay.close_peer(old)  # its permission lapses by itself (RFC 8656 §9)

    def _relay_changed(self, relayed: Address | None) -> None:
        if relayed is None:
            log.warning("TURN relay lost; allocating again")
        else:
            log.info("TURN relayed address %s", _text(relayed))
            # Each proven peer's path now runs through this allocation (perhaps on another
            # server): the consumer's path follows it, as after a roam. The sessions stay; the
            # peers see them arrive from the new relayed address and answer there.
            for peer, address in self._path.peers.items():
                self._path.events.offer(PeerConnected(peer, self._endpoint(address)))
        if self._on_relay is not None:
            self._on_relay(relayed)

    def _endpoint(self, address: Address) -> Endpoint:
        return RelayEndpoint(self._server_endpoint(), IpEndpoint(address[0], address[1]))

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
