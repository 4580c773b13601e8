"""``bitcraps-node listen [--json]``: received messages and peer events from the running node, one
line each, written and flushed as each happens, until SIGINT or SIGTERM (exit 0). Each message
goes to one listener (the node's inbox is a work queue). JSON lines:
``{"type": "message", "peer_id", "message_id", "priority", "path", "data_b64"}`` and
``{"type": "peer", "peer_id", "state": "connected"|"disconnected", "path": {"kind", "endpoint"}}``.
Exit 1 when the node ends the stream (it stopped), 3 when none runs."""

from __future__ import annotations

import argparse
import base64
import json
import signal
from types import FrameType
from typing import Any

from node.cli import control_client
from node.cli.app_client import add_node_options, refusal_exit, socket_of
from node.cli.output import EXIT_FAILURE, EXIT_NOT_RUNNING, EXIT_OK, fail
from node.services import control


class _Stopped(Exception):
    """SIGTERM: end like SIGINT does."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("listen", help="print messages and peer events as the node receives them")
    add_node_options(parser)
    parser.set_defaults(func=cmd_listen)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


def cmd_listen(args: argparse.Namespace) -> int:
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        # The request is sent and the socket stays open for writing: the node ends the stream
        # when this side closes (or half-closes) it.
        for item in control_client.stream(socket_of(args), "listen"):
            print(json.dumps(item) if args.json else _text(item), flush=True)
    except (KeyboardInterrupt, _Stopped):
        return EXIT_OK
    except control_client.Refused as exc:
        return refusal_exit("listen", exc)
    except control_client.NotRunning as exc:
        return fail(str(exc), EXIT_NOT_RUNNING)
    except control.ControlError as exc:
        return fail(f"listen: {exc}", EXIT_FAILURE)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return fail("listen: the node ended the stream (it is stopping)", EXIT_FAILURE)


def _text(item: dict[str, Any]) -> str:
    if item.get("type") == "message":
        data = base64.b64decode(item["data_b64"])
        text = data.decode("utf-8", errors="replace")
        shown = text if text.isprintable() else f"{len(data)} bytes"
        return (
            f"message {item['message_id']} from {item['peer_id']}"
            f" ({item['priority']}, {item['path']}): {shown}"
        )
    path = item.get("path") or {}
    return f"peer {item.get('peer_id')} {item.get('state')} via {path.get('kind')} {path.get('endpoint')}"
