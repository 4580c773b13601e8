"""The link monitor's state view against real rtnetlink datagrams captured from the lab
(tests/fixtures/netlink_messages.json, made by tests/fixtures/capture_netlink.py)."""

from __future__ import annotations

import ipaddress
import json
import pathlib
import struct
from collections.abc import Iterable
from typing import Any

import pytest

from netlink.monitor import (
    AddressAdded,
    AddressRemoved,
    DefaultRouteChanged,
    Family,
    KernelView,
    LinkDown,
    LinkEvent,
    LinkMonitorError,
    LinkUp,
    OperState,
    wire,
)

FIXTURE = json.loads((pathlib.Path(__file__).parents[1] / "fixtures" / "netlink_messages.json").read_text())
STEPS: dict[str, list[bytes]] = {
    s["name"]: [bytes.fromhex(d) for d in s["datagrams"]] for s in FIXTURE["steps"]
}
ETH0, ETH1 = 2, 3
GW_A, GW_B = ipaddress.IPv4Address("198.18.1.1"), ipaddress.IPv4Address("198.18.2.1")


def feed(view: KernelView, datagrams: Iterable[bytes]) -> tuple[LinkEvent, ...]:
    """What the asyncio layer does with one batch: apply, send the next dump, take events."""
    view.requests_to_send()
    for data in datagrams:
        view.receive(data)
        view.requests_to_send()
    return view.events()


def loaded_view() -> KernelView:
    view = KernelView(FIXTURE["portid"])
    assert feed(view, STEPS["dump"]) == ()
    assert view.loaded
    return view


def replay_until(name: str) -> KernelView:
    view = loaded_view()
    for step in FIXTURE["steps"][1:]:
        if step["name"] == name:
            break
        feed(view, STEPS[step["name"]])
    return view


def routes(event: LinkEvent) -> tuple[list[tuple[int, Any, int]], list[tuple[int, Any, int]]]:
    assert isinstance(event, DefaultRouteChanged)
    assert event.family is Family.INET
    return (
        [(r.interface_index, r.gateway, r.metric) for r in event.previous],
        [(r.interface_index, r.gateway, r.metric) for r in event.current],
    )


def test_the_first_dump_is_the_baseline_and_reports_nothing() -> None:
    view = loaded_view()
    state = view.snapshot()
    eth0, eth1 = state.interface("eth0"), state.interface("eth1")
    assert eth0 is not None and eth1 is not None
    assert (eth0.index, eth0.state, eth0.carrier, eth0.up) == (ETH0, OperState.UP, True, True)
    assert eth0.addresses == (ipaddress.IPv4Interface("198.18.1.200/24"),)
    assert [(r.interface, r.gateway, r.metric) for r in state.default_routes] == [
        ("eth0", GW_A, 100),
        ("eth1", GW_B, 200),
    ]
    assert view.has_address(ipaddress.IPv4Address("198.18.2.200"))
    assert not view.has_address(ipaddress.IPv4Address("198.18.2.201"))
    assert view.stats().events == 0 and view.stats().resyncs == 1


def test_carrier_loss_and_recovery_are_link_down_and_up_admin_state_unchanged() -> None:
    view = replay_until("carrier_down")
    (down,) = feed(view, STEPS["carrier_down"])
    assert isinstance(down, LinkDown) and (down.index, down.interface) == (ETH0, "eth0")
    eth0 = view.snapshot().interface("eth0")
    assert eth0 is not None and not eth0.carrier and eth0.admin_up  # the cable, not `ip link set down`
    (up,) = feed(view, STEPS["carrier_up"])
    assert up == LinkUp(ETH0, "eth0", OperState.UP)


def test_address_added_and_removed() -> None:
    view = replay_until("address_added")
    extra = ipaddress.IPv4Interface("198.51.100.7/24")
    assert feed(view, STEPS["address_added"]) == (AddressAdded(ETH0, "eth0", extra),)
    assert view.has_address(extra.ip)
    assert feed(view, STEPS["address_removed"]) == (AddressRemoved(ETH0, "eth0", extra),)
    assert not view.has_address(extra.ip)


def test_default_route_removed_and_added() -> None:
    view = replay_until("default_route_removed")
    (removed,) = feed(view, STEPS["default_route_removed"])
    assert routes(removed) == ([(ETH0, GW_A, 100), (ETH1, GW_B, 200)], [(ETH1, GW_B, 200)])
    (added,) = feed(view, STEPS["default_route_added"])
    assert routes(added) == ([(ETH1, GW_B, 200)], [(ETH0, GW_A, 100), (ETH1, GW_B, 200)])


def test_removing_an_uplinks_only_address_also_reports_its_silently_flushed_default_route() -> None:
    # The kernel sends no RTM_DELROUTE for IPv4 routes it flushes with the last address; the
    # view asks for a route dump and reports the difference.
    view = replay_until("uplink_address_removed")
    removed, changed = feed(view, STEPS["uplink_address_removed"])
    assert removed == AddressRemoved(ETH1, "eth1", ipaddress.IPv4Interface("198.18.2.200/24"))
    assert routes(changed) == ([(ETH0, GW_A, 100), (ETH1, GW_B, 200)], [(ETH0, GW_A, 100)])


def test_a_deleted_link_is_down_with_its_addresses_and_routes_gone() -> None:
    view = replay_until("uplink_deleted")
    events = feed(view, STEPS["uplink_deleted"])
    assert LinkDown(ETH0, "eth0", OperState.NOTPRESENT) in events
    assert AddressRemoved(ETH0, "eth0", ipaddress.IPv4Interface("198.18.1.200/24")) in events
    assert [routes(e) for e in events if isinstance(e, DefaultRouteChanged)] == [([(ETH0, GW_A, 100)], [])]
    assert len(events) == 3
    assert view.snapshot().interface("eth0") is None


