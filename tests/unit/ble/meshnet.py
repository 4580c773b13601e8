"""An in-memory BLE mesh for the unit tier: MeshRouters joined by links in virtual time.

Each link is a pair of node names; a frame sent on it reaches the other end through the real
fragmenter and a per-link reassembler at ``mtu`` (so the link carries what a GATT link would),
after ``latency`` seconds. ``run(until)`` steps virtual time from event to event."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from bluez.proto.fragments import Fragmenter, ReassemblyPool
from bluez.proto.mesh import Delivered, MeshRouter, Outcome

Link = frozenset[str]


@dataclass
class Node:
    name: str
    router: MeshRouter[Link]
    pool: ReassemblyPool = field(default_factory=ReassemblyPool)
    inbox: list[tuple[float, Delivered]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)


def prefix(name: str) -> bytes:
    return name.encode().ljust(8, b"\0")


class MeshNet:
    def __init__(self, edges: list[tuple[str, str]], *, seed: int = 0, mtu: int = 23, latency: float = 0.03):
        self.mtu = mtu
        self.latency = latency
        self.now = 0.0
        names = sorted({n for edge in edges for n in edge})
        rng = random.Random(seed)
        self.links = [frozenset(edge) for edge in edges]
        self.nodes = {
            n: Node(
                n,
                MeshRouter(prefix(n), [lk for lk in self.links if n in lk], rng=random.Random(rng.random())),
            )
            for n in names
        }
        self._fragmenters = {(lk, n): Fragmenter() for lk in self.links for n in lk}
        self._reassemblers = {(lk, n): self.nodes[n].pool.open_link() for lk in self.links for n in lk}
        self._events: list[tuple[float, int, str, Link, bytes]] = []  # when, tie, receiver, link, chunk
        self._tie = 0
        self.sent: list[tuple[float, str, str]] = []  # when, from, to: every frame put on a link

    def send(self, sender: str, payload: bytes, to: str | None) -> None:
        node = self.nodes[sender]
        self._put(sender, node.router.originate(payload, None if to is None else prefix(to), self.now))

    def _put(self, sender: str, frames: list[tuple[Link, bytes]]) -> None:
        for link, data in frames:
            (receiver,) = link - {sender}
            self.sent.append((self.now, sender, receiver))
            for chunk in self._fragmenters[(link, sender)].fragment(data, self.mtu):
                self._tie += 1
                heapq.heappush(self._events, (self.now + self.latency, self._tie, receiver, link, chunk))

    def run(self, until: float) -> None:
        while True:
            timers = [(t, n) for n, node in self.nodes.items() if (t := node.router.get_timer()) is not None]
            next_timer = min(timers) if timers else None
            next_event = self._events[0][0] if self._events else None
            candidates = [t for t in (next_event, next_timer and next_timer[0]) if t is not None]
            if not candidates or min(candidates) > until:
                self.now = until
                return
            self.now = min(candidates)
            if next_event is not None and next_event == self.now:
                _, _, receiver, link, chunk = heapq.heappop(self._events)
                datagram = self._reassemblers[(link, receiver)].receive(chunk, self.now)
                if datagram is not None:
                    node = self.nodes[receiver]
                    outcome = node.router.receive(datagram, link, self.now)
                    node.outcomes.append(outcome)
                    if outcome.delivered is not None:
                        node.inbox.append((self.now, outcome.delivered))
            else:
                for name in self.nodes:
                    self._put(name, self.nodes[name].router.transmit(self.now))
