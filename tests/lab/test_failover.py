"""The coordinator's failover between real node processes (issue 15): while 1,000 reliable
messages flow from A to B, the path carrying them dies; all 1,000 arrive exactly once and in
order, and the time from the fault to the first message on the next path is printed.

(a) A multi-homed (two uplinks), the uplink carrying the path loses carrier (a netlink hint);
(b) A and B open, UDP silently dropped between them (no hint: missing acknowledgements);
(c) A reaches nothing but two TURN servers, the active one is killed: the other relay takes over;
(d) A behind a NAT that reboots (conntrack flushed, A's mapping moves): the session follows A.

The fault fires once B has the first ``TRIGGER`` messages, so most of the stream is still to come.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netlink.lab import faults
from netlink.lab.builder import Lab
from netlink.lab.coturn import STUN_PORT
from netlink.lab.failover import (
    add_multihomed_host,
    busiest_uplink,
    ignore_routes_with_linkdown,
    set_carrier,
    tx_packets,
)
from netlink.lab.fleet import FaultRun, Fleet, NodeSpec, stream_through_fault
from netlink.lab.nat import NatBehaviour
from netlink.lab.topology import STUN_PRIMARY
from netlink.lab.turn_pair import SECOND_PRIMARY, start_second_coturn, stop_second_coturn
from tests.lab.conftest import LabFactory

pytestmark = pytest.mark.lab

COUNT = 1000
SIZE = 8192  # bytes (7 datagrams each): the stream of 1,000 lasts long enough to be cut part way
TRIGGER = 100
# The receiver's inbox holds few messages, so its node acknowledges only as fast as its listener
# takes them: the stream on the wire is where the listener is, and the fault lands mid-stream.
PACED = "[coordinator]\ninbox_max_messages = 32\n"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Callable[[Lab], Fleet]]:
    made: list[Fleet] = []

    def make(lab: Lab) -> Fleet:
        made.append(Fleet(lab, tmp_path))
        return made[-1]

    yield make
    for one in made:
        codes = one.stop()
        assert all(code == 0 for code in codes.values()), codes


def report(case: str, run: FaultRun, fleet: Fleet, a: NodeSpec) -> None:
    moved = run.failover
    how = "no traffic after the fault" if moved is None else (
        f"{moved.seconds * 1000:.0f} ms to the first message on the next path ({moved.old} -> {moved.new})"
        if moved.by_path
        else f"{moved.seconds * 1000:.0f} ms to traffic after the stall (the path kept its name: {moved.old})"
    )  # fmt: skip
    print(f"\n{case}: {how}; send: {json.dumps(run.sent)}; A's peers after: {json.dumps(fleet.peers(a))}")
    d = run.delivery
    assert d.exactly_once and d.in_order, (case, d)
    assert run.sent["acknowledged"] == COUNT, run.sent
    assert moved is not None, f"{case}: every message arrived before the fault; nothing was in flight"


def test_a_multihomed_sender_loses_the_carrier_of_its_active_uplink(
    lab_factory: LabFactory, fleet: Callable[[Lab], Fleet]
) -> None:
    lab = lab_factory((("A", NatBehaviour.OPEN), ("B", NatBehaviour.OPEN)), open_hosts=1, with_coturn=False)
    m1 = add_multihomed_host(lab)
    ignore_routes_with_linkdown(lab, m1.name)
    nodes = fleet(lab)
    eth0, eth1 = m1.uplink("A"), m1.uplink("B")
    a = nodes.plan(m1.name, str(eth0.address.ip))
    b = nodes.plan("O1")
    nodes.start(a, [b.static("udp"), b.static("tls")])
    also = f"{a.peer_id}@udp://{eth1.address.ip}:{a.uri('udp').rsplit(':', 1)[1]}"
    nodes.start(b, [a.static("udp"), also], PACED)
    listener = nodes.listen(b)
    print("\nconnect:", json.dumps(nodes.connect(a, b)))

    since = {u.ifname: tx_packets(lab, m1.name, u.ifname) for u in m1.uplinks}

    def pull() -> float:
        uplink = busiest_uplink(lab, m1, since)  # the one carrying the stream
        fired = time.monotonic()
        set_carrier(lab, m1.name, False, uplink)
        return fired

    run = stream_through_fault(nodes, a, b, listener, pull, count=COUNT, size=SIZE, trigger_at=TRIGGER)
    report("(a) carrier loss on the active uplink", run, nodes, a)


def test_udp_silently_dropped_moves_traffic_to_tcp_tls(
    lab_factory: LabFactory, fleet: Callable[[Lab], Fleet]
) -> None:
    lab = lab_factory((), open_hosts=2)
    nodes = fleet(lab)
    a, b = nodes.plan("O1"), nodes.plan("O2")
    # Discovery finds both hosts open, so direct UDP is the primary path (the design's matrix).
    stun = [f"{STUN_PRIMARY}:{STUN_PORT}"]
    nodes.start(a, [b.static("udp"), b.static("tls")], stun=stun)
    nodes.start(b, [a.static("udp"), a.static("tls")], PACED, stun=stun)
    listener = nodes.listen(b)
    print("\nconnect:", json.dumps(nodes.connect(a, b)))
    # Whichever path came up first carries traffic at first; the matrix's primary (UDP: both
    # hosts are open) takes over after the 2 s hysteresis hold. The fault is meant for it.
    deadline = time.monotonic() + 20
    while nodes.peers(a)["peers"][0]["active"]["kind"] != "udp":
        assert time.monotonic() < deadline, nodes.peers(a)
        time.sleep(0.1)
    fault = faults.silent_drop(lab.host("O1").address, lab.host("O2").address, "udp")
    armed = faults.PendingNft(lab, "pub")
    run = stream_through_fault(
        nodes, a, b, listener, lambda: armed.fire(fault.rules()), count=COUNT, size=SIZE, trigger_at=TRIGGER
    )
    report("(b) UDP silently dropped", run, nodes, a)
    assert run.failover is not None and run.failover.by_path
    assert "tcp_tls" in run.failover.new, run.failover


def test_a_turn_only_sender_moves_to_the_other_relay_when_its_turn_server_dies(
    lab_factory: LabFactory, fleet: Callable[[Lab], Fleet]
) -> None:
    lab = lab_factory((("A", NatBehaviour.PORT_RESTRICTED),), open_hosts=1)
    first = lab.coturn_config
    assert first is not None
    second = start_second_coturn(lab)
    faults.only_reach(lab, "A", (first.primary, first.secondary, second.primary, second.secondary))
    nodes = fleet(lab)
    a, b = nodes.plan("A1"), nodes.plan("O1")
    turn = (
        f'[turn]\nservers = ["turn:{first.primary}:{STUN_PORT}?transport=udp", '
        f'"turn:{second.primary}:{STUN_PORT}?transport=udp"]\n'
        f'username = "{first.username}"\npassword = "{first.password}"\n'
    )
    nodes.start(a, [b.static("udp"), b.static("tls")], turn)
    nodes.start(b, [], PACED)
    listener = nodes.listen(b)
    print("\nconnect:", json.dumps(nodes.connect(a, b, timeout=60)))

    def kill_active_relay() -> float:
        newest = [e.path for e in listener.events_of(a.peer_id) if e.state == "connected"]
        fired = time.monotonic()
        if newest and str(SECOND_PRIMARY) in newest[-1]:
            stop_second_coturn(lab)
        else:
            lab.stop_coturn()
        return fired

    run = stream_through_fault(
        nodes, a, b, listener, kill_active_relay, count=COUNT, size=SIZE, trigger_at=TRIGGER
    )
    report("(c) the active TURN server killed", run, nodes, a)


def test_a_nat_reboot_moves_the_senders_mapping_and_the_session_follows(
    lab_factory: LabFactory, fleet: Callable[[Lab], Fleet]
) -> None:
    lab = lab_factory((("A", NatBehaviour.PORT_RESTRICTED),), open_hosts=1, with_coturn=False)
    nodes = fleet(lab)
    a, b = nodes.plan("A1"), nodes.plan("O1")
    nodes.start(a, [b.static("udp"), b.static("tls")])
    nodes.start(b, [], PACED)
    listener = nodes.listen(b)
    print("\nconnect:", json.dumps(nodes.connect(a, b)))
    armed = faults.arm_reboot(lab, "A")
    text = faults.rebooted_text(lab, "A")
    run = stream_through_fault(
        nodes, a, b, listener, lambda: armed.fire(text), count=COUNT, size=SIZE, trigger_at=TRIGGER
    )
    report("(d) the NAT rebooted", run, nodes, a)
