"""The BLE transport: peers over BLE links (bluez/links.py), each proving its identity in the
same secure session as on UDP and TURN, behind the common ``Transport`` interface.

One ``SessionPath`` (node.transports.session_path) whose "address" is the ``BleLink`` a peer's
session runs on: the path fragments messages into session datagrams of ``UDP_PLAINTEXT`` and
seals them; ``_transmit`` puts each sealed datagram, behind its kind byte (bluez/proto/linkframes),
into the link's ``LinkPipe``, which cuts it into chunks of the link's ``max_chunk`` and writes them
in order. Chunks received go through the link's ``LinkReassembler``; whole SESSION datagrams go to
the path, which finds the session by its receiver index as on UDP.

The transport is the ``LinkHandler`` of the node's peripheral (inbound links) and connector
(outbound links, opened through ``dialer``, which the BLE service sets while BlueZ is there).
``connect(peer, BleEndpoint(address))`` opens a central link to ``address`` unless one is up,
then runs the handshake there: the peer proves ``peer``'s id or the connect fails PEER_MISMATCH.
With ``auto_handshake``, a central that hears its peer's HELLO runs the handshake with the id it
names (the handshake proves it), so every linked node becomes a peer. A link that closes ends
the sessions on it (PeerDisconnected NETWORK_DOWN), and the last link to close those through
relays too.

Nothing a link or a datagram does escapes: bad chunks are the reassembler's drops, bad datagrams
``malformed`` here, failed writes the pipe's counts; each writer task is the transport's own.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Self

from bluez.links import BleLink, BleLinkError, LinkFailed, LinkMisuse, LinkMisuseReason, LinkRole
from bluez.pipe import LinkPipe
from bluez.proto.fragments import ChunkLimits, ReassemblyPool
from bluez.proto.linkframes import LinkKind, decode_hello, encode, peer_prefix
from bluez.proto.mesh import MeshLimits
from bluez.relay import ANNOUNCE_INTERVAL, Announced, ForUs, MeshPeer, MeshRelay
from node.proto.datagram.fragments import UDP_PLAINTEXT
from node.proto.datagram.reassembly import ReassemblyLimits
from node.proto.identity import Identity
from node.proto.session.table_types import DEFAULT_TABLE_CONFIG, GoneReason
from node.proto.session.trust import PeerVerifier
from node.proto.vocabulary import (
    BleEndpoint,
    Capabilities,
    Endpoint,
    Frame,
    PeerId,
    TransportHealth,
    TransportKind,
    TransportReason,
    TransportState,
)
from node.transports.base import Transport, TransportError, TransportPeerError, TransportUsageError
from node.transports.session_path import OverSessionPath, PathSettings, SessionPath

log = logging.getLogger(__name__)

Dialer = Callable[[str], Awaitable[BleLink]]
Address = BleLink | MeshPeer  # a session's: the link to a neighbour, or a peer through relays


@dataclass(frozen=True, slots=True)
class BleSettings:
    max_links: int = 5  # ble.max_links: sessions at once (one per link)
    max_message: int = 1 << 20  # transport.max_message_bytes
    connect_timeout: float = 30.0
    health_check_interval: float = 10.0
    event_queue: int = 4096
    link_queue_bytes: int = 2 << 20  # chunk bytes waiting for the radio, per link
    auto_handshake: bool = False  # a central runs the handshake with the id its peer's HELLO names
    chunks: ChunkLimits = field(default_factory=ChunkLimits)
    reassembly: ReassemblyLimits = field(default_factory=ReassemblyLimits)
    mesh: MeshLimits = field(default_factory=MeshLimits)
    announce_interval: float = ANNOUNCE_INTERVAL

    def path(self) -> PathSettings:
        # A sealed session datagram of UDP's size (1200 bytes) plus our kind byte, or a mesh
        # header, fits MAX_DATAGRAM (2048) of a link datagram.
        return PathSettings(
            max_message=self.max_message,
            plaintext=UDP_PLAINTEXT,
            connect_timeout=self.connect_timeout,
            health_check_interval=self.health_check_interval,
            event_queue=self.event_queue,
            table=replace(DEFAULT_TABLE_CONFIG, max_sessions=max(2, self.max_links * 2)),
            reassembly=self.reassembly,
        )


class BleDrop(enum.Enum):
    """Why a whole link datagram was dropped (chunk-level drops are the reassembler's)."""

    UNKNOWN_KIND = "unknown kind byte"
    BAD_HELLO = "a HELLO that names no peer id"
    NO_LINK = "a session datagram for a link that closed"


class BleTransport(OverSessionPath[Address], Transport):
    kind = TransportKind.BLE

    def __init__(
        self,
        identity: Identity,
        verifier: PeerVerifier,
        *,
        credential: bytes = b"",
        settings: BleSettings | None = None,
    ) -> None:
        self._settings = settings = settings or BleSettings()
        self.identity = identity
        self.capabilities = Capabilities(settings.max_message, reliable=False, ordered=False)
        self._path: SessionPath[Address] = SessionPath(
            identity,
            verifier,
            settings.path(),
            self._transmit,
            self._endpoint,
            name="BLE",
            credential=credential,
        )
        self.pool = ReassemblyPool(settings.chunks)
        self.relay = MeshRelay(
            identity.peer_id,
            self._put_mesh,
            self._path.now,
            limits=settings.mesh,
            announce_interval=settings.announce_interval,
        )
        self._pipes: dict[BleLink, LinkPipe] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._state = TransportState.STOPPED
        self.dialer: Dialer | None = None  # set by the BLE service while BlueZ is there
        self.drops: Counter[BleDrop] = Counter()
        self._running: set[asyncio.Task[None]] = set()
        self.links_opened = self.links_lost = self.handler_errors = 0
        self._closed_counters = Counter[str]()

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._state = TransportState.STARTING
        self._path.start(asyncio.get_running_loop())
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._spawn(self._relay(), "ble-mesh-relay")
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
            for pipe in list(self._pipes.values()):
                pipe.close()  # its writer ends
            for task in self._running:
                task.cancel()
            assert self._tasks is not None
            await self._tasks.__aexit__(exc_type, exc, tb)
        finally:
            self._path.close()
            self._pipes.clear()
            self._state = TransportState.STOPPED

    # -- Transport ------------------------------------------------------------------------------

    async def connect(self, peer: PeerId, endpoint: Endpoint) -> None:
        if self._state is not TransportState.READY or self._path.closing:
            raise TransportUsageError(TransportReason.CLOSED, "the BLE transport is not running")
        if not isinstance(endpoint, BleEndpoint):
            raise TransportUsageError(TransportReason.UNSUPPORTED_ENDPOINT, f"{endpoint} is no BLE address")
        if peer in self._path.peers:
            return
        link = await self.open_link(endpoint.address)
        await self._path.connect(peer, link, f"{endpoint.address} over BLE")

    async def open_link(self, address: str) -> BleLink:
        """The open link to ``address`` (either role), or a new central link to it."""
        for link in self._pipes:
            if link.address == address and not link.closed.is_set():
                return link
        dialer = self.dialer
        if dialer is None:
            raise TransportUsageError(
                TransportReason.CLOSED, "BLE is unavailable: no adapter to connect from"
            )
        try:
            return await dialer(address)
        except LinkMisuse as error:
            reason = (
                TransportReason.TOO_MANY_CONNECTIONS
                if error.reason is LinkMisuseReason.SLOTS_FULL
                else TransportReason.CONNECT_FAILED
            )
            raise TransportUsageError(reason, f"no BLE link to {address}: {error}") from error
        except LinkFailed as error:
            raise TransportPeerError(
                TransportReason.CONNECT_FAILED, f"no BLE link to {address}: {error}"
            ) from error

    async def send(self, peer: PeerId, frame: Frame) -> None:
        self.check_size(frame)
        self._path.send(peer, frame)

    def health(self) -> TransportHealth:
        malformed = sum(self.drops.values()) + sum(self.pool.stats().drops.values()) + self.relay.malformed()
        return self._path.health(self.kind, self._state, len(self._path.peers), malformed)

    def peers(self) -> dict[PeerId, Address]:
        """Every peer with a session: at its link (a neighbour) or at a MeshPeer (through relays)."""
        return dict(self._path.peers)

    def adapter_of(self, peer: PeerId) -> str | None:
        """The adapter ``peer``'s traffic leaves on (through relays: the first hop's link's)."""
        at = self._path.peers.get(peer)
        link = self.relay.first_hop(at) if isinstance(at, MeshPeer) else at
        return None if link is None else link.adapter

    def mesh_hops(self) -> dict[PeerId, int]:
        """Peers with a session through relays, with their radio hop counts now (the route's)."""
        hops = self.relay.hops()
        return {peer: hops.get(peer, 0) for peer, at in self._path.peers.items() if isinstance(at, MeshPeer)}

    @property
    def links(self) -> Mapping[BleLink, LinkPipe]:
        return dict(self._pipes)

    def counters(self) -> Counter[str]:
        """Every pipe's counters summed, closed links' included."""
        total = Counter(self._closed_counters)
        for pipe in self._pipes.values():
            total.update(_pipe_counts(pipe))
        return total

    # -- LinkHandler ----------------------------------------------------------------------------

    def link_opened(self, link: BleLink) -> None:
        if self._tasks is None or self._path.closing:
            return
        pipe = LinkPipe(link, self.pool.open_link(), self._settings.link_queue_bytes)
        self._pipes[link] = pipe
        self.links_opened += 1
        self.relay.add_link(link)
        self._spawn(self._write(pipe), f"ble-writer-{link.address}")
        log.info("ble: %s link to %s on %s (ATT MTU %d)", link.role, link.address, link.adapter, link.mtu)
        if link.role is LinkRole.OUTBOUND:
            pipe.put(encode(LinkKind.HELLO, self.identity.peer_id.encode("ascii")))

    def chunk_received(self, link: BleLink, data: bytes) -> None:
        pipe = self._pipes.get(link)
        if pipe is None:
            self.drops[BleDrop.NO_LINK] += 1
            return
        datagram = pipe.reassembler.receive(data, self._path.now())
        if datagram is None:
            return
        kind, body = datagram[0], datagram[1:]
        if kind == LinkKind.SESSION and body:
            if not self._path.closing:
                self._path.receive(body, link)
        elif kind == LinkKind.HELLO:
            self._hello(pipe, body)
        elif kind == LinkKind.MESH:
            self._mesh(link, body)
        else:
            self.drops[BleDrop.UNKNOWN_KIND] += 1

    def link_closed(self, link: BleLink, error: BleLinkError | None) -> None:
        pipe = self._pipes.pop(link, None)
        if pipe is None:
            return
        pipe.close()
        self.relay.remove_link(link)
        self._closed_counters.update(_pipe_counts(pipe))
        if error is not None:
            self.links_lost += 1
        log.info("ble: link to %s on %s closed: %s", link.address, link.adapter, error or "closed by us")
        # The sessions on this link end; so do those through relays once no link is left (their
        # frames cannot leave the node). With other links a peer through relays stays: frames
        # without a route are flooded on every link, and its announces will show a new route.
        isolated = not self._pipes

        def gone(at: Address) -> bool:
            return at is link or (isolated and isinstance(at, MeshPeer))

        for peer, at in list(self._path.peers.items()):
            if gone(at):
                self._path.disconnect(peer, GoneReason.NETWORK_DOWN)
        # A handshake under way there fails now, not at the end of its retransmissions (~26 s).
        self._path.abandon(gone)

    # -- plumbing -------------------------------------------------------------------------------

    def _hello(self, pipe: LinkPipe, body: bytes) -> None:
        peer = decode_hello(body)
        if peer is None or peer == self.identity.peer_id:
            self.drops[BleDrop.BAD_HELLO] += 1
            return
        first = pipe.peer_hint is None
        pipe.peer_hint = peer
        link = pipe.link
        if link.role is LinkRole.INBOUND and first:
            pipe.put(encode(LinkKind.HELLO, self.identity.peer_id.encode("ascii")))
        if first:
            # Both ends can now be heard on this link (the peripheral has answered): a node the
            # other end reaches learns of us through it (bluez/relay.py).
            self.relay.announce()
        if (
            link.role is LinkRole.OUTBOUND
            and self._settings.auto_handshake
            and first
            and self._tasks is not None
            and peer not in self._path.peers
        ):
            self._spawn(self._handshake(peer, link), f"ble-handshake-{link.address}")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        assert self._tasks is not None
        task = self._tasks.create_task(coro, name=name)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _handshake(self, peer: PeerId, at: Address) -> None:
        where = f"{at.address} over BLE" if isinstance(at, BleLink) else f"{at.prefix.hex()} over the mesh"
        try:
            await self._path.connect(peer, at, where)
        except TransportError as error:
            log.warning("ble: handshake with %s at %s failed: %s", peer, where, error)

    def _mesh(self, link: BleLink, body: bytes) -> None:
        # What the frame was not (malformed, a duplicate, TTL spent, a bad announce) the relay
        # and its router count by reason (status ble.relay mesh_dropped_*).
        got = self.relay.receive(link, body)
        if isinstance(got, ForUs):
            if not self._path.closing:
                self._path.receive(got.payload, got.source)
        elif isinstance(got, Announced):
            self._announced(got)

    def _announced(self, got: Announced) -> None:
        """A node ``got.hops`` away announced itself: the smaller prefix starts a session with it
        through the relays, unless it is a neighbour (its link's handshake makes it a peer)."""
        peer = got.peer
        if got.hops < 2 or peer in self._path.peers or not self._settings.auto_handshake:
            return
        if any(pipe.peer_hint == peer for pipe in self._pipes.values()):
            return
        prefix = peer_prefix(peer)
        if self.relay.prefix > prefix or self._tasks is None or self._path.closing:
            return
        log.info("ble: %s announced %d hops away: handshake through the mesh", peer, got.hops)
        self._spawn(self._handshake(peer, MeshPeer(prefix)), f"ble-mesh-handshake-{prefix.hex()}")

    async def _relay(self) -> None:
        try:
            await self.relay.run()
        except Exception:
            # A bug in the relay must not take the transport's task group (and every link) down.
            self.handler_errors += 1
            log.exception("ble: the mesh relay failed")

    def _put_mesh(self, link: BleLink, frame: bytes) -> bool:
        pipe = self._pipes.get(link)
        return pipe is not None and pipe.put(encode(LinkKind.MESH, frame))

    def _endpoint(self, at: Address) -> Endpoint:
        """A neighbour's link address; for a peer through relays, the first hop's (the link its
        traffic leaves on), or its prefix while no route is known."""
        if isinstance(at, BleLink):
            return BleEndpoint(at.address)
        first = self.relay.first_hop(at)
        return BleEndpoint(first.address if first is not None else f"mesh:{at.prefix.hex()}")

    async def _write(self, pipe: LinkPipe) -> None:
        try:
            await pipe.run()
        except Exception:
            # A bug below us must not take the transport's task group (and every link) down.
            self.handler_errors += 1
            log.exception("ble: the writer of the link to %s failed", pipe.link.address)

    def _transmit(self, out: list[tuple[bytes, Address]]) -> None:
        pipes = self._pipes
        for data, at in out:
            if isinstance(at, MeshPeer):
                sent = self.relay.send(at, data)
            else:
                pipe = pipes.get(at)
                sent = pipe is not None and pipe.put(encode(LinkKind.SESSION, data))
            if not sent:
                self._path.send_failures += 1


def _pipe_counts(pipe: LinkPipe) -> Counter[str]:
    c = pipe.counters
    return Counter(
        datagrams_sent=c.datagrams_sent,
        chunks_sent=c.chunks_sent,
        chunk_bytes_sent=c.chunk_bytes_sent,
        queue_full=c.queue_full,
        write_failures=c.write_failures,
    )
