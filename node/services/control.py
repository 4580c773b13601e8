"""The control socket: a unix stream socket in the runtime directory that ``bitcraps-node status``
queries. One JSON request line in, one JSON response line out: the command's result, or
``{"error": {"code": <ErrorCode>, "message": <text>}}``.

Only the owner can connect (the socket is 0600 in a 0700 directory), so whoever connects is the
operator or acts for them; still, nothing one client does may hurt the node. Requests are capped
in size (MAX_REQUEST_BYTES) and time (CLIENT_TIMEOUT_S), at most MAX_CLIENTS are served at once
(the next is told ``too_many_clients`` at once and closed, so descriptors stay bounded), and each
client runs behind the service's ConnectionIsolation wall: a fault closes that client, is logged
once and counted in ``status`` under ``control.faults``.

The server owns its accept loop and its clients' tasks in its own TaskGroup instead of using
``asyncio.start_unix_server``, whose handler tasks belong to no TaskGroup (STYLE.md): at close
they were cancelled by the loop's shutdown and each logged an error-level CancelledError
traceback, and nothing could cap how many ran at once. Here closing cancels them quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from node.errors import LocalError, NodeError, ReasonError, RemoteError
from node.os_errors import os_reason
from node.services.service import Service
from node.transports.isolation import ConnectionIsolation

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
CLIENT_TIMEOUT_S = 5.0  # to send a whole request line
SEND_TIMEOUT_S = 1.0  # to take the reply (a few KiB: it fits a fresh socket's buffer)
MAX_CLIENTS = 16
LISTEN_BACKLOG = 128
ACCEPT_BACKOFF_S = 0.1
READ_CHUNK = 4096

Commands = Mapping[str, Callable[[], dict[str, Any]]]


class ErrorCode(StrEnum):
    """Why the node did not answer a request with a result (``error.code`` on the wire)."""

    BAD_REQUEST = "bad_request"  # not one JSON object line with a "command" string
    UNKNOWN_COMMAND = "unknown_command"
    REQUEST_TOO_LARGE = "request_too_large"  # no end of line within MAX_REQUEST_BYTES
    TIMEOUT = "timeout"  # no whole request line within CLIENT_TIMEOUT_S
    TOO_MANY_CLIENTS = "too_many_clients"  # MAX_CLIENTS are being served
    COMMAND_FAILED = "command_failed"  # the command could not answer (see the message)


class ControlError(LocalError):
    """The control socket cannot be served or reached."""


class AlreadyRunning(ControlError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"another node is already running (control socket {path} answers)")
        self.path = path


class RequestError(ReasonError[ErrorCode], RemoteError):
    """What a control client sent cannot be answered; the client is told ``code`` (the
    ``reason``, named as on the wire) and ``detail``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(code, message)

    @property
    def code(self) -> ErrorCode:
        return self.reason


@dataclass(frozen=True, slots=True)
class ControlView:
    """What ``status`` shows under ``control``."""

    clients: int  # being served now (the one asking for status included)
    max_clients: int
    served: int  # requests answered with a result
    refused: int  # clients told too_many_clients
    errors: dict[str, int]  # other typed error replies, by code
    faults: dict[str, int]  # clients closed by a fault the isolation wall contained, by type

    def to_json(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "max_clients": self.max_clients,
            "served": self.served,
            "refused": self.refused,
            "errors": dict(self.errors),
            "faults": dict(self.faults),
        }


def error_reply(code: ErrorCode, message: str) -> bytes:
    return json.dumps({"error": {"code": code.value, "message": message}}).encode() + b"\n"


