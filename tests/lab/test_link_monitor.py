"""The link monitor inside a multi-homed lab host, under uvloop (tests/conftest.py): carrier loss
and recovery, address removal and default-route changes reported in order; an overrun (tiny
receive buffer, hundreds of changes while the loop is blocked) re-dumped into exactly the
differences."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import pytest

from netlink.lab.builder import Lab
from netlink.lab.failover import (
    MultiHomedHost,
    add_multihomed_host,
    change_address,
    change_default_route,
    set_carrier,
)
from netlink.lab.nat import NatBehaviour
from netlink.monitor import (
    AddressAdded,
    AddressRemoved,
    DefaultRouteChanged,
    LinkDown,
    LinkEvent,
    LinkMonitor,
    LinkUp,
    open_route_socket,
)
from tests.lab.conftest import LabFactory
from tests.support.tlsnodes import eventually

pytestmark = pytest.mark.lab

HANG_S = 20.0  # a deadline only to detect a hang, never a measurement


@pytest.fixture
def multihomed(lab_factory: LabFactory) -> tuple[Lab, MultiHomedHost]:
    lab = lab_factory((("A", NatBehaviour.OPEN), ("B", NatBehaviour.OPEN)), with_coturn=False)
    return lab, add_multihomed_host(lab)


def monitor_in(lab: Lab, host: str, **socket_options: Any) -> LinkMonitor:
    return LinkMonitor(socket_factory=lambda: lab.run_in(host, lambda: open_route_socket(**socket_options)))


async def next_event(events: AsyncIterator[LinkEvent]) -> LinkEvent:
    async with asyncio.timeout(HANG_S):
        return await anext(events)


def route_hops(event: LinkEvent) -> list[tuple[str, str]]:
    assert isinstance(event, DefaultRouteChanged), event
    return [(r.interface, str(r.gateway)) for r in event.current]


async def test_monitor_in_a_multihomed_host_reports_each_change_in_order(
    multihomed: tuple[Lab, MultiHomedHost],
) -> None:
    lab, m1 = multihomed
    a, b = m1.uplink("A"), m1.uplink("B")
    async with monitor_in(lab, m1.name) as monitor:
        assert monitor.ready
        assert [(r.interface, r.metric) for r in monitor.state().default_routes] == [
            ("eth0", 100),
            ("eth1", 200),
        ]
        events = monitor.events()

        set_carrier(lab, m1.name, False, a)  # the cable: the router's end goes down
        down = await next_event(events)
        assert isinstance(down, LinkDown) and down.interface == "eth0"
        eth0 = monitor.state().interface("eth0")
        assert eth0 is not None and not eth0.carrier and eth0.admin_up

        set_carrier(lab, m1.name, True, a)
        up = await next_event(events)
        assert isinstance(up, LinkUp) and up.interface == "eth0"

        change_address(lab, m1.name, b.address, add=False, ifname=b.ifname)
        assert await next_event(events) == AddressRemoved(3, "eth1", b.address)
        # The kernel flushed the route through eth1 without a word; the monitor re-dumped.
        assert route_hops(await next_event(events)) == [("eth0", str(a.gateway))]
        assert not monitor.has_address(b.address.ip)

        change_address(lab, m1.name, b.address, add=True, ifname=b.ifname)
        assert await next_event(events) == AddressAdded(3, "eth1", b.address)
        change_default_route(lab, m1.name, b.gateway, 50, add=True)  # eth1 takes over
        assert route_hops(await next_event(events)) == [("eth1", str(b.gateway)), ("eth0", str(a.gateway))]
        change_default_route(lab, m1.name, a.gateway, a.metric, add=False)
        assert route_hops(await next_event(events)) == [("eth1", str(b.gateway))]
        assert monitor.stats().events == 7
        assert monitor.stats().socket_failures == 0


BURST = 300
BURST_NET = ipaddress.IPv4Network("198.51.100.0/24")  # RFC 5737 TEST-NET-2


async def test_an_overrun_is_redumped_into_exactly_the_differences(
    multihomed: tuple[Lab, MultiHomedHost],
) -> None:
    lab, m1 = multihomed
    b = m1.uplink("B")
    burst = [ipaddress.IPv4Interface(f"{BURST_NET.network_address + i}/32") for i in range(1, 256)]
    burst += [ipaddress.IPv4Interface(f"192.0.2.{i}/32") for i in range(1, BURST - 255 + 1)]

    def flood(ipr: Any) -> None:
        (eth0,) = ipr.link_lookup(ifname="eth0")
        for address in burst:
            ipr.addr("add", index=eth0, address=str(address.ip), prefixlen=32)
        (eth1,) = ipr.link_lookup(ifname=b.ifname)
        ipr.addr("del", index=eth1, address=str(b.address.ip), prefixlen=b.address.network.prefixlen)

    # The smallest receive buffer the kernel allows: a few notifications fill it.
    async with monitor_in(lab, m1.name, rcvbuf=1) as monitor:
        assert monitor.ready
        seen: list[LinkEvent] = []

        async def collect() -> None:
            async for event in monitor.events():
                seen.append(event)

        async with asyncio.TaskGroup() as tasks:
            collector = tasks.create_task(collect())
            lab.netlink(m1.name, flood)  # blocks this loop: the monitor reads nothing meanwhile
            await eventually(
                lambda: len(monitor.state().interfaces[1].addresses) == 1 + BURST and monitor.settled
            )
            await eventually(lambda: len(seen) == monitor.stats().events)
            collector.cancel()

    stats = monitor.stats()
    assert stats.overruns >= 1, stats
    added = [e.address for e in seen if isinstance(e, AddressAdded)]
    assert sorted(added) == sorted(burst)  # each once: none missed, none twice
    assert [e for e in seen if isinstance(e, AddressRemoved)] == [AddressRemoved(3, "eth1", b.address)]
    changes = [e for e in seen if isinstance(e, DefaultRouteChanged)]
    assert [route_hops(e) for e in changes] == [[("eth0", "198.18.1.1")]]
    assert len(seen) == BURST + 2
