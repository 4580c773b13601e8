"""The BLE mesh relay: frames for peers out of radio range, forwarded hop by hop.

Every datagram on a BLE link is a mesh frame: this header around a secure-session datagram
(big-endian)::

    head    u8   bit 7 BROADCAST (no destination field); bit 6 reserved, zero;
                 bits 3-5 TTL (relays still allowed); bits 0-2 hop count (relays so far)
    id      u64  message id, random per frame at its origin: the duplicate cache's key
    source  8 B  the origin's peer-id prefix
    dest    8 B  the destination's peer-id prefix; absent when BROADCAST
    payload      the session datagram (authenticated end to end by the session, not here)

25 bytes unicast, 17 broadcast. The prefixes are routing hints only, never identities: the
session handshake inside proves who the peer is (DESIGN.md: a peer id is never truncated below
128 bits as a name), so a collision or a lie misroutes at worst, and the session drops it. A
relay reads and rewrites only the head byte.

Relay rules (BitChat, DESIGN.md "BLE": TTL 7, duplicate cache of 1000 ids for 5 min, a random
relay delay of 10-220 ms so neighbours that heard the same frame do not all transmit at once):
a frame for us is delivered and not relayed; a broadcast is delivered and relayed; any other is
relayed while its TTL is above 0, on the link of a known route to its destination (unless that
is where it came from), else on every other link. Relayed copies carry TTL - 1 and hops + 1 and
leave after the delay (``transmit(now)`` / ``get_timer()``). Frames from other nodes teach the
route table: source prefix -> (link it came on, hops + 1), keeping the fewest hops, expiring
after ``route_age`` without a frame; the coordinator reads it to see a non-neighbour as
reachable over BLE with the hop count as the cost. Every table is bounded.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter, OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from bluez.proto.errors import BleProtoMisuse, BleProtoUsageError, MeshDrop, MeshFrameError

__all__ = [
    "BROADCAST_HEADER",
    "MAX_TTL",
    "PREFIX_SIZE",
    "UNICAST_HEADER",
    "Delivered",
    "MeshFrame",
    "MeshLimits",
    "MeshRouter",
    "MeshStats",
    "Outcome",
    "Route",
    "decode_frame",
    "encode_frame",
]

L = TypeVar("L", bound=Hashable)

PREFIX_SIZE: Final = 8
MAX_TTL: Final = 7  # 3 bits; BitChat's TTL
BROADCAST_HEADER: Final = 1 + 8 + PREFIX_SIZE
UNICAST_HEADER: Final = BROADCAST_HEADER + PREFIX_SIZE
_BROADCAST: Final = 0x80
_RESERVED: Final = 0x40


@dataclass(frozen=True, slots=True)
class MeshFrame:
    message_id: int
    source: bytes
    destination: bytes | None  # None: broadcast
    ttl: int
    hops: int
    payload: bytes


def encode_frame(frame: MeshFrame) -> bytes:
    for prefix in (frame.source, frame.destination):
        if prefix is not None and len(prefix) != PREFIX_SIZE:
            raise BleProtoUsageError(BleProtoMisuse.BAD_PREFIX, f"{len(prefix)} bytes, not {PREFIX_SIZE}")
    if frame.ttl < 0 or frame.hops < 0 or frame.ttl + frame.hops > MAX_TTL:
        raise BleProtoUsageError(BleProtoMisuse.BAD_TTL, f"TTL {frame.ttl} hops {frame.hops}, max {MAX_TTL}")
    head = (_BROADCAST if frame.destination is None else 0) | frame.ttl << 3 | frame.hops
    parts = [bytes((head,)), frame.message_id.to_bytes(8, "big"), frame.source]
    if frame.destination is not None:
        parts.append(frame.destination)
    parts.append(frame.payload)
    return b"".join(parts)


def decode_frame(data: bytes) -> MeshFrame:
    """Raises MeshFrameError when ``data`` is not a well-formed frame."""
    if not data:
        raise MeshFrameError(MeshDrop.TRUNCATED, "0 bytes")
    head = data[0]
    broadcast = bool(head & _BROADCAST)
    size = BROADCAST_HEADER if broadcast else UNICAST_HEADER
    if len(data) < size:
        raise MeshFrameError(MeshDrop.TRUNCATED, f"{len(data)} bytes, the header alone is {size}")
    if head & _RESERVED:
        raise MeshFrameError(MeshDrop.RESERVED_BITS, f"head {head:#04x}")
    ttl, hops = head >> 3 & 7, head & 7
    if ttl + hops > MAX_TTL:
        raise MeshFrameError(MeshDrop.BAD_TTL, f"TTL {ttl} + hops {hops} > {MAX_TTL}")
    if len(data) == size:
        raise MeshFrameError(MeshDrop.EMPTY, f"{size} bytes of header, no payload")
    return MeshFrame(
        message_id=int.from_bytes(data[1:9], "big"),
        source=data[9:BROADCAST_HEADER],
        destination=None if broadcast else data[BROADCAST_HEADER:UNICAST_HEADER],
        ttl=ttl,
        hops=hops,
        payload=data[size:],
    )


@dataclass(frozen=True, slots=True)
class MeshLimits:
    ttl: int = MAX_TTL  # given to the frames we originate
    seen_entries: int = 1000
    seen_age: float = 300.0
    jitter_min: float = 0.010
    jitter_max: float = 0.220
    route_age: float = 60.0  # a route not refreshed by a frame for this long is forgotten
    max_routes: int = 1024
    max_pending: int = 256  # relayed copies waiting for their delay

    def __post_init__(self) -> None:
        ok = (
            0 <= self.ttl <= MAX_TTL
            and self.seen_entries >= 1
            and self.seen_age > 0
            and 0 <= self.jitter_min <= self.jitter_max
            and self.route_age > 0
            and self.max_routes >= 1
            and self.max_pending >= 1
        )
        if not ok:
            raise BleProtoUsageError(BleProtoMisuse.BAD_LIMITS, f"mesh limits out of range: {self}")


@dataclass(frozen=True, slots=True)
class Route(Generic[L]):
    link: L
    hops: int  # radio hops to the peer: 1 for a neighbour
    refreshed: float


@dataclass(frozen=True, slots=True)
class Delivered:
    source: bytes
    payload: bytes
    hops: int  # radio hops it came over
    broadcast: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ``receive`` did with one frame: delivered it, queued relayed copies, or dropped it
    (``dropped`` set only when the frame was neither delivered nor relayed)."""

    delivered: Delivered | None = None
    relayed: int = 0
    dropped: MeshDrop | None = None


