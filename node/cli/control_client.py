"""The client side of the control socket (``bitcraps-node status``): one blocking request, one
reply, the node's typed errors raised as ``Refused``. See node/services/control.py for the server."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path
from typing import Any

from node.os_errors import os_reason
from node.services.control import CLIENT_TIMEOUT_S, SEND_TIMEOUT_S, ControlError, ErrorCode

# A node serving MAX_CLIENTS frees a slot within CLIENT_TIMEOUT_S + SEND_TIMEOUT_S, so a client
# told too_many_clients that retries for a little longer is answered unless new clients keep coming.
BUSY_RETRY_S = CLIENT_TIMEOUT_S + SEND_TIMEOUT_S + 1.0


class NotRunning(ControlError):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"no node is running (control socket {path}: {reason})")
        self.path = path


class Refused(ControlError):
    """The node answered with a typed error; ``code`` is None for a code this version does not know."""

    def __init__(self, path: Path, code: ErrorCode | None, message: str) -> None:
        super().__init__(f"the node refused the request ({code or 'unknown code'}): {message}")
        self.path = path
        self.code = code
        self.detail = message


def request(
    path: Path, command: str, timeout: float = CLIENT_TIMEOUT_S, busy_retry: float = BUSY_RETRY_S
) -> dict[str, Any]:
    """Send one command to a running node (blocking; the CLI's side) and return its result.

    Raises NotRunning, Refused (the node's typed error) or ControlError. A node busy with
    MAX_CLIENTS clients is asked again, with backoff, for up to ``busy_retry`` seconds.
    """
    deadline = time.monotonic() + busy_retry
    pause = 0.05
    while True:
        try:
            return _request_once(path, command, timeout)
        except Refused as exc:
            left = deadline - time.monotonic()
            if exc.code is not ErrorCode.TOO_MANY_CLIENTS or left <= 0:
                raise
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.5)


def _request_once(path: Path, command: str, timeout: float) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except FileNotFoundError as exc:
            raise NotRunning(path, "not found") from exc
        except ConnectionRefusedError as exc:
            raise NotRunning(path, "refused; stale socket") from exc
        except OSError as exc:
            raise NotRunning(path, os_reason(exc)) from exc
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            # A node refusing us (too many clients) replies and closes before reading: its
            # reply may already wait below even though our request could not be sent.
            s.sendall(json.dumps({"command": command}).encode() + b"\n")
        data = b""
        try:
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise ControlError(f"control socket {path}: reading the reply failed: {os_reason(exc)}") from exc
    if not data:
        raise ControlError(f"control socket {path}: the node closed the connection without a reply")
    try:
        reply = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ControlError(f"control socket {path}: unreadable reply ({exc})") from exc
    if not isinstance(reply, dict):
        raise ControlError(f"control socket {path}: the reply is not a JSON object")
    error = reply.get("error")
    if error is not None:
        raise _refused(path, error)
    return reply


def _refused(path: Path, error: object) -> Refused:
    if not isinstance(error, dict):  # a node before typed errors: {"error": "text"}
        return Refused(path, None, str(error))
    raw, message = error.get("code"), error.get("message")
    # A code this version does not know (a newer node) is None; the message still says what happened.
    code = next((known for known in ErrorCode if known.value == raw), None)
    return Refused(path, code, str(message or f"error code {raw!r} without a message"))
