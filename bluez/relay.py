"""The BLE transport's mesh relay: sessions with peers that are not direct BLE neighbours.

The relay core is ``MeshRouter`` (bluez/proto/mesh.py: TTL, duplicate cache, relay jitter, routes
with hop counts); this is its asyncio side for one transport. A session with a non-neighbour has
the address ``MeshPeer(prefix)``: its sealed datagrams leave as unicast mesh frames to that prefix
(kind MESH on the link, bluez/proto/linkframes.py), on the route's first link or, while no route
is known, on every link. A relay never opens what it forwards: it sees only the mesh header and
the session's sealed bytes, and the session proves the peer end to end.

Routes are learned from frames (the router's rule). To be found at all, each node floods an
ANNOUNCE, a broadcast frame whose payload is its full peer id, when a link of its own is set up
(its first HELLO), every ``announce_interval`` (well inside the router's route age), and once
when it hears a node it had no route to (so the two ends of a new path learn each other even
when only one link came up). An announce whose peer id does not match its source prefix is
dropped and counted. The node with the smaller prefix starts the handshake (the transport),
as for direct links.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from bluez.links import BleLink
from bluez.proto.errors import MeshDrop
from bluez.proto.linkframes import decode_hello, peer_prefix
from bluez.proto.mesh import MeshLimits, MeshRouter
from node.proto.vocabulary import PeerId

log = logging.getLogger(__name__)

ANNOUNCE_INTERVAL = 20.0  # a third of MeshLimits.route_age: two announces may be lost


@dataclass(frozen=True, slots=True)
class MeshPeer:
    """The address of a session whose peer is reached through relays (its prefix)."""

    prefix: bytes


@dataclass(frozen=True, slots=True)
class Announced:
    """An ANNOUNCE delivered: ``peer`` is ``hops`` radio hops away; ``new`` when it had no route."""

    peer: PeerId
    hops: int
    new: bool


@dataclass(frozen=True, slots=True)
class ForUs:
    """A unicast frame for us: a sealed session datagram from ``source``."""

    source: MeshPeer
    payload: bytes


_MALFORMED = (MeshDrop.TRUNCATED, MeshDrop.RESERVED_BITS, MeshDrop.BAD_TTL, MeshDrop.EMPTY)

Put = Callable[[BleLink, bytes], bool]  # a mesh frame onto a link; False when it cannot go


class MeshRelay:
    def __init__(
        self,
        peer_id: PeerId,
        put: Put,
        clock: Callable[[], float],
        *,
        limits: MeshLimits | None = None,
        announce_interval: float = ANNOUNCE_INTERVAL,
    ) -> None:
        self.peer_id = peer_id
        self.prefix = peer_prefix(peer_id)
        self.router: MeshRouter[BleLink] = MeshRouter(
            self.prefix, rng=random.SystemRandom(), limits=limits or MeshLimits()
        )
        self._put = put
        self._clock = clock
        self._interval = announce_interval
        self._ids: OrderedDict[bytes, PeerId] = OrderedDict()  # prefix -> peer id announced, newest last
        self._wake = asyncio.Event()
        self.bad_announces = self.unsent = 0

    # -- links ----------------------------------------------------------------------------------

    def add_link(self, link: BleLink) -> None:
        self.router.add_link(link)

    def remove_link(self, link: BleLink) -> None:
        self.router.remove_link(link)

    # -- sending --------------------------------------------------------------------------------

    def announce(self) -> None:
        self._send(self.router.originate(self.peer_id.encode("ascii"), None, self._clock()))

    def send(self, to: MeshPeer, datagram: bytes) -> bool:
        """A sealed session datagram to ``to``; False when no link took it."""
        return self._send(self.router.originate(datagram, to.prefix, self._clock()))

    def _send(self, out: list[tuple[BleLink, bytes]]) -> bool:
        sent = False
        for link, frame in out:
            if self._put(link, frame):
                sent = True
            else:
                self.unsent += 1
        return sent

    # -- receiving ------------------------------------------------------------------------------

    def receive(self, link: BleLink, data: bytes) -> Announced | ForUs | None:
        """One mesh frame from ``link``: what it holds for us, if anything (relayed copies are
        queued by the router and sent by ``run``)."""
        now = self._clock()
        router = self.router
        source = data[9:17] if len(data) >= 17 else b""
        known = router.route(source, now) is not None
        outcome = router.receive(data, link, now)
        if outcome.relayed:
            self._wake.set()
        delivered = outcome.delivered
        if delivered is None:
            return None
        if not delivered.broadcast:
            return ForUs(MeshPeer(delivered.source), delivered.payload)
        peer = decode_hello(delivered.payload)
        if peer is None or peer_prefix(peer) != delivered.source:
            self.bad_announces += 1
            return None
        self._ids[delivered.source] = peer
        self._ids.move_to_end(delivered.source)
        while len(self._ids) > router.limits.max_routes:
            self._ids.popitem(last=False)
        if not known:
            self.announce()  # it may not know us: a path between us just came up
        return Announced(peer, delivered.hops, not known)

    def malformed(self) -> int:
        """Frames dropped for what they held (not duplicates, spent TTLs or missing links)."""
        drops = self.router.stats().drops
        return self.bad_announces + sum(drops.get(reason, 0) for reason in _MALFORMED)

    # -- routes ---------------------------------------------------------------------------------

    def first_hop(self, to: MeshPeer) -> BleLink | None:
        route = self.router.route(to.prefix, self._clock())
        return None if route is None else route.link

    def hops(self) -> dict[PeerId, int]:
        """Peers known by their announce and reachable now, with their hop counts."""
        routes = self.router.routes(self._clock())
        return {peer: routes[prefix].hops for prefix, peer in self._ids.items() if prefix in routes}

    # -- the relay task -------------------------------------------------------------------------

    async def run(self) -> None:
        """Send relayed copies when their delay runs out, and announce every interval."""
        loop = asyncio.get_running_loop()
        next_announce = loop.time() + self._interval
        while True:
            self._wake.clear()
            for link, frame in self.router.transmit(self._clock()):
                if not self._put(link, frame):
                    self.unsent += 1
            now = loop.time()
            if now >= next_announce:
                self.announce()
                next_announce = now + self._interval
            due = self.router.get_timer()
            wait = next_announce - now
            if due is not None:
                wait = min(wait, max(0.0, due - self._clock()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
