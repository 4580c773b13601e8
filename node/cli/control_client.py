"""The client side of the control socket (``bitcraps-node status``): one blocking request, one
reply (``request``), or the lines of a stream (``stream``); the node's typed errors raised as
``Refused``. See node/services/control.py for the server."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from node.os_errors import os_reason
from node.services.control import CLIENT_TIMEOUT_S, SEND_TIMEOUT_S, ControlError
from node.services.control_errors import ErrorCode

# A stream line carries at most one message (1 MiB by default, 64 MiB at most, in base64) and its
# fields: a longer line is not from a sane node, and is not read whole.
MAX_LINE_BYTES = 96 << 20

# A node serving MAX_CLIENTS frees a slot within CLIENT_TIMEOUT_S + SEND_TIMEOUT_S, so a client
# told too_many_clients that retries for a little longer is answered unless new clients keep coming.
BUSY_RETRY_S = CLIENT_TIMEOUT_S + SEND_TIMEOUT_S + 1.0


class NotRunning(ControlError):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"no node is running (control socket {path}: {reason})")
        self.path = path


class Refused(ControlError):
    """The node answered with a typed error; ``code`` is None for a code this version does not know;
    ``reason`` is the command's own reason when it gave one (``send``: ``unknown_peer``...)."""

    def __init__(self, path: Path, code: ErrorCode | None, message: str, reason: str | None = None) -> None:
        super().__init__(f"the node refused the request ({reason or code or 'unknown code'}): {message}")
        self.path = path
        self.code = code
        self.detail = message
        self.why = reason


def request(
    path: Path,
    command: str,
    timeout: float = CLIENT_TIMEOUT_S,
    busy_retry: float = BUSY_RETRY_S,
    args: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Send one command to a running node (blocking; the CLI's side) and return its result.
    ``timeout`` bounds each wait on the socket: for a command that takes a while (``connect``),
    give at least its own timeout.

    Raises NotRunning, Refused (the node's typed error) or ControlError. A node busy with
    MAX_CLIENTS clients is asked again, with backoff, for up to ``busy_retry`` seconds.
    """
    deadline = time.monotonic() + busy_retry
    pause = 0.05
    while True:
        try:
            return _request_once(path, _request_line(command, args), timeout)
        except Refused as exc:
            left = deadline - time.monotonic()
            if exc.code is not ErrorCode.TOO_MANY_CLIENTS or left <= 0:
                raise
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.5)


def stream(
    path: Path, command: str, args: Mapping[str, Any] | None = None, timeout: float = CLIENT_TIMEOUT_S
) -> Iterator[dict[str, Any]]:
    """The items of a streaming command, as the node writes them, until it ends the stream
    (closing the generator closes the connection, which ends the stream on the node). Waits
    for each item as long as it takes; ``timeout`` bounds connecting and sending the request.
    Raises NotRunning, Refused (for an error line, the stream's first or last) or ControlError."""
    with _connect(path, timeout) as s:
        s.sendall(_request_line(command, args))
        s.settimeout(None)
        with s.makefile("rb") as lines:
            while True:
                try:
                    line = lines.readline(MAX_LINE_BYTES + 1)
                except OSError as exc:
                    raise ControlError(
                        f"control socket {path}: reading the stream failed: {os_reason(exc)}"
                    ) from exc
                if not line:
                    return
                if len(line) > MAX_LINE_BYTES:
                    raise ControlError(f"control socket {path}: a stream line over {MAX_LINE_BYTES} bytes")
                yield _reply(path, line)


def _request_line(command: str, args: Mapping[str, Any] | None) -> bytes:
    request: dict[str, Any] = {"command": command}
    if args is not None:
        request["args"] = dict(args)
    return json.dumps(request).encode() + b"\n"


def _connect(path: Path, timeout: float) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except OSError as exc:
        s.close()
        if isinstance(exc, FileNotFoundError):
            raise NotRunning(path, "not found") from exc
        if isinstance(exc, ConnectionRefusedError):
            raise NotRunning(path, "refused; stale socket") from exc
        raise NotRunning(path, os_reason(exc)) from exc
    return s


def _request_once(path: Path, line: bytes, timeout: float) -> dict[str, Any]:
    with _connect(path, timeout) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            # A node refusing us (too many clients) replies and closes before reading: its
            # reply may already wait below even though our request could not be sent.
            s.sendall(line)
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
    return _reply(path, data)


def _reply(path: Path, data: bytes) -> dict[str, Any]:
    """One reply or stream line as a result; the node's error line raised as Refused."""
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
    reason = error.get("reason")
    return Refused(
        path,
        code,
        str(message or f"error code {raw!r} without a message"),
        reason if isinstance(reason, str) else None,
    )