@pytest.mark.parametrize("step", ["mtu_changed", "carrier_up", "address_added", "default_route_added"])
def test_no_event_for_what_is_not_a_change(step: str) -> None:
    view = replay_until(step)
    feed(view, STEPS[step])
    before = view.snapshot()
    assert feed(view, STEPS[step]) == ()  # the same news again
    assert view.snapshot() == before


def test_mtu_change_is_no_event() -> None:
    view = replay_until("mtu_changed")
    assert STEPS["mtu_changed"]  # the kernel did send an RTM_NEWLINK
    assert feed(view, STEPS["mtu_changed"]) == ()


def test_a_burst_read_together_is_reported_as_its_net_change() -> None:
    view = replay_until("carrier_down")
    assert feed(view, STEPS["carrier_down"] + STEPS["carrier_up"]) == ()
    view = replay_until("default_route_removed")
    assert feed(view, STEPS["default_route_removed"] + STEPS["default_route_added"]) == ()
    view = replay_until("carrier_down")
    burst = STEPS["carrier_down"] + STEPS["carrier_up"] + STEPS["mtu_changed"] + STEPS["address_added"]
    assert [type(e) for e in feed(view, burst)] == [AddressAdded]


def overrun_view() -> tuple[KernelView, dict[str, list[bytes]]]:
    record = FIXTURE["overrun"]
    dumps = {k: [bytes.fromhex(d) for d in record[k]] for k in ("before", "after", "again")}
    view = KernelView(record["portid"])
    assert feed(view, dumps["before"]) == ()
    return view, dumps


def test_a_redump_after_an_overrun_reports_exactly_the_differences() -> None:
    view, dumps = overrun_view()
    view.overrun()
    events = feed(view, dumps["after"])
    assert set(events) - {e for e in events if isinstance(e, DefaultRouteChanged)} == {
        LinkDown(ETH0, "eth0", OperState.NOTPRESENT),
        AddressRemoved(ETH0, "eth0", ipaddress.IPv4Interface("198.18.1.200/24")),
        AddressRemoved(ETH1, "eth1", ipaddress.IPv4Interface("198.18.2.200/24")),
    }
    changed = [routes(e) for e in events if isinstance(e, DefaultRouteChanged)]
    assert changed == [([(ETH0, GW_A, 100), (ETH1, GW_B, 200)], [])]
    assert len(events) == 4
    assert view.stats().overruns == 1 and view.stats().resyncs == 2
    # The net outcome of every change it missed: equal to the live view that saw each one.
    live = replay_until("uplink_deleted")
    feed(live, STEPS["uplink_deleted"])
    assert view.snapshot() == live.snapshot()
    view.overrun()
    assert feed(view, dumps["again"]) == ()  # nothing changed since: nothing reported


def test_an_interrupted_dump_is_done_again() -> None:
    view = KernelView(FIXTURE["portid"])
    (first,) = view.requests_to_send()
    link_dump = STEPS["dump"][0]
    length, mtype, flags, seq, pid = wire.NLMSG_HEADER.unpack_from(link_dump)
    assert mtype == wire.RTM_NEWLINK and seq == 1
    interrupted = (
        wire.NLMSG_HEADER.pack(length, mtype, flags | wire.NLM_F_DUMP_INTR, seq, pid) + link_dump[16:]
    )
    view.receive(interrupted)
    done = next(d for d in STEPS["dump"] if wire.NLMSG_HEADER.unpack_from(d)[1] == wire.NLMSG_DONE)
    view.receive(done)
    (again,) = view.requests_to_send()
    assert again[4:6] == first[4:6]  # RTM_GETLINK once more
    assert not view.loaded


def first_message(datagram: bytes) -> bytes:
    (length,) = struct.unpack_from("=I", datagram)
    return datagram[:length]


def test_truncated_unknown_and_undecodable_messages_are_counted_and_skipped() -> None:
    view = replay_until("carrier_down")
    down = first_message(STEPS["carrier_down"][0])
    up = first_message(STEPS["carrier_up"][0])
    view.receive(down[:10])  # shorter than a netlink header
    view.receive(down[: len(down) // 2])  # the header promises more than there is
    unknown = bytearray(up)
    struct.pack_into("=H", unknown, 4, 28)  # RTM_NEWNEIGH: a type the monitor does not follow
    view.receive(bytes(unknown))
    stub = bytearray(up[:20])
    struct.pack_into("=I", stub, 0, 20)  # an RTM_NEWLINK too short for its ifinfomsg
    view.receive(bytes(stub))
    overrunning = bytearray(down)
    struct.pack_into("=H", overrunning, 32, len(down))  # the first attribute claims the whole message
    view.receive(bytes(overrunning))
    assert view.events() == ()
    stats = view.stats()
    assert (stats.malformed, stats.unknown) == (4, 1)
    # A good message after the bad ones, and before a cut one in the same datagram, still counts.
    assert feed(view, [down + up[: len(up) - 8]]) == (LinkDown(ETH0, "eth0", OperState.DOWN),)
    assert view.stats().malformed == 5


def test_dumps_the_kernel_keeps_refusing_become_a_typed_failure() -> None:
    view = KernelView(7)
    for _ in range(3):
        (request,) = view.requests_to_send()
        seq = wire.NLMSG_HEADER.unpack_from(request)[3]
        error = wire.NLMSG_HEADER.pack(36, wire.NLMSG_ERROR, 0, seq, 7) + struct.pack("=i", -16) + request
        view.receive(error)
    failure = view.take_failure()
    assert isinstance(failure, LinkMonitorError)
    assert view.take_failure() is None
    assert view.requests_to_send()  # the dump is still wanted, on the next socket
