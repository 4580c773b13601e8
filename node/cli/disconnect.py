"""``bitcraps-node disconnect PEER_ID [--json]``: ask the running node to close every path to a
peer (a static peer is dialled again by the node; another only when asked). JSON: ``peer_id``,
``closed`` (the kinds of path closed; empty when there were none)."""

from __future__ import annotations

import argparse
import json

from node.cli.app_client import add_node_options, ask, peer_id
from node.cli.output import EXIT_OK
from node.services.control import CLIENT_TIMEOUT_S


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("disconnect", help="close every path to a peer")
    parser.add_argument("peer_id", metavar="PEER_ID", type=peer_id)
    add_node_options(parser)
    parser.set_defaults(func=cmd_disconnect)


def cmd_disconnect(args: argparse.Namespace) -> int:
    reply = ask(args, "disconnect", {"peer_id": args.peer_id}, timeout=CLIENT_TIMEOUT_S)
    if isinstance(reply, int):
        return reply
    if args.json:
        print(json.dumps(reply))
        return EXIT_OK
    closed = ", ".join(reply["closed"]) or "no paths"
    print(f"disconnected {reply['peer_id']}: {closed}")
    return EXIT_OK
