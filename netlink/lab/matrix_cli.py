"""``bitcraps-node lab matrix [--json] [--runs N] [--behaviours B,...]`` (root): the lab with
coturn and an introducer, two routers of each NAT behaviour with a node behind each, and every
pair of behaviours connected by peer id ``N`` times (:mod:`netlink.lab.matrix`; ``--behaviours``
narrows the pairs to those among some). JSON: ``{"pairs": [{"a", "b", "runs", "direct",
"relay", "tcp_tls", "failed", "time_to_first_ms_p50", "time_to_direct_ms_p50", "methods",
"errors"}]}``; a readable table without ``--json``. Exit 0 when every pair connected
every run, 1 otherwise. The lab is removed at the end."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from netlink.lab import builder, teardown
from netlink.lab.fleet import Fleet
from netlink.lab.matrix import BEHAVIOURS, Matrix, PairResult, pairs_of, router_plan, table
from netlink.lab.nat import NatBehaviour
from netlink.lab.topology import plan

MAX_RUNS = 100


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = sub.add_parser("matrix", help="connect nodes across every pair of NAT behaviours")
    parser.add_argument("--runs", type=int, default=1, help=f"runs per pair (1..{MAX_RUNS}, default 1)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument(
        "--behaviours",
        type=_behaviours,
        default=BEHAVIOURS,
        help="comma-separated behaviours to pair among (default: all seven)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where the nodes' files go (default: a temp dir)"
    )
    return parser


def _behaviours(text: str) -> tuple[NatBehaviour, ...]:
    try:
        chosen = tuple(NatBehaviour(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        known = ", ".join(b.value for b in NatBehaviour)
        raise argparse.ArgumentTypeError(f"{text!r}: behaviours are {known}") from None
    if not chosen or len(set(chosen)) != len(chosen):
        raise argparse.ArgumentTypeError(f"{text!r}: name each behaviour once")
    return chosen


def cmd_matrix(args: argparse.Namespace) -> int:
    if not 1 <= args.runs <= MAX_RUNS:
        sys.stderr.write(f"bitcraps-node lab matrix: --runs must be 1..{MAX_RUNS}\n")
        return 2
    for prefix in teardown.reap_stale():
        sys.stderr.write(f"removed lab {prefix} left by a process that died\n")
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bitcraps-matrix-"))
    behaviours: tuple[NatBehaviour, ...] = args.behaviours
    lab = builder.Lab.up(plan(router_plan(behaviours), open_hosts=1), with_coturn=True)
    fleet = Fleet(lab, root)
    results: list[PairResult] = []
    try:
        matrix = Matrix(lab, fleet, behaviours)
        for x, y in pairs_of(behaviours):
            result = matrix.pair(x, y, args.runs)
            results.append(result)
            if not args.json:
                sys.stderr.write(
                    f"{x.value} with {y.value}: {result.to_json()['direct']}/{args.runs} direct\n"
                )
    finally:
        try:
            fleet.stop()
        finally:
            lab.down()
    if args.json:
        print(json.dumps({"pairs": [r.to_json() for r in results]}))
    else:
        sys.stdout.write(table(results) + f"nodes' files: {root}\n")
    return 0 if all(r.to_json()["failed"] == 0 for r in results) else 1
