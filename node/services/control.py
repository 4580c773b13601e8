"""The control socket: a unix stream socket in the runtime directory that ``bitcraps-node status``
queries. One JSON request line in (``{"command": NAME, "args": {...}}``, args optional), one JSON
response line out: the command's result, or ``{"error": {"code": <ErrorCode>, "message": <text>}}``.

A command (``Command``) declares its arguments as a frozen dataclass (read and checked by
control_args: a bad one is ``bad_request`` naming it) and may be a plain function, a coroutine
(run within its ``timeout_s``, else ``command_timeout``) or a stream: an async iterator whose items
are written one JSON line each, as they come, until it ends or the client ends its side (closes
or shuts down writing). A stream holds one item at a time: a client that does not read for
STREAM_WRITE_TIMEOUT_S (once the socket's buffer is full) has its stream closed, so a slow reader
costs the node a kernel buffer and one item, never a queue. At most MAX_STREAMS are open, so
streams never take every client slot from ``status``.

A command that fails for a typed reason of its own raises ``CommandRefused``: the error object
then carries ``reason`` too (e.g. ``{"code": "command_failed", "reason": "unknown_peer", ...}``).

Only the owner can connect (the socket is 0600 in a 0700 directory), so whoever connects is the
operator or acts for them; still, nothing one client does may hurt the node. Requests are capped
in size (MAX_REQUEST_BYTES; a command may allow more with ``max_request_bytes``, e.g. ``send``
carrying a 1 MiB message, and such a request must name its command first, as
``{"command": "send", ...`` within the first MAX_REQUEST_BYTES: the cap is chosen before the
line is parsed, so every other command keeps the small one) and time (CLIENT_TIMEOUT_S), at
most MAX_CLIENTS are served at once (the next is told ``too_many_clients`` at once and closed,
so descriptors stay bounded), and each client runs behind the service's ConnectionIsolation
wall: a fault closes that client, is logged once and counted in ``status`` under
``control.faults``.

The server owns its accept loop and its clients' tasks in its own TaskGroup (node.services.accept)
instead of using ``asyncio.start_unix_server``, whose handler tasks belong to no TaskGroup
(STYLE.md): at close they were cancelled by the loop's shutdown and each logged an error-level
CancelledError traceback, and nothing could cap how many ran at once. Here closing cancels them
quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
import os
import re
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.errors import LocalError, NodeError
from node.os_errors import os_reason
from node.services.accept import BoundedAccept
from node.services.control_args import check_schema, no_args, parse_args
from node.services.control_errors import CommandRefused, ErrorCode, RequestError
from node.services.service import Service
from node.transports.isolation import ConnectionIsolation

__all__ = [
    "CLIENT_TIMEOUT_S",
    "MAX_REQUEST_BYTES",
    "MAX_STREAMS",
    "SEND_TIMEOUT_S",
    "STREAM_WRITE_TIMEOUT_S",
    "AlreadyRunning",
    "Command",
    "CommandRefused",  # from control_errors
    "Commands",
    "ControlError",
    "ControlServer",
    "ControlView",
    "ErrorCode",  # from control_errors, where the client and argument parsing share it
    "RequestError",
    "error_reply",
]

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
CLIENT_TIMEOUT_S = 5.0  # to send a whole request line
SEND_TIMEOUT_S = 1.0  # to take the reply (a few KiB: it fits a fresh socket's buffer)
MAX_CLIENTS = 16
LISTEN_BACKLOG = 128
READ_CHUNK = 4096
COMMAND_TIMEOUT_S = 10.0  # an async command's default ceiling (a command may set its own)
# A stream's client has this long to take one line once its socket buffer (~200 KiB) is full.
STREAM_WRITE_TIMEOUT_S = 5.0
MAX_STREAMS = MAX_CLIENTS // 2

Result = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Command:
    """A control command. ``handler`` is called with the parsed arguments (an ``args`` instance)
    or, when ``args`` is None, with none; it returns a result, an awaitable of one (awaited
    within ``timeout_s``), or an async iterator of results (a stream; the awaitable may also
    give one). A NodeError it raises is told to the client as ``command_failed``."""

    handler: Callable[..., object]
    args: type[Any] | None = None
    timeout_s: float = COMMAND_TIMEOUT_S
    # A request line of this command may be this long (at least MAX_REQUEST_BYTES).
    max_request_bytes: int = MAX_REQUEST_BYTES

    def __post_init__(self) -> None:
        if self.args is not None:
            check_schema(self.args)  # a schema bug shows when the node starts, not at a request

    def bind(self, raw_args: object) -> Callable[[], object]:
        """The handler with its arguments read from the request. Raises RequestError."""
        if self.args is None:
            no_args(raw_args)
            return self.handler
        return functools.partial(self.handler, parse_args(self.args, raw_args))


# A plain function of no arguments (``status``) is a command as it is.
Commands = Mapping[str, Callable[[], Result] | Command]


class ControlError(LocalError):
    """The control socket cannot be served or reached."""


class AlreadyRunning(ControlError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"another node is already running (control socket {path} answers)")
        self.path = path


@dataclass(frozen=True, slots=True)
class ControlView:
    """What ``status`` shows under ``control``."""

    clients: int  # being served now (the one asking for status included)
    max_clients: int
    served: int  # requests answered with a result
    refused: int  # clients told too_many_clients
    errors: dict[str, int]  # other typed error replies, by code
    faults: dict[str, int]  # clients closed by a fault the isolation wall contained, by type
    streams: int  # open now
    streams_slow: int  # closed because their client did not read

    def to_json(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "max_clients": self.max_clients,
            "served": self.served,
            "refused": self.refused,
            "errors": dict(self.errors),
            "faults": dict(self.faults),
            "streams": self.streams,
            "streams_slow": self.streams_slow,
        }


def error_reply(code: ErrorCode, message: str, reason: str | None = None) -> bytes:
    error = {"code": code.value, "message": message}
    if reason is not None:
        error["reason"] = reason
    return json.dumps({"error": error}).encode() + b"\n"


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
        self._accept = BoundedAccept(
            "control socket",
            self.isolation,
            self._serve,
            limit=max_clients,
            refuse=self._refuse,
            admitted=self._admitted,
        )
        self._numbered = 0
        self._served = 0
        self._refused = 0
        self._errors: Counter[ErrorCode] = Counter()
        self._full_logged = False
        self._streams = 0
        self._streams_slow = 0
        # Built once: a schema bug fails the node's start, not a request.
        self._bound = {name: c if isinstance(c, Command) else Command(c) for name, c in commands.items()}
        # The longer lines some commands accept: looked up by the name a long line starts with.
        self._long = {
            name: c.max_request_bytes
            for name, c in self._bound.items()
            if c.max_request_bytes > MAX_REQUEST_BYTES
        }

    async def _start(self, stack: AsyncExitStack) -> None:
        if self._path.exists() or self._path.is_symlink():
            if _answers(self._path):
                raise AlreadyRunning(self._path)
            self._path.unlink()  # left behind by a node that did not stop cleanly
        listener = _listen(self._path)
        stack.callback(self._unlink)
        stack.callback(listener.close)
        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        stack.callback(self._accept.cancel_all)  # runs before the TaskGroup waits for its tasks
        self._accept.start(tasks, listener)

    def _unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def status(self) -> ControlView:
        return ControlView(
            clients=self._accept.clients,
            max_clients=self._max_clients,
            served=self._served,
            refused=self._refused,
            errors={code.value: n for code, n in sorted(self._errors.items())},
            faults=self.isolation.snapshot(),
            streams=self._streams,
            streams_slow=self._streams_slow,
        )

    # -- clients --------------------------------------------------------------------------

    def _admitted(self) -> str:
        self._full_logged = False  # the next refusal starts a new episode
        self._numbered += 1
        return f"control client {self._numbered}"

    def _refuse(self, conn: socket.socket) -> None:
        """Tell the client why, without waiting for anything, and close it."""
        self._refused += 1
        if not self._full_logged:
            self._full_logged = True  # once per episode: a flood of clients is not a flood of logs
            log.warning(
                "control socket: %d clients at once; refusing more until one ends", self._accept.clients
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
                line = await _read_line(loop, conn, self._long)
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
            answer = await self._answer(line)
            if not isinstance(answer, bytes):
                await self._stream(conn, *answer)
                return
            reply = answer
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await loop.sock_sendall(conn, reply)
        except (TimeoutError, ConnectionError) as exc:
            log.debug("control client did not take its reply: %r", exc)

    async def _answer(self, line: bytes) -> bytes | tuple[str, AsyncIterator[Result]]:
        """The reply line, or the stream to write."""
        try:
            name, raw_args = _parse(line)
            command = self._bound.get(name)
            if command is None:
                raise RequestError(ErrorCode.UNKNOWN_COMMAND, f"no command {name!r}")
            call = command.bind(raw_args)
            result = self.isolation.call(_invoke, f"control command {name}", call)
            if inspect.isawaitable(result):
                result = await self._await(name, command, result)
            if result is None or not isinstance(result, dict | NodeError | AsyncIterator):
                if result is not None:
                    log.error("control command %s returned %s, not a result", name, type(result).__name__)
                raise RequestError(
                    ErrorCode.COMMAND_FAILED,
                    f"{name} failed on a fault in the node (logged, counted in status control.faults)",
                )
            if isinstance(result, RequestError):
                raise result  # the command's own typed refusal (CommandRefused, ArgumentError)
            if isinstance(result, NodeError):
                # A command that cannot answer (e.g. a service mid-shutdown) says so to the client.
                log.warning("control command %s failed: %s", name, result)
                raise RequestError(ErrorCode.COMMAND_FAILED, f"{name} failed: {result}")
            if isinstance(result, AsyncIterator):
                if self._streams >= MAX_STREAMS:
                    await self._close_items(name, result)
                    raise RequestError(
                        ErrorCode.TOO_MANY_STREAMS, f"{MAX_STREAMS} streams are open; end one first"
                    )
                return name, result
        except RequestError as exc:
            return self._error(exc)
        self._served += 1
        return _line(result)

    async def _await(self, name: str, command: Command, awaitable: Awaitable[object]) -> object:
        timer = asyncio.timeout(command.timeout_s)
        try:
            async with timer:
                # The wall catches the handler's own errors (a TimeoutError of its own included):
                # only ours reaches the handler below.
                return await self.isolation.run(_invoke_async(awaitable), f"control command {name}")
        except TimeoutError as exc:
            raise RequestError(
                ErrorCode.COMMAND_TIMEOUT, f"{name} did not finish within {command.timeout_s:g} s"
            ) from exc

    # -- streams --------------------------------------------------------------------------

    async def _stream(self, conn: socket.socket, name: str, items: AsyncIterator[Result]) -> None:
        """Write ``items`` until they end, the client ends its side, or it stops reading."""
        self._streams += 1
        self._served += 1
        try:
            async with asyncio.TaskGroup() as tasks:
                pump = tasks.create_task(
                    self.isolation.run(self._pump(conn, name, items), f"control stream {name}")
                )
                watch = tasks.create_task(_until_client_ends(conn))
                await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
                pump.cancel()
                watch.cancel()
        finally:
            self._streams -= 1
            await self._close_items(name, items)

    async def _pump(self, conn: socket.socket, name: str, items: AsyncIterator[Result]) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for item in items:
                try:
                    async with asyncio.timeout(STREAM_WRITE_TIMEOUT_S):
                        await loop.sock_sendall(conn, _line(item))
                except TimeoutError:
                    self._streams_slow += 1
                    log.info(
                        "control stream %s: the client took nothing for %g s; stream closed",
                        name,
                        STREAM_WRITE_TIMEOUT_S,
                    )
                    return
                except OSError as exc:
                    log.debug("control stream %s: the client left: %r", name, exc)
                    return
        except NodeError as exc:
            log.warning("control stream %s failed: %s", name, exc)
            reply = self._error(RequestError(ErrorCode.COMMAND_FAILED, f"{name} failed: {exc}"))
            with contextlib.suppress(TimeoutError, OSError):
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await loop.sock_sendall(conn, reply)

    async def _close_items(self, name: str, items: AsyncIterator[Result]) -> None:
        """Let the stream's producer clean up (unsubscribe), behind the wall."""
        close = getattr(items, "aclose", None)
        if close is not None:
            await self.isolation.run(close(), f"control stream {name} (closing)")

    def _error(self, exc: RequestError) -> bytes:
        self._errors[exc.code] += 1
        log.info("control request failed: %s", exc)
        return error_reply(exc.code, exc.detail, exc.why if isinstance(exc, CommandRefused) else None)


