"""The control socket: a unix stream socket in the runtime directory that ``bitcraps-node status``
queries. One JSON request line in, one JSON response line out.

Only the owner can connect (the socket is 0600 in a 0700 directory). Requests are capped in size
and time so a stuck client cannot hold the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from node.errors import LocalError, NodeError

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
CLIENT_TIMEOUT_S = 5.0

Commands = Mapping[str, Callable[[], dict[str, Any]]]


class ControlError(LocalError):
    """The control socket cannot be served or reached."""


class AlreadyRunning(ControlError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"another node is already running (control socket {path} answers)")
        self.path = path


class NotRunning(ControlError):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"no node is running (control socket {path}: {reason})")
        self.path = path


class ControlServer:
    def __init__(self, path: Path, commands: Commands) -> None:
        self._path = path
        self._commands = commands
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        if self._path.exists() or self._path.is_symlink():
            if _answers(self._path):
                raise AlreadyRunning(self._path)
            self._path.unlink()  # left behind by a node that did not stop cleanly
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self._path), limit=MAX_REQUEST_BYTES
            )
        except OSError as exc:
            raise ControlError(f"cannot serve control socket {self._path}: {exc.strerror}") from exc
        finally:
            os.umask(old_umask)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            # Clients are answered in one line and capped at CLIENT_TIMEOUT_S; do not let one
            # hold up the node's exit beyond a short grace.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(CLIENT_TIMEOUT_S):
                line = await reader.readline()
                writer.write(json.dumps(self._reply(line)).encode() + b"\n")
                await writer.drain()
        except (TimeoutError, ValueError, ConnectionError) as exc:
            # ValueError: a line over the limit. A misbehaving client only loses its own answer.
            log.debug("control client dropped: %r", exc)
        finally:
            writer.close()

    def _reply(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            command = request["command"]
            if not isinstance(command, str):
                raise TypeError(command)
        except (ValueError, TypeError, KeyError):
            return {"error": "bad request: send one JSON object line with a 'command' string"}
        handler = self._commands.get(command)
        if handler is None:
            return {"error": f"unknown command {command!r}"}
        try:
            return handler()
        except NodeError as exc:
            # A command that cannot answer (e.g. a service mid-shutdown) says so to the client.
            log.warning("control command %s failed: %s", command, exc)
            return {"error": f"{command} failed: {exc}"}


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def request(path: Path, command: str, timeout: float = CLIENT_TIMEOUT_S) -> dict[str, Any]:
    """Send one command to a running node (blocking; the CLI's side)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except FileNotFoundError as exc:
            raise NotRunning(path, "not found") from exc
        except ConnectionRefusedError as exc:
            raise NotRunning(path, "refused; stale socket") from exc
        except OSError as exc:
            raise NotRunning(path, exc.strerror or str(exc)) from exc
        try:
            s.sendall(json.dumps({"command": command}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise ControlError(f"control socket {path}: {exc}") from exc
    try:
        reply = json.loads(data)
    except ValueError as exc:
        raise ControlError(f"control socket {path}: unreadable reply") from exc
    if not isinstance(reply, dict):
        raise ControlError(f"control socket {path}: unexpected reply")
    return reply
