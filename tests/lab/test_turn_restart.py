"""coturn killed and restarted under two relays: each side notices, allocates again by itself,
re-opens its peer, and traffic resumes once the new relayed addresses are exchanged."""

from __future__ import annotations

import asyncio

import pytest

from netlink.lab.builder import Lab
from netlink.lab.nat import NatBehaviour
from node.config import BreakerSection
from node.proto.stun.transaction import Timing
from node.proto.turn.client import TurnTiming
from node.proto.turn.credentials import Credentials
from node.proto.turn.events import Address
from node.proto.turn.uri import TurnTransport
from node.transports.turn.allocator import RelayAllocation
from tests.lab.conftest import LabFactory
from tests.lab.turn_helpers import LAB_TIMING, coturn, server_address, short_lifetimes

pytestmark = pytest.mark.lab

LIFETIME = 3


class Side:
    """One host's relay: its relayed addresses as they change, and what it received."""

    def __init__(self, lab: Lab, host: str, transport: TurnTransport, *, echo: bool) -> None:
        config = coturn(lab)
        self.changes: asyncio.Queue[Address | None] = asyncio.Queue()
        self.received: list[bytes] = []
        self.arrived = asyncio.Event()
        self.echo = echo
        self.relay = RelayAllocation(
            [server_address(lab, transport)],
            lambda: Credentials(config.username, config.password),
            breaker=BreakerSection(failure_threshold=5, recovery_timeout_s=1.0).new_breaker,
            on_data=self._on_data,
            on_relay=self.changes.put_nowait,
            timing=LAB_TIMING if transport is TurnTransport.UDP else Timing(reliable=True, ti=3),
            turn_timing=TurnTiming(LIFETIME, LIFETIME, LIFETIME),
            socket_factory=lambda _family, kind: lab.socket(host, kind),
            connect_timeout=2.0,
        )

    def _on_data(self, peer: Address, data: bytes) -> None:
        self.received.append(data)
        self.arrived.set()
        if self.echo:
            self.relay.send(peer, data)

    async def next_relayed(self) -> Address | None:
        async with asyncio.timeout(30):
            return await self.changes.get()


async def exchange(a: Side, b: Side, count: int, tag: bytes) -> None:
    """A sends ``count`` datagrams to B's relay, B echoes each: all must come back."""
    b_relayed = b.relay.relayed
    assert b_relayed is not None
    start = len(a.received)
    for i in range(count):
        a.relay.send(b_relayed, tag + i.to_bytes(4, "big"))
    async with asyncio.timeout(10):
        while len(a.received) - start < count:
            a.arrived.clear()
            await a.arrived.wait()
    assert sorted(a.received[start:]) == [tag + i.to_bytes(4, "big") for i in range(count)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", [TurnTransport.UDP, TurnTransport.TCP], ids=lambda t: t.value)
async def test_coturn_restart_each_side_reallocates_and_traffic_resumes(
    lab_factory: LabFactory, transport: TurnTransport
) -> None:
    lab = lab_factory(nats=(("A", NatBehaviour.SYMMETRIC), ("B", NatBehaviour.SYMMETRIC)))
    short_lifetimes(lab, LIFETIME)
    a = Side(lab, "A1", transport, echo=False)
    b = Side(lab, "B1", transport, echo=True)
    async with a.relay, b.relay:
        a_first, b_first = await a.next_relayed(), await b.next_relayed()
        assert a_first is not None and b_first is not None
        b.relay.open_peer(a_first)  # the relayed addresses are exchanged by hand (no signalling yet)
        a.relay.open_peer(b_first)
        await b.relay.peer_ready(a_first)
        await exchange(a, b, 100, b"before")

        lab.stop_coturn()
        await asyncio.sleep(LIFETIME / 2)  # long enough for a refresh to go unanswered
        lab.start_coturn()  # same addresses, same configuration, no memory of the allocations
        assert await a.next_relayed() is None and await b.next_relayed() is None  # noticed
        a_second, b_second = await a.next_relayed(), await b.next_relayed()  # allocated again
        assert a_second is not None and b_second is not None

        # Each side re-opened its old peer by itself; now it learns the new address.
        a.relay.close_peer(b_first)
        b.relay.close_peer(a_first)
        b.relay.open_peer(a_second)
        a.relay.open_peer(b_second)
        await b.relay.peer_ready(a_second)
        await exchange(a, b, 100, b"after")

        for side in (a, b):
            assert side.relay.counters.losses == 1
            assert side.relay.counters.allocations == 2
    assert len(b.received) == 200
