"""Session tables wired through an in-memory datagram network in virtual time.

Each node is one ``SessionTable`` behind a public address that the test can change (a NAT
rebinding: datagrams to the old address are lost, the node's datagrams come from the new one). A
``tap`` sees every datagram a node sends and says what the wire does with it: deliver it after
extra delays (reorder), twice (duplicate) or not at all (drop). ``inject`` puts any bytes on the
wire from any address (a forger). Addresses are loopback strings; no socket is opened.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from node.proto.identity import Identity
from node.proto.session.table import AdmitInit, SessionTable
from node.proto.session.table_types import (
    PeerDatagram,
    TableConfig,
    TableEvent,
)
from tests.support.session_verifiers import DevVerifier
from tests.unit.session_harness import make_identity, seeded

Addr = tuple[str, int]
# (sender name, datagram) -> the extra delays to deliver it after ([]: lost, [0, 0]: duplicated)
Tap = Callable[[str, bytes], list[float]]


def addr(port: int) -> Addr:
    return ("127.0.0.1", port)


@dataclass
class Node:
    name: str
    identity: Identity
    table: SessionTable[Addr]
    events: list[TableEvent[Addr]] = field(default_factory=list)

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    def of_type(self, kind: type) -> list[TableEvent[Addr]]:
        return [e for e in self.events if isinstance(e, kind)]

    def received(self) -> list[bytes]:
        return [e.payload for e in self.events if isinstance(e, PeerDatagram)]


@dataclass
class Net:
    now: float = 0.0
    latency: float = 0.005
    tap: Tap | None = None
    nodes: dict[str, Node] = field(default_factory=dict)
    public: dict[str, Addr] = field(default_factory=dict)
    # a second NAT mapping of a node: (sender name, datagram) -> the source address it leaves
    # from instead of its public one (None: the public one); ``aliases`` route back to the node
    source: Callable[[str, bytes], Addr | None] | None = None
    aliases: dict[Addr, str] = field(default_factory=dict)
    # every datagram a node put on the wire: (time, sender name, its public address, destination, bytes)
    wire: list[tuple[float, str, Addr, Addr, bytes]] = field(default_factory=list)
    _queue: list[tuple[float, int, Addr, Addr, bytes]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def add(
        self,
        name: str,
        *,
        seed: int,
        port: int,
        config: TableConfig | None = None,
        admit_init: AdmitInit[Addr] | None = None,
        identity: Identity | None = None,
        random_bytes: Callable[[int], bytes] | None = None,
    ) -> Node:
        identity = identity or make_identity(seed)
        table: SessionTable[Addr] = SessionTable(
            identity,
            DevVerifier(),
            config=config or TableConfig(),
            random_bytes=random_bytes or seeded(seed * 7919),
            admit_init=admit_init,
        )
        node = Node(name, identity, table)
        self.nodes[name] = node
        self.public[name] = addr(port)
        return node

    def rebind(self, name: str, port: int) -> None:
        """The node's NAT maps it to a new public port."""
        self.public[name] = addr(port)

    def inject(self, src: Addr, dst: Addr, data: bytes, delay: float = 0.0) -> None:
        self._push(self.now + self.latency + delay, src, dst, data)

    def _push(self, at: float, src: Addr, dst: Addr, data: bytes) -> None:
        heapq.heappush(self._queue, (at, next(self._seq), src, dst, data))

    def flush(self) -> None:
        for name, node in self.nodes.items():
            for data, dst in node.table.datagrams_to_send(self.now):
                src = (self.source and self.source(name, data)) or self.public[name]
                self.wire.append((self.now, name, src, dst, data))
                for delay in [0.0] if self.tap is None else self.tap(name, data):
                    self._push(self.now + self.latency + delay, src, dst, data)
            while (event := node.table.next_event()) is not None:
                node.events.append(event)

    def run_until(self, until: float) -> None:
        """Deliver datagrams and fire timers in time order up to ``until``."""
        self.flush()
        while True:
            times = [t for n in self.nodes.values() if (t := n.table.get_timer()) is not None]
            if self._queue:
                times.append(self._queue[0][0])
            at = min(times, default=None)
            if at is None or at > until:
                break
            self.now = max(self.now, at)
            by_public = {a: self.nodes[n] for a, n in self.aliases.items()}
            by_public.update({a: self.nodes[n] for n, a in self.public.items()})
            while self._queue and self._queue[0][0] <= self.now:
                _, _, src, dst, data = heapq.heappop(self._queue)
                target = by_public.get(dst)
                if target is not None:  # else: an address nobody holds any more (rebound)
                    target.table.receive_datagram(data, src, self.now)
            for node in self.nodes.values():
                node.table.handle_timer(self.now)
            self.flush()
        self.now = until
        self.flush()

    def sent_by(self, name: str) -> list[tuple[float, Addr, bytes]]:
        """What ``name`` put on the wire: (time, destination, bytes)."""
        return [(t, dst, d) for t, sender, _, dst, d in self.wire if sender == name]


def pair(
    config: TableConfig | None = None, latency: float = 0.005, tap: Tap | None = None, salt: int = 0
) -> tuple[Net, Node, Node]:
    """Alice (port 1001) and Bob (port 2002), not yet connected; ``salt`` changes their randomness
    (so their session keys), not their identities."""
    net = Net(latency=latency, tap=tap)
    alice = net.add("alice", seed=1, port=1001, config=config, random_bytes=seeded(1 + salt * 1000))
    bob = net.add("bob", seed=2, port=2002, config=config, random_bytes=seeded(2 + salt * 1000))
    return net, alice, bob


def connected(
    config: TableConfig | None = None, latency: float = 0.005, salt: int = 0
) -> tuple[Net, Node, Node]:
    net, alice, bob = pair(config, latency, salt=salt)
    alice.table.connect(bob.peer_id, net.public["bob"], net.now)
    net.run_until(net.now + 1.0)
    return net, alice, bob
