"""Two nodes behind NATs that know only their introducer and each other's peer id (issue 16):
``connect PEER_ID`` goes through the introducer, answers as soon as a path works (relay first),
and the punch then moves traffic to a direct path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlink.lab.builder import Lab
from netlink.lab.fleet import Fleet
from netlink.lab.nat import NatBehaviour
from netlink.lab.traversal import INTRODUCER_CONFIG, member_config, stun_servers, wait_ready, wait_settled
from tests.lab.conftest import LabFactory

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

PR = NatBehaviour.PORT_RESTRICTED


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[list[Fleet]]:
    made: list[Fleet] = []
    yield made
    for one in made:
        codes = one.stop()
        assert all(code == 0 for code in codes.values()), codes


def test_two_port_restricted_nodes_introduced_by_peer_id_end_direct(
    lab_factory: LabFactory, fleet: list[Fleet], tmp_path: Path
) -> None:
    lab: Lab = lab_factory((("A", PR), ("B", PR)), open_hosts=1)
    coturn = lab.coturn_config
    assert coturn is not None
    nodes = Fleet(lab, tmp_path)
    fleet.append(nodes)
    introducer, a, b = nodes.plan("O1"), nodes.plan("A1"), nodes.plan("B1")
    nodes.start(introducer, [], INTRODUCER_CONFIG)
    for spec in (a, b):
        nodes.start(spec, [], member_config(introducer, coturn, PR), stun=stun_servers(coturn))
    for spec in (a, b):
        wait_ready(nodes, spec)
    served = nodes.cli_json(introducer, "status")["rendezvous"]
    assert served["serve"] is True and served["registered_peers"] == 2, served

    listener = nodes.listen(b)
    connected = nodes.connect(a, b, timeout=30)
    print("\nconnect:", json.dumps(connected))
    assert connected["peer_id"] == b.peer_id
    assert connected["time_to_first_ms"] is not None
    settled = wait_settled(nodes, a, b, moved=True)
    print("settled:", settled)
    assert settled.outcome == "direct", settled
    assert settled.method in ("srflx", "prflx", "host"), settled
    assert settled.active_kind == "udp", settled
    assert settled.time_to_direct_ms is not None

    sent = nodes.send(a, b, 50, 300)
    listener.wait_count(a.peer_id, 50)
    assert sent["paths"].get("udp", 0) > 0, sent
    counts = nodes.cli_json(a, "status")["rendezvous"]["traversals"]
    assert counts["direct"] == 1 and counts["attempts"] == 1, counts
