"""Connecting by peer id across NATs (issue 16), with real node processes in the lab: per pair of
NAT behaviours, the median and p95 time to the first working path (``connect``'s
``time_to_first_ms``) and to the direct path (the punch proven, ``peers``' traversal), and the
share of pairs that end direct, against the seed's decision matrix (direct only between open,
full-cone and restricted-cone NATs) and libp2p DCUtR's field figure (70 % +- 7.1 %).

Goals: first path < 100 ms; direct < 500 ms for punchable pairs, < 3 s with the birthday
technique; every pair direct but those of two symmetric NATs (and a UDP-blocked side, which has
no UDP to punch with). ``--quick``: one pair per technique, 2 runs each (CI); the default: all 28
pairs, 5 runs each (--runs N).

    sudo .venv/bin/python bench/connect.py [--quick] [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from netlink.lab.builder import Lab, missing_prerequisites
from netlink.lab.fleet import Fleet
from netlink.lab.matrix import BEHAVIOURS, Matrix, PairResult, expected_direct, pairs_of, router_plan, table
from netlink.lab.nat import NatBehaviour
from netlink.lab.topology import plan

B = NatBehaviour
# One pair per technique: host, srflx, prflx, birthday, prediction, relay (UDP blocked; symmetric).
QUICK = (
    (B.OPEN, B.OPEN),
    (B.PORT_RESTRICTED, B.PORT_RESTRICTED),
    (B.FULL_CONE, B.SYMMETRIC),
    (B.PORT_RESTRICTED, B.SYMMETRIC),
    (B.SYMMETRIC_SEQUENTIAL, B.PORT_RESTRICTED),
    (B.UDP_BLOCKED, B.PORT_RESTRICTED),
    (B.SYMMETRIC, B.SYMMETRIC),
)
SEED_DIRECT = (B.OPEN, B.FULL_CONE, B.RESTRICTED_CONE)  # the matrix's "UDP hole punching" rows
DCUTR_SHARE = 0.70
FIRST_GOAL_MS = 100.0
DIRECT_GOAL_MS = 500.0
BIRTHDAY_GOAL_MS = 3000.0


def _pct(values: Sequence[float], q: float) -> float | None:
    """The median for q 0.5 (as the matrix's table), else the nearest rank."""
    if not values:
        return None
    if q == 0.5:
        return statistics.median(values)
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def report(results: Sequence[PairResult]) -> None:
    print(table(results), end="")
    print(f"\n{'pair':<44}{'first p50':>10}{'p95':>9}{'direct p50':>12}{'p95':>9}  goal")
    firsts_all: list[float] = []
    for r in results:
        firsts = [x.time_to_first_ms for x in r.runs if x.time_to_first_ms is not None]
        directs = [
            x.settled.time_to_direct_ms
            for x in r.runs
            if x.direct and x.settled is not None and x.settled.time_to_direct_ms is not None
        ]
        firsts_all += firsts
        birthday = {r.a, r.b} == {B.PORT_RESTRICTED, B.SYMMETRIC}
        goal = BIRTHDAY_GOAL_MS if birthday else DIRECT_GOAL_MS
        d95 = _pct(directs, 0.95)
        met = "-" if not directs else ("met" if d95 is not None and d95 < goal else "NOT met")
        print(
            f"{r.a.value + ' / ' + r.b.value:<44}{_ms(_pct(firsts, 0.5)):>10}{_ms(_pct(firsts, 0.95)):>9}"
            f"{_ms(_pct(directs, 0.5)):>12}{_ms(d95):>9}  direct < {goal:.0f} ms: {met}"
        )
    udp = [r for r in results if B.UDP_BLOCKED not in (r.a, r.b)]
    ours = sum(1 for r in udp if r.runs and all(x.direct for x in r.runs))
    seed = sum(1 for r in udp if r.a in SEED_DIRECT and r.b in SEED_DIRECT)
    punchable = sum(1 for r in udp if expected_direct(r.a, r.b))
    share = ours / len(udp) if udp else 0.0
    first95 = _pct(firsts_all, 0.95)
    print(
        f"\npairs with UDP ending direct in every run: {ours}/{len(udp)} ({share:.0%});"
        f" punchable by the ground truth: {punchable}; the seed's matrix: {seed}/{len(udp)}"
        f" (ratio ours/seed {ours / seed if seed else float('inf'):.2f});"
        f" libp2p DCUtR in the field: {DCUTR_SHARE:.0%} (ratio {share / DCUTR_SHARE:.2f})"
    )
    first_met = first95 is not None and first95 < FIRST_GOAL_MS
    print(
        f"first path over all runs: p50 {_ms(_pct(firsts_all, 0.5))}, p95 {_ms(first95)}"
        f" (goal < {FIRST_GOAL_MS:.0f} ms: {'met' if first_met else 'NOT met'})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one pair per technique, 2 runs (CI)")
    parser.add_argument("--runs", type=int, help="runs per pair (default 5, 2 with --quick)")
    args = parser.parse_args()
    missing = missing_prerequisites()
    if missing:
        print(f"connect: skipped, the NAT lab needs {', '.join(p.value for p in missing)}")
        return 0
    runs = args.runs or (2 if args.quick else 5)
    pairs = QUICK if args.quick else tuple(pairs_of(BEHAVIOURS))
    behaviours = tuple(b for b in BEHAVIOURS if any(b in pair for pair in pairs))
    started = time.monotonic()
    lab = Lab.up(plan(router_plan(behaviours), open_hosts=1), with_coturn=True)
    fleet = Fleet(lab, Path(tempfile.mkdtemp(prefix="bench-connect-")))
    try:
        matrix = Matrix(lab, fleet, behaviours)
        results = [matrix.pair(a, b, runs) for a, b in pairs]
    finally:
        try:
            fleet.stop()
        finally:
            lab.down()
    report(results)
    print(f"  ({time.monotonic() - started:.0f} s, {runs} runs per pair)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