@dataclass(frozen=True, slots=True)
class MeshStats:
    links: int
    routes: int
    seen: int
    pending: int
    originated: int
    delivered: int
    relayed: int  # copies sent after their delay
    routes_evicted: int
    drops: Mapping[MeshDrop, int]


class MeshRouter(Generic[L]):
    """The relay core of one node, over links named by any hashable key; see the module doc."""

    def __init__(
        self,
        own_prefix: bytes,
        links: Iterable[L] = (),
        *,
        rng: random.Random,
        limits: MeshLimits = MeshLimits(),
    ) -> None:
        if len(own_prefix) != PREFIX_SIZE:
            raise BleProtoUsageError(BleProtoMisuse.BAD_PREFIX, f"{len(own_prefix)} bytes, not {PREFIX_SIZE}")
        self.own = own_prefix
        self.limits = limits
        self._rng = rng
        self._links: dict[L, None] = dict.fromkeys(links)  # ordered, for a stable flood order
        self._seen: OrderedDict[int, float] = OrderedDict()  # message id -> first seen, oldest first
        self._routes: OrderedDict[bytes, Route[L]] = OrderedDict()  # stalest first
        self._pending: list[tuple[float, int, L, bytes]] = []  # heap: due, tie-break, link, frame
        self._tie = 0
        self._originated = self._delivered = self._relayed = self._routes_evicted = 0
        self._drops: Counter[MeshDrop] = Counter()

    # -- links ----------------------------------------------------------------------------------

    def add_link(self, link: L) -> None:
        self._links[link] = None

    def remove_link(self, link: L) -> None:
        """The link is gone: its routes are forgotten and relays queued for it dropped."""
        self._links.pop(link, None)
        for prefix in [p for p, route in self._routes.items() if route.link == link]:
            del self._routes[prefix]
        kept = [entry for entry in self._pending if entry[2] != link]
        self._drops[MeshDrop.LINK_GONE] += len(self._pending) - len(kept)
        heapq.heapify(kept)
        self._pending = kept

    # -- sending --------------------------------------------------------------------------------

    def originate(self, payload: bytes, destination: bytes | None, now: float) -> list[tuple[L, bytes]]:
        """A frame of ours around ``payload`` (``destination`` None: broadcast), to send now on
        the links returned: the route's link when the destination has one, else every link."""
        frame = MeshFrame(self._rng.getrandbits(64), self.own, destination, self.limits.ttl, 0, payload)
        data = encode_frame(frame)
        self._remember(frame.message_id, now)
        self._originated += 1
        route = self.route(destination, now) if destination is not None else None
        targets = [route.link] if route is not None else list(self._links)
        return [(link, data) for link in targets]

    def transmit(self, now: float) -> list[tuple[L, bytes]]:
        """Relayed copies whose delay has run out, to send now."""
        out = []
        pending = self._pending
        while pending and pending[0][0] <= now:
            _, _, link, data = heapq.heappop(pending)
            out.append((link, data))
        self._relayed += len(out)
        return out

    def get_timer(self) -> float | None:
        """When the next relayed copy is due, or None."""
        return self._pending[0][0] if self._pending else None

    # -- receiving ------------------------------------------------------------------------------

    def receive(self, data: bytes, from_link: L, now: float) -> Outcome:
        """One frame from ``from_link``. Never raises for what the frame holds."""
        if from_link not in self._links:
            raise BleProtoUsageError(BleProtoMisuse.UNKNOWN_LINK, f"frame from {from_link!r}")
        try:
            frame = decode_frame(data)
        except MeshFrameError as error:
            return self._dropped(error.reason)
        if frame.source == self.own:
            return self._dropped(MeshDrop.OWN_FRAME)
        self._learn(frame.source, from_link, frame.hops + 1, now)
        if self._seen_before(frame.message_id, now):
            return self._dropped(MeshDrop.SEEN)
        delivered = None
        if frame.destination is None or frame.destination == self.own:
            self._delivered += 1
            delivered = Delivered(frame.source, frame.payload, frame.hops + 1, frame.destination is None)
            if frame.destination is not None:
                return Outcome(delivered=delivered)
        if not frame.ttl:
            return Outcome(delivered=delivered) if delivered else self._dropped(MeshDrop.TTL_EXPIRED)
        route = self.route(frame.destination, now) if frame.destination is not None else None
        if route is not None and route.link != from_link:
            targets = [route.link]
        else:
            targets = [link for link in self._links if link != from_link]
        if not targets:
            return Outcome(delivered=delivered) if delivered else self._dropped(MeshDrop.NO_LINK)
        relayed = bytes(((data[0] & 0xC0) | (frame.ttl - 1) << 3 | (frame.hops + 1),)) + data[1:]
        due = now + self._rng.uniform(self.limits.jitter_min, self.limits.jitter_max)
        queued = 0
        for link in targets:
            if len(self._pending) >= self.limits.max_pending:
                self._drops[MeshDrop.QUEUE_FULL] += 1
                continue
            self._tie += 1
            heapq.heappush(self._pending, (due, self._tie, link, relayed))
            queued += 1
        if not queued and delivered is None:
            return Outcome(dropped=MeshDrop.QUEUE_FULL)
        return Outcome(delivered=delivered, relayed=queued)

    def _dropped(self, reason: MeshDrop) -> Outcome:
        self._drops[reason] += 1
        return Outcome(dropped=reason)

    def _seen_before(self, message_id: int, now: float) -> bool:
        seen = self._seen
        limit = now - self.limits.seen_age
        while seen and next(iter(seen.values())) <= limit:
            seen.popitem(last=False)
        if message_id in seen:
            return True
        self._remember(message_id, now)
        return False

    def _remember(self, message_id: int, now: float) -> None:
        self._seen[message_id] = now
        if len(self._seen) > self.limits.seen_entries:
            self._seen.popitem(last=False)

    # -- routes ---------------------------------------------------------------------------------

    def _learn(self, prefix: bytes, link: L, hops: int, now: float) -> None:
        routes = self._routes
        old = routes.get(prefix)
        if old is not None and old.link != link and old.hops < hops and self._fresh(old, now):
            return  # a shorter route still in use
        routes[prefix] = Route(link, hops, now)
        routes.move_to_end(prefix)
        if len(routes) > self.limits.max_routes:
            routes.popitem(last=False)
            self._routes_evicted += 1

    def _fresh(self, route: Route[L], now: float) -> bool:
        return route.refreshed + self.limits.route_age > now

    def route(self, prefix: bytes, now: float) -> Route[L] | None:
        """How ``prefix`` is reached over this node's links, if a frame from it came lately."""
        route = self._routes.get(prefix)
        return route if route is not None and self._fresh(route, now) else None

    def routes(self, now: float) -> dict[bytes, Route[L]]:
        """Every peer prefix reachable now (expired routes are forgotten here)."""
        for prefix in [p for p, route in self._routes.items() if not self._fresh(route, now)]:
            del self._routes[prefix]
        return dict(self._routes)

    def stats(self) -> MeshStats:
        return MeshStats(
            links=len(self._links),
            routes=len(self._routes),
            seen=len(self._seen),
            pending=len(self._pending),
            originated=self._originated,
            delivered=self._delivered,
            relayed=self._relayed,
            routes_evicted=self._routes_evicted,
            drops=dict(self._drops),
        )
