"""Nodes that know each other only by peer id, in the lab: an introducer node on an open host
(``[rendezvous] serve``), members behind the lab's NATs that register with it, discover their
NAT against the lab's coturn and keep a TURN allocation there (over TCP when their router drops
UDP). ``connect PEER_ID`` without addresses then goes through the introducer: relay first, then
the punch (issue 16). Used by tests/lab/test_rendezvous*.py, ``bitcraps-node lab matrix`` and
bench/connect.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from netlink.lab.coturn import CoturnConfig
from netlink.lab.fleet import TLS_PORT, Fleet, FleetError, FleetFailure, NodeSpec
from netlink.lab.nat import NatBehaviour
from netlink.lab.topology import STUN_PRIMARY

INTRODUCER_CONFIG = "[rendezvous]\nserve = true\n"
READY_TIMEOUT_S = 60.0
POLL_S = 0.1


def stun_servers(coturn: CoturnConfig) -> list[str]:
    return [f"{STUN_PRIMARY}:{coturn.port}"]


def member_config(introducer: NodeSpec, coturn: CoturnConfig, behaviour: NatBehaviour | None) -> str:
    """A member's config: its introducer (pinned by peer id) and its TURN server (over TCP when
    its router drops UDP)."""
    transport = "tcp" if behaviour is NatBehaviour.UDP_BLOCKED else "udp"
    return (
        "[rendezvous]\n"
        f'introducers = ["{introducer.peer_id}@tls://{introducer.address}:{TLS_PORT}"]\n'
        "[turn]\n"
        f'servers = ["turn:{coturn.primary}:{coturn.port}?transport={transport}"]\n'
        f'username = "{coturn.username}"\npassword = "{coturn.password}"\n'
    )


def wait_ready(fleet: Fleet, spec: NodeSpec, *, relay: bool = True, timeout: float = READY_TIMEOUT_S) -> None:
    """Until ``spec`` is registered with its introducer (with its relayed candidate when
    ``relay``: the registration follows the allocation)."""
    deadline = time.monotonic() + timeout
    while True:
        status = fleet.cli_json(spec, "status")
        links = status["rendezvous"]["introducers"]
        relayed = status["turn"] is not None and status["turn"]["relayed_address"] is not None
        if links and all(link["state"] == "registered" for link in links) and (relayed or not relay):
            return
        if time.monotonic() > deadline:
            raise FleetError(
                FleetFailure.NOT_READY,
                f"{spec.host}: not registered within {timeout:g} s: {json.dumps(status['rendezvous'])}"
                f" turn {json.dumps(status['turn'])}",
            )
        time.sleep(POLL_S)


@dataclass(frozen=True, slots=True)
class Settled:
    """How a traversal from one member to another ended, as ``peers --json`` shows it."""

    outcome: str  # direct, relay, failed
    method: str | None
    time_to_direct_ms: float | None
    active_kind: str | None


def wait_settled(
    fleet: Fleet, spec: NodeSpec, peer: NodeSpec, timeout: float = 30.0, *, moved: bool = False
) -> Settled:
    """Until ``spec``'s traversal to ``peer`` has an outcome (with ``moved``, and when direct,
    until traffic moved to it, or a second before ``timeout``)."""
    return wait_all_settled(fleet, spec, [peer], timeout, moved=moved)[peer.peer_id]


def wait_all_settled(
    fleet: Fleet, spec: NodeSpec, peers: Sequence[NodeSpec], timeout: float = 30.0, *, moved: bool = False
) -> dict[str, Settled]:
    """``wait_settled`` for several peers of ``spec`` at once (one ``peers`` command a poll)."""
    deadline = time.monotonic() + timeout
    wanted = {p.peer_id for p in peers}
    settled: dict[str, Settled] = {}
    rows: dict[str, Any] = {}
    while time.monotonic() < deadline:
        rows = {r["peer_id"]: r for r in fleet.peers(spec)["peers"] if r["peer_id"] in wanted}
        for peer_id, row in rows.items():
            traversal = row["traversal"]
            if peer_id in settled or traversal is None or traversal["outcome"] == "pending":
                continue
            active = row["active"]
            kind = None if active is None else active["kind"]
            waiting = moved and traversal["outcome"] == "direct" and kind != "udp"
            if not waiting or time.monotonic() > deadline - 1:
                settled[peer_id] = Settled(
                    traversal["outcome"], traversal["method"], traversal["time_to_direct_ms"], kind
                )
        if len(settled) == len(wanted):
            return settled
        time.sleep(POLL_S)
    missing = {p.host: rows.get(p.peer_id) for p in peers if p.peer_id not in settled}
    raise FleetError(FleetFailure.NOT_READY, f"{spec.host}: no outcome in {timeout:g} s for {missing}")
