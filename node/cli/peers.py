"""``bitcraps-node peers [--json]``: every peer the running node knows, its active path and each
path's state, health, score, RTT, loss and breaker. JSON: ``{"peers": [{"peer_id", "active":
{"kind", "endpoint"}, "paths": [{"kind", "endpoint", "state", "health", "score", "rtt_ms", "loss",
"breaker"}]}]}`` (health: ``optimal``, ``good``, ``degraded``, ``critical`` or ``failed``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from node.cli.app_client import add_node_options, ask
from node.cli.output import EXIT_OK
from node.services.control import CLIENT_TIMEOUT_S


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("peers", help="the running node's peers and their paths")
    add_node_options(parser)
    parser.set_defaults(func=cmd_peers)


def cmd_peers(args: argparse.Namespace) -> int:
    reply = ask(args, "peers", None, timeout=CLIENT_TIMEOUT_S)
    if isinstance(reply, int):
        return reply
    if args.json:
        print(json.dumps(reply))
        return EXIT_OK
    if not reply["peers"]:
        print("no peers")
    for peer in reply["peers"]:
        active = peer["active"]
        where = "no active path" if active is None else f"active {active['kind']} {active['endpoint']}"
        print(f"{peer['peer_id']}  {where}")
        for path in peer["paths"]:
            print(f"  {_path_line(path)}")
    return EXIT_OK


def _path_line(path: dict[str, Any]) -> str:
    rtt = "-" if path["rtt_ms"] is None else f"{path['rtt_ms']:.1f} ms"
    loss = "-" if path["loss"] is None else f"{path['loss']:.1%}"
    return (
        f"{path['kind']:<8} {path['endpoint']:<24} {path['state']:<8} score {path['score']:.3f}"
        f"  rtt {rtt}  loss {loss}  breaker {path['breaker']}"
    )
