"""``bitcraps-node connect PEER_ID [URI ...] [--timeout S] [--json]``: ask the running node to
reach a peer by its id (at ``udp://H:P`` / ``tls://H:P``; without addresses at its static
addresses and through the introducers, or waiting for it to connect) and wait until a path works.
JSON: ``peer_id``, ``path`` ({``kind``, ``endpoint``}), ``paths``, ``direct``, ``method``,
``time_to_first_ms``, ``time_to_direct_ms`` (null until a punch proved a direct path: ``peers``
shows the upgrade when it comes later), ``elapsed_ms``. Exit 1 with the reason (``connect_failed``,
``no_path``) on stderr when no path came up."""

from __future__ import annotations

import argparse
import json

from node.cli.app_client import add_node_options, ask, peer_id
from node.cli.output import EXIT_OK, EXIT_USAGE, fail
from node.proto.peer_uri import PeerUriError, parse_peer_uri

# How long the reply may take beyond the connect's own timeout (when none is given, the node's
# transport.connect_timeout_s applies, at most 600 s).
_REPLY_MARGIN_S = 10.0
_MAX_WAIT_S = 600.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("connect", help="reach a peer by its id through the running node")
    parser.add_argument("peer_id", metavar="PEER_ID", type=peer_id)
    parser.add_argument("uris", metavar="URI", nargs="*", help="udp://HOST:PORT or tls://HOST:PORT")
    parser.add_argument("--timeout", type=float, help="seconds to wait for a path (default: the node's)")
    add_node_options(parser)
    parser.set_defaults(func=cmd_connect, late_positional="uris")


def cmd_connect(args: argparse.Namespace) -> int:
    for uri in args.uris:
        try:
            parse_peer_uri(uri)
        except PeerUriError as exc:
            return fail(f"{uri!r}: {exc}", EXIT_USAGE)
    if args.timeout is not None and not 0 < args.timeout <= _MAX_WAIT_S:
        return fail(f"--timeout must be above 0 and at most {_MAX_WAIT_S:g} seconds", EXIT_USAGE)
    request = {"peer_id": args.peer_id, "uris": list(args.uris), "timeout_s": args.timeout}
    wait = (args.timeout or _MAX_WAIT_S) + _REPLY_MARGIN_S
    reply = ask(args, "connect", request, timeout=wait)
    if isinstance(reply, int):
        return reply
    if args.json:
        print(json.dumps(reply))
        return EXIT_OK
    path = reply["path"]
    others = ", ".join(f"{p['kind']} {p['endpoint']}" for p in reply["paths"])
    how = "direct" if reply["direct"] else "relayed"
    print(
        f"connected to {reply['peer_id']} over {path['kind']} {path['endpoint']} ({how}, {reply['method']})"
        f" in {reply['elapsed_ms']:.0f} ms (paths: {others})"
    )
    return EXIT_OK
