"""Every pair of NAT behaviours, with real node processes introduced by peer id (issue 16).

The lab: two routers of each behaviour (a pair of the same behaviour then crosses two NATs, as in
the field), one member node behind each, an introducer node on an open host and coturn in the
server namespace (:mod:`netlink.lab.traversal`). For each unordered pair of behaviours the member
behind the first router of one connects to the member behind the second router of the other by
peer id, waits for the traversal's outcome and sends messages; ``runs`` times, the peers
disconnected in between. Which pairs must end direct is the design's ground truth
(:func:`expected_direct`).
"""

from __future__ import annotations

import itertools
import statistics
import string
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from netlink.lab.builder import Lab
from netlink.lab.fleet import Fleet, FleetError, NodeSpec
from netlink.lab.nat import NatBehaviour
from netlink.lab.topology import Router
from netlink.lab.traversal import (
    INTRODUCER_CONFIG,
    Settled,
    member_config,
    stun_servers,
    wait_ready,
    wait_settled,
)

BEHAVIOURS = tuple(NatBehaviour)
CONE = (
    NatBehaviour.OPEN,
    NatBehaviour.FULL_CONE,
    NatBehaviour.RESTRICTED_CONE,
    NatBehaviour.PORT_RESTRICTED,
)
SYMMETRIC = (NatBehaviour.SYMMETRIC, NatBehaviour.SYMMETRIC_SEQUENTIAL)
CONNECT_TIMEOUT_S = 30.0
SETTLE_TIMEOUT_S = 20.0
MESSAGES, SIZE = 10, 200
STARTERS = 4  # nodes started at once (the machine has 2 cores)


def expected_direct(a: NatBehaviour, b: NatBehaviour) -> bool:
    """The ground truth (DESIGN.md "The NAT lab"): every pair of cone types punches; a symmetric
    side punches with an open, full-cone or restricted-cone side (its new mapping is let in),
    with a port-restricted one by the birthday technique (prediction when it allocates
    sequentially); two symmetric sides and any UDP-blocked side need the relay."""
    if NatBehaviour.UDP_BLOCKED in (a, b):
        return False
    return not (a in SYMMETRIC and b in SYMMETRIC)


def pairs_of(behaviours: Sequence[NatBehaviour] = BEHAVIOURS) -> Iterator[tuple[NatBehaviour, NatBehaviour]]:
    """Every unordered pair of ``behaviours``, each with itself included."""
    return itertools.combinations_with_replacement(behaviours, 2)


def router_plan(behaviours: Sequence[NatBehaviour]) -> list[tuple[str, NatBehaviour]]:
    """Two routers per behaviour, named A, B, C... in order."""
    letters = iter(string.ascii_uppercase)
    return [(next(letters), b) for b in behaviours for _ in range(2)]


@dataclass(frozen=True, slots=True)
class Run:
    connected: bool
    delivered: bool
    time_to_first_ms: float | None
    settled: Settled | None
    error: str | None = None

    @property
    def direct(self) -> bool:
        return self.delivered and self.settled is not None and self.settled.outcome == "direct"

    @property
    def final_kind(self) -> str | None:
        return None if self.settled is None else self.settled.active_kind


@dataclass(slots=True)
class PairResult:
    a: NatBehaviour
    b: NatBehaviour
    runs: list[Run] = field(default_factory=list)

    def count(self, predicate: Callable[[Run], bool]) -> int:
        return sum(1 for run in self.runs if predicate(run))

    def to_json(self) -> dict[str, Any]:
        firsts = [r.time_to_first_ms for r in self.runs if r.time_to_first_ms is not None]
        directs = [
            r.settled.time_to_direct_ms
            for r in self.runs
            if r.direct and r.settled is not None and r.settled.time_to_direct_ms is not None
        ]
        return {
            "a": self.a.value,
            "b": self.b.value,
            "runs": len(self.runs),
            "direct": self.count(lambda r: r.direct),
            "relay": self.count(lambda r: r.delivered and not r.direct and r.final_kind == "turn"),
            "tcp_tls": self.count(lambda r: r.delivered and not r.direct and r.final_kind == "tcp_tls"),
            "failed": self.count(lambda r: not r.delivered),
            "time_to_first_ms_p50": _p50(firsts),
            "time_to_direct_ms_p50": _p50(directs),
            "methods": sorted(
                {r.settled.method for r in self.runs if r.direct and r.settled and r.settled.method}
            ),
            "errors": [r.error for r in self.runs if r.error],
        }


