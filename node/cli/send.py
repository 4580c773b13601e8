"""``bitcraps-node send PEER_ID [--priority P] [--unreliable] [--count N] [--size BYTES] [--json]
[TEXT | -]``: send TEXT (``-``: stdin's bytes as one message), or N generated messages of BYTES
each (message i starts with i as 8 bytes big-endian), through the running node.

Exit 0 only when every reliable message was acknowledged (unreliable: sent once); 1 with the
reason on stderr (``unknown_peer``, ``no_path``, ``delivery_failed``, ``too_large``). JSON:
``peer_id``, ``sent``, ``acknowledged``, ``paths`` (messages per path kind), ``elapsed_ms``.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys

from node.cli.app_client import add_node_options, ask, peer_id
from node.cli.output import EXIT_OK, EXIT_USAGE, fail
from node.services.app_args import INDEX_BYTES, MAX_COUNT, MAX_SIZE, PriorityName
from node.services.app_control import SEND_TIMEOUT_S


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("send", help="send messages to a peer through the running node")
    parser.add_argument("peer_id", metavar="PEER_ID", type=peer_id)
    parser.add_argument("text", metavar="TEXT", nargs="?", help="the message; '-' reads it from stdin")
    parser.add_argument(
        "--priority", choices=[p.value for p in PriorityName], default=PriorityName.NORMAL.value
    )
    parser.add_argument("--unreliable", action="store_true", help="send once, never resend or wait for ACKs")
    parser.add_argument("--count", type=int, help="send N generated messages instead of TEXT")
    parser.add_argument("--size", type=int, help="bytes per generated message (default 64)")
    add_node_options(parser)
    parser.set_defaults(func=cmd_send, late_positional="text")


def cmd_send(args: argparse.Namespace) -> int:
    request: dict[str, object] = {
        "peer_id": args.peer_id,
        "priority": args.priority,
        "reliable": not args.unreliable,
    }
    if args.count is not None:
        if args.text is not None:
            return fail("give TEXT (or -) or --count, not both", EXIT_USAGE)
        if not 1 <= args.count <= MAX_COUNT:
            return fail(f"--count must be between 1 and {MAX_COUNT}", EXIT_USAGE)
        if args.size is not None and not INDEX_BYTES <= args.size <= MAX_SIZE:
            return fail(f"--size must be between {INDEX_BYTES} (the index) and {MAX_SIZE}", EXIT_USAGE)
        request.update(count=args.count, size=args.size)
    elif args.text is None:
        return fail("nothing to send: give TEXT, - (stdin) or --count", EXIT_USAGE)
    elif args.size is not None:
        return fail("--size goes with --count", EXIT_USAGE)
    else:
        data = sys.stdin.buffer.read() if args.text == "-" else args.text.encode()
        request["messages_b64"] = [base64.b64encode(data).decode("ascii")]
    # Acknowledgements, retries included, may take long: the node bounds the command.
    reply = ask(args, "send", request, timeout=SEND_TIMEOUT_S + 10, oversize="too_large")
    if isinstance(reply, int):
        return reply
    if args.json:
        print(json.dumps(reply))
        return EXIT_OK
    kinds = ", ".join(f"{kind} {n}" for kind, n in reply["paths"].items()) or "none"
    print(
        f"sent {reply['sent']}, acknowledged {reply['acknowledged']} to {reply['peer_id']}"
        f" in {reply['elapsed_ms']:.0f} ms (paths: {kinds})"
    )
    return EXIT_OK