class ControlServer(Service[ControlView]):
    """Built from where it listens and what it answers (the daemon's commands), not from the
    Config: nothing in it is configured."""

    name = "control"

    def __init__(self, path: Path, commands: Commands, max_clients: int = MAX_CLIENTS) -> None:
        super().__init__()
        self._path = path
        self._commands = commands
        self._max_clients = max_clients
        self.isolation = ConnectionIsolation("control")
        self._tasks: asyncio.TaskGroup | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._numbered = 0
        self._served = 0
        self._refused = 0
        self._errors: Counter[ErrorCode] = Counter()
        self._full_logged = False

    async def _start(self, stack: AsyncExitStack) -> None:
        if self._path.exists() or self._path.is_symlink():
            if _answers(self._path):
                raise AlreadyRunning(self._path)
            self._path.unlink()  # left behind by a node that did not stop cleanly
        listener = _listen(self._path)
        stack.callback(self._unlink)
        stack.callback(listener.close)
        self._tasks = await stack.enter_async_context(asyncio.TaskGroup())
        stack.callback(self._cancel_all)  # runs before the TaskGroup waits for its tasks
        self._accept_task = self._tasks.create_task(self._accept_loop(listener), name="control-accept")

    def _cancel_all(self) -> None:
        # Clients are capped in time anyway; the node's exit does not wait for them.
        if self._accept_task is not None:
            self._accept_task.cancel()
        for task in self._clients:
            task.cancel()

    def _unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def status(self) -> ControlView:
        return ControlView(
            clients=len(self._clients),
            max_clients=self._max_clients,
            served=self._served,
            refused=self._refused,
            errors={code.value: n for code, n in sorted(self._errors.items())},
            faults=self.isolation.snapshot(),
        )

    # -- clients --------------------------------------------------------------------------

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:
                # Out of file descriptors or memory: back off a moment rather than spin.
                log.warning("control socket: accept failed: %s", os_reason(exc))
                await asyncio.sleep(ACCEPT_BACKOFF_S)
                continue
            conn.setblocking(False)
            if len(self._clients) >= self._max_clients:
                self._refuse(conn)
                continue
            self._full_logged = False
            self._numbered += 1
            who = f"control client {self._numbered}"
            assert self._tasks is not None
            task = self._tasks.create_task(
                self.isolation.run_later(functools.partial(self._serve, conn), who, conn.close)
            )
            self._clients.add(task)
            # Closed however the task ends, even cancelled before it started.
            task.add_done_callback(functools.partial(self._done, conn))

    def _done(self, conn: socket.socket, task: asyncio.Task[None]) -> None:
        self._clients.discard(task)
        conn.close()

    def _refuse(self, conn: socket.socket) -> None:
        """Tell the client why, without waiting for anything, and close it."""
        self._refused += 1
        if not self._full_logged:
            self._full_logged = True  # once per episode: a flood of clients is not a flood of logs
            log.warning(
                "control socket: %d clients at once; refusing more until one ends", len(self._clients)
            )
        message = f"the node is serving {self._max_clients} control clients; try again"
        try:
            conn.send(error_reply(ErrorCode.TOO_MANY_CLIENTS, message))
        except OSError as exc:  # a full buffer or a client already gone: it only loses its answer
            log.debug("control socket: refusal not delivered: %r", exc)
        finally:
            conn.close()

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CLIENT_TIMEOUT_S):
                line = await _read_line(loop, conn)
        except TimeoutError:
            reply = self._error(
                RequestError(ErrorCode.TIMEOUT, f"no whole request line within {CLIENT_TIMEOUT_S:g} s")
            )
        except RequestError as exc:
            reply = self._error(exc)
        except ConnectionError as exc:
            log.debug("control client left: %r", exc)
            return
        else:
            if line is None:
                return  # connected and left without a word: another node checking we are alive
            reply = self._answer(line)
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await loop.sock_sendall(conn, reply)
        except (TimeoutError, ConnectionError) as exc:
            log.debug("control client did not take its reply: %r", exc)

    def _answer(self, line: bytes) -> bytes:
        try:
            command = _parse(line)
            handler = self._commands.get(command)
            if handler is None:
                raise RequestError(ErrorCode.UNKNOWN_COMMAND, f"no command {command!r}")
            result = self.isolation.call(_invoke, f"control command {command}", handler)
            if result is None:
                raise RequestError(
                    ErrorCode.COMMAND_FAILED,
                    f"{command} failed on a fault in the node (logged, counted in status control.faults)",
                )
            if isinstance(result, NodeError):
                # A command that cannot answer (e.g. a service mid-shutdown) says so to the client.
                log.warning("control command %s failed: %s", command, result)
                raise RequestError(ErrorCode.COMMAND_FAILED, f"{command} failed: {result}")
        except RequestError as exc:
            return self._error(exc)
        self._served += 1
        return json.dumps(result).encode() + b"\n"

    def _error(self, exc: RequestError) -> bytes:
        self._errors[exc.code] += 1
        log.info("control request failed: %s", exc)
        return error_reply(exc.code, exc.detail)


def _invoke(handler: Callable[[], dict[str, Any]]) -> dict[str, Any] | NodeError:
    """A command's result, or the typed error it raised (anything else is a fault for the wall)."""
    try:
        return handler()
    except NodeError as exc:
        return exc


async def _read_line(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes | None:
    """One request line (without its newline); None if the client sent nothing before leaving.
    A client that half-closes instead of ending its line has sent what it came with."""
    buf = bytearray()
    while True:
        chunk = await loop.sock_recv(conn, READ_CHUNK)
        if not chunk:
            return bytes(buf) if buf else None
        end = chunk.find(b"\n")
        buf += chunk if end < 0 else chunk[:end]
        if len(buf) > MAX_REQUEST_BYTES:
            raise RequestError(ErrorCode.REQUEST_TOO_LARGE, f"request line over {MAX_REQUEST_BYTES} bytes")
        if end >= 0:
            return bytes(buf)


def _parse(line: bytes) -> str:
    """The command a request line names. Raises RequestError(BAD_REQUEST)."""
    try:
        request = json.loads(line)
    except RecursionError as exc:
        # json recurses per nesting level: "[" * 60000 fits the size cap and exhausts the stack.
        raise RequestError(ErrorCode.BAD_REQUEST, "request nests too deeply to parse") from exc
    except ValueError as exc:  # not JSON, or not UTF-8 (UnicodeDecodeError)
        raise RequestError(ErrorCode.BAD_REQUEST, f"request is not JSON ({exc})") from exc
    command = request.get("command") if isinstance(request, dict) else None
    if not isinstance(command, str):
        raise RequestError(ErrorCode.BAD_REQUEST, "send one JSON object line with a 'command' string")
    return command


def _listen(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o177)  # 0600 from the start: no window in which others may connect
        try:
            sock.bind(str(path))
        finally:
            os.umask(old_umask)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ControlError(f"cannot serve control socket {path}: {os_reason(exc)}") from exc
    return sock


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True
