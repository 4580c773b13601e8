"""Wires TURN clients (node.proto.turn.client) to the TURN server model in virtual time, with peers.

Delivery is instant; ``advance(t)`` jumps from one client timer to the next. A peer either is
another client's relayed address (the two talk through the one server), an echo peer (every
datagram comes back), or a sink (datagrams are recorded in ``inbox``).

Both loops are bounded: a client that never stops sending, or whose timer stays due after
``handle_timer`` (a livelock a real node would spin on), fails the test with ``NetStuck`` naming
what did not settle, instead of hanging it (under hypothesis a hang is not even interrupted by
pytest-timeout's signal method: its ``Failed`` is caught as one more failing example to shrink).
"""

from __future__ import annotations

from collections import defaultdict

from node.proto.turn.client import TurnClient
from node.proto.turn.events import TurnEvent
from tests.fakes.stun_server import Datagram
from tests.fakes.turn_server import Address, TurnServerModel

MAX_PUMP_ROUNDS = 1_000  # rounds of datagrams/events in one pump before it counts as stuck
MAX_STILL_DUE = 100  # handle_timer calls in a row with a timer that did not move past ``now``


class NetStuck(AssertionError):
    """The virtual network did not settle: a client livelocks (the message says which, and when)."""


class Net:
    def __init__(self, server: TurnServerModel, now: float = 0.0) -> None:
        self.server = server
        self.now = now
        self.clients: dict[Address, TurnClient] = {}
        self.events: dict[Address, list[TurnEvent]] = defaultdict(list)
        self.echo_peers: set[Address] = set()
        self.inbox: dict[Address, list[tuple[Address, bytes]]] = defaultdict(list)
        self.to_server: list[tuple[Address, bytes]] = []  # everything the clients sent, in order
        self.chunk: int | None = None  # stream clients get their bytes in pieces of this size

    def add(self, address: Address, client: TurnClient) -> TurnClient:
        self.clients[address] = client
        if client.stream:
            self.server.stream_clients.add(address)
        return client

    def send_to_server(self, address: Address, datagram: bytes) -> None:
        self.to_server.append((address, datagram))
        self._route(self.server.receive(datagram, address, self.server.primary, self.now))

    def pump(self) -> None:
        moved = True
        rounds = 0
        while moved:
            rounds += 1
            if rounds > MAX_PUMP_ROUNDS:
                raise NetStuck(f"pump at t={self.now} still moving datagrams after {MAX_PUMP_ROUNDS} rounds")
            moved = False
            for address, client in list(self.clients.items()):
                for datagram in client.datagrams_to_send(self.now):
                    moved = True
                    self.send_to_server(address, datagram)
                while (event := client.next_event()) is not None:
                    moved = True
                    self.events[address].append(event)

    def _route(self, datagrams: list[Datagram]) -> None:
        for out in datagrams:
            if out.src == self.server.primary:
                self._to_client(out)
            else:
                self._to_peer(out)

    def _to_client(self, out: Datagram) -> None:
        client = self.clients.get(out.dst)
        if client is None:
            return
        if client.stream and self.chunk:
            for i in range(0, len(out.data), self.chunk):
                client.receive(out.data[i : i + self.chunk], self.now)
        else:
            client.receive(out.data, self.now)

    def _to_peer(self, out: Datagram) -> None:
        server = self.server
        if out.dst in {a.relayed for a in server.allocations.values()}:
            self._route(server.receive_from_peer(out.dst, out.src, out.data, self.now))
            return
        self.inbox[out.dst].append((out.src, out.data))
        if out.dst in self.echo_peers:
            self._route(server.receive_from_peer(out.src, out.dst, out.data, self.now))

    def advance(self, until: float) -> None:
        """Run every timer due up to ``until`` and stop there."""
        self.pump()
        still_due = 0  # timers handled in a row without any deadline moving past now
        while True:
            timers = [t for c in self.clients.values() if (t := c.get_timer()) is not None]
            due = min(timers, default=None)
            if due is None or due > until:
                self.now = max(self.now, until)
                self.pump()
                return
            still_due = still_due + 1 if due <= self.now else 0
            if still_due > MAX_STILL_DUE:
                stuck = [a for a, c in self.clients.items() if c.get_timer() == due]
                raise NetStuck(
                    f"client {stuck}: timer due at t={due!r} still due after {MAX_STILL_DUE}"
                    f" handle_timer({self.now!r}) calls (handle_timer does not act on its own deadline)"
                )
            self.now = max(self.now, due)
            for client in list(self.clients.values()):
                client.handle_timer(self.now)
            self.pump()

    def take_events(self, address: Address) -> list[TurnEvent]:
        events, self.events[address] = self.events[address], []
        return events
