"""What the application API's commands (``connect``, ``send``, ``listen``, ``peers``) share: the
node found like ``status`` does (``--runtime-dir`` or the same lookup), one request, and the
node's refusals as exit codes (1 with the typed reason on stderr, 2 usage, 3 no node running)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from node import paths
from node.cli import control_client
from node.cli.output import EXIT_FAILURE, EXIT_NOT_RUNNING, EXIT_USAGE, fail
from node.cli.status import refused_exit
from node.proto.peer_uri import is_peer_id
from node.services import control


def peer_id(text: str) -> str:
    """argparse's type for PEER_ID: a malformed one is a usage error (exit 2)."""
    if not is_peer_id(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a peer id (52 base32 characters)")
    return text


def add_node_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="JSON on stdout")
    parser.add_argument("--runtime-dir", type=Path, help="where the running node's control socket lives")


def socket_of(args: argparse.Namespace) -> Path:
    return paths.resolve_dirs(None, args.runtime_dir).control_socket


def ask(
    args: argparse.Namespace,
    command: str,
    request: Mapping[str, Any] | None,
    timeout: float,
    oversize: str | None = None,
) -> dict[str, Any] | int:
    """The node's result, or the exit code after saying why on stderr. ``oversize``: the reason
    to give when the request line was too large (``send``: its message was)."""
    try:
        return control_client.request(socket_of(args), command, timeout=timeout, args=request)
    except control_client.Refused as exc:
        if oversize is not None and exc.code is control.ErrorCode.REQUEST_TOO_LARGE:
            return fail(f"{command} failed ({oversize}): {exc.detail}", EXIT_FAILURE)
        return refusal_exit(command, exc)
    except control_client.NotRunning as exc:
        return fail(str(exc), EXIT_NOT_RUNNING)
    except control.ControlError as exc:
        return fail(f"{command}: {exc}", EXIT_FAILURE)


def refusal_exit(command: str, exc: control_client.Refused) -> int:
    """A reason of the command's own: exit 1 with it first on stderr; a request the node found
    malformed is a usage error (2); the rest as ``status`` reports them."""
    if exc.why is not None:
        return fail(f"{command} failed ({exc.why}): {exc.detail}", EXIT_FAILURE)
    if exc.code is control.ErrorCode.BAD_REQUEST:
        return fail(f"{command}: the node rejected the arguments: {exc.detail}", EXIT_USAGE)
    return refused_exit(exc)