def _line(result: Result) -> bytes:
    return json.dumps(result).encode() + b"\n"


def _invoke(handler: Callable[[], object]) -> object:
    """A command's result, or the typed error it raised (anything else is a fault for the wall)."""
    try:
        return handler()
    except NodeError as exc:
        return exc


async def _invoke_async(awaitable: Awaitable[object]) -> object:
    try:
        return await awaitable
    except NodeError as exc:
        return exc


async def _until_client_ends(conn: socket.socket) -> None:
    """Returns when the client closes or shuts down its side; what it sends meanwhile is dropped."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(OSError):
        while await loop.sock_recv(conn, READ_CHUNK):
            pass


# How a request line names its command first (control_client writes it so): what a line longer
# than MAX_REQUEST_BYTES must start with to be read further.
_NAMED_FIRST = re.compile(rb'\s*\{\s*"command"\s*:\s*"([a-z_]{1,64})"')


async def _read_line(
    loop: asyncio.AbstractEventLoop, conn: socket.socket, long: Mapping[str, int]
) -> bytes | None:
    """One request line (without its newline); None if the client sent nothing before leaving.
    A client that half-closes instead of ending its line has sent what it came with. A line may
    pass MAX_REQUEST_BYTES only if it starts by naming a command in ``long``, up to its cap."""
    buf = bytearray()
    limit = MAX_REQUEST_BYTES
    while True:
        chunk = await loop.sock_recv(conn, READ_CHUNK)
        if not chunk:
            return bytes(buf) if buf else None
        end = chunk.find(b"\n")
        buf += chunk if end < 0 else chunk[:end]
        if len(buf) > limit:
            if limit == MAX_REQUEST_BYTES and (named := _NAMED_FIRST.match(buf)) is not None:
                limit = long.get(named.group(1).decode(), MAX_REQUEST_BYTES)
            if len(buf) > limit:
                raise RequestError(ErrorCode.REQUEST_TOO_LARGE, f"request line over {limit} bytes")
        if end >= 0:
            return bytes(buf)


def _parse(line: bytes) -> tuple[str, object]:
    """The command a request line names and its raw ``args`` (None when absent).
    Raises RequestError(BAD_REQUEST)."""
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
    return command, request.get("args")


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