def _p50(values: Sequence[float]) -> float | None:
    return None if not values else round(statistics.median(values), 1)


class Matrix:
    """The members and introducer of a matrix lab, started; ``pair`` measures one pair."""

    def __init__(self, lab: Lab, fleet: Fleet, behaviours: Sequence[NatBehaviour] = BEHAVIOURS) -> None:
        coturn = lab.coturn_config
        if coturn is None:
            raise ValueError("the matrix lab needs coturn")
        self.lab = lab
        self.fleet = fleet
        self.introducer = fleet.plan("O1")
        self.members: dict[tuple[NatBehaviour, int], NodeSpec] = {}
        self.routers: dict[str, Router] = {}  # by member host
        routers = iter(lab.topology.routers)
        for behaviour in behaviours:
            for k in (0, 1):
                router = next(routers)
                spec = self.members[behaviour, k] = fleet.plan(router.hosts[0].name)
                self.routers[spec.host] = router
        fleet.start(self.introducer, [], INTRODUCER_CONFIG)

        def start(item: tuple[tuple[NatBehaviour, int], NodeSpec]) -> None:
            (behaviour, _), spec = item
            fleet.start(
                spec, [], member_config(self.introducer, coturn, behaviour), stun=stun_servers(coturn)
            )
            wait_ready(fleet, spec)

        with ThreadPoolExecutor(STARTERS) as pool:
            list(pool.map(start, self.members.items()))

    def pair(self, x: NatBehaviour, y: NatBehaviour, runs: int = 1) -> PairResult:
        a, b = self.members[x, 0], self.members[y, 1]
        result = PairResult(x, y)
        for i in range(runs):
            if i:
                self._forget(a, b)
            result.runs.append(self._run(a, b))
        self._forget(a, b)  # the next pair starts from nothing
        return result

    def _forget(self, a: NodeSpec, b: NodeSpec) -> None:
        """Close the pair's paths and make their NATs forget the UDP flows between them, so the
        next run punches from nothing (pinholes a run left open would make it easy). The flows
        to coturn and the TCP links stay."""
        self.fleet.cli_json(a, "disconnect", b.peer_id)
        self.fleet.cli_json(b, "disconnect", a.peer_id)
        ra, rb = self.routers[a.host], self.routers[b.host]
        for router, other in ((ra, rb), (rb, ra)):
            for address in {other.wan, *(h.address for h in other.hosts)}:
                # Exit 1 when no flow matched: nothing to forget.
                self.lab.run(router.name, ["conntrack", "-D", "-p", "udp", "-d", str(address)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = [r for r in self.fleet.peers(a)["peers"] if r["peer_id"] == b.peer_id and r["paths"]]
            if not rows:
                return
            time.sleep(0.1)

    def _run(self, a: NodeSpec, b: NodeSpec) -> Run:
        try:
            connected = self.fleet.connect(a, b, timeout=CONNECT_TIMEOUT_S)
        except FleetError as exc:
            return Run(False, False, None, None, f"connect: {exc}")
        first = connected.get("time_to_first_ms")
        try:
            settled = wait_settled(self.fleet, a, b, SETTLE_TIMEOUT_S)
        except FleetError as exc:
            return Run(True, False, first, None, f"settle: {exc}")
        try:
            sent = self.fleet.send(a, b, MESSAGES, SIZE)
        except FleetError as exc:
            return Run(True, False, first, settled, f"send: {exc}")
        return Run(True, sent.get("acknowledged") == MESSAGES, first, settled)


def table(results: Sequence[PairResult]) -> str:
    """A readable table of ``results``."""
    head = (
        f"{'a':<22}{'b':<22}{'runs':>5}{'direct':>8}{'relay':>7}{'tls':>5}{'failed':>8}"
        f"{'first p50':>11}{'direct p50':>12}  method"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        doc = r.to_json()
        first = "-" if doc["time_to_first_ms_p50"] is None else f"{doc['time_to_first_ms_p50']:.0f} ms"
        direct = "-" if doc["time_to_direct_ms_p50"] is None else f"{doc['time_to_direct_ms_p50']:.0f} ms"
        lines.append(
            f"{doc['a']:<22}{doc['b']:<22}{doc['runs']:>5}{doc['direct']:>8}{doc['relay']:>7}"
            f"{doc['tcp_tls']:>5}{doc['failed']:>8}{first:>11}{direct:>12}  {','.join(doc['methods'])}"
        )
    return "\n".join(lines) + "\n"
