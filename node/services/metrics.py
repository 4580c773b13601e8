"""``GET /metrics`` over HTTP/1.1 on ``[metrics] listen``: the Prometheus text exposition of the
node's NodeMetrics, served on the daemon's event loop.

One request per connection (``Connection: close``), and only what a Prometheus scraper sends: a
request head of at most MAX_HEAD_BYTES within REQUEST_TIMEOUT_S, then the reply (written within
REQUEST_TIMEOUT_S too). GET /metrics is answered (RFC 9110 §9.3.1; HEAD as well, §9.3.2); another
method is 405 with ``Allow`` (§15.5.6), another path 404, an unreadable head 400, a head too large
431 (RFC 6585 §5), silence 408. At most MAX_CLIENTS are served at once (the next is closed at
once), each behind the service's ConnectionIsolation wall, in the service's own TaskGroup (see
node/services/accept.py for why not ``asyncio.start_server``).

A listen address that cannot be bound (a port in use) is logged once and shown in ``status``
(``metrics.error``); the node runs on without metrics: they are an aid, not its job.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from node.config import Config
from node.os_errors import os_reason
from node.services.accept import BoundedAccept
from node.services.node_metrics import NodeMetrics
from node.services.service import Service
from node.transports.isolation import ConnectionIsolation

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8 * 1024  # a scraper's head is a few hundred bytes
REQUEST_TIMEOUT_S = 5.0
MAX_CLIENTS = 8  # one or two scrapers, and a person with curl
LISTEN_BACKLOG = 64
READ_CHUNK = 4096
METRICS_PATH = "/metrics"


@dataclass(frozen=True, slots=True)
class MetricsView:
    """What ``status`` shows under ``metrics``."""

    listen: str | None  # the bound address ('[::1]:9474'), None when disabled or not bound
    error: str | None  # why it is not served (the address could not be bound)
    responses: dict[str, int]  # by HTTP status code
    faults: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "listen": self.listen,
            "error": self.error,
            "responses": dict(self.responses),
            "faults": dict(self.faults),
        }


class MetricsServer(Service[MetricsView]):
    name = "metrics"

    def __init__(self, config: Config, metrics: NodeMetrics) -> None:
        super().__init__()
        self._address = config.metrics.address
        self.metrics = metrics
        self.isolation = ConnectionIsolation("metrics")
        self._listen: str | None = None
        self._error: str | None = None
        self._responses: Counter[int] = Counter()
        self._accept = BoundedAccept(
            "metrics",
            self.isolation,
            self._serve,
            limit=MAX_CLIENTS,
            refuse=socket.socket.close,  # a scraper retries at its next interval
            admitted=lambda: "metrics client",
        )

    async def _start(self, stack: AsyncExitStack) -> None:
        if self._address is None:
            return
        host, port = self._address
        try:
            listener = _listen(host, port)
        except OSError as exc:
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            self._error = f"cannot listen on {shown}: {os_reason(exc)}"
            log.warning("metrics not served: %s; the node runs on without them", self._error)
            return
        stack.callback(listener.close)
        bound_host, bound_port = listener.getsockname()[:2]
        self._listen = f"[{bound_host}]:{bound_port}" if ":" in bound_host else f"{bound_host}:{bound_port}"
        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        stack.callback(self._accept.cancel_all)  # runs before the TaskGroup waits for its tasks
        self._accept.start(tasks, listener)

    def status(self) -> MetricsView:
        return MetricsView(
            listen=self._listen,
            error=self._error,
            responses={str(code): n for code, n in sorted(self._responses.items())},
            faults=self.isolation.snapshot(),
        )

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await _read_head(loop, conn)
                if head is None:
                    return  # connected and left (a port check)
                reply = self._reply(head)
                await loop.sock_sendall(conn, reply)
        except TimeoutError:
            self._responses[408] += 1
            # Best effort: a client that sends nothing may read nothing either.
            _try_send(conn, _response(408, "Request Timeout", b"no whole request head in time\n"))
        except ConnectionError as exc:
            log.debug("metrics client left: %r", exc)

    def _reply(self, head: bytes) -> bytes:
        code, reason, body, extra = self._route(head)
        self._responses[code] += 1
        if code == 200 and head.startswith(b"HEAD "):
            return _response(code, reason, b"", extra, length=len(body))
        return _response(code, reason, body, extra)

    def _route(self, head: bytes) -> tuple[int, str, bytes, tuple[tuple[str, str], ...]]:
        if len(head) > MAX_HEAD_BYTES:
            return 431, "Request Header Fields Too Large", b"request head too large\n", ()
        line = head.split(b"\r\n", 1)[0]
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return 400, "Bad Request", b"not an HTTP/1.x request line\n", ()
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target != METRICS_PATH.encode():
            return 404, "Not Found", b"only /metrics is served here\n", ()
        if method not in (b"GET", b"HEAD"):
            return 405, "Method Not Allowed", b"only GET /metrics\n", (("Allow", "GET, HEAD"),)
        return 200, "OK", self.metrics.render(), (("Content-Type", CONTENT_TYPE_LATEST),)


def _response(
    code: int,
    reason: str,
    body: bytes,
    extra: tuple[tuple[str, str], ...] = (),
    length: int | None = None,
) -> bytes:
    headers = [f"HTTP/1.1 {code} {reason}", f"Content-Length: {len(body) if length is None else length}"]
    if not any(name == "Content-Type" for name, _ in extra):
        headers.append("Content-Type: text/plain; charset=utf-8")
    headers += [f"{name}: {value}" for name, value in extra]
    headers.append("Connection: close")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def _try_send(conn: socket.socket, data: bytes) -> None:
    try:
        conn.send(data)
    except OSError as exc:
        log.debug("metrics: reply not delivered: %r", exc)


async def _read_head(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes | None:
    """The request head up to its blank line; past MAX_HEAD_BYTES, what was read (one byte over,
    so the caller answers 431); None if the client sent nothing."""
    buf = bytearray()
    while True:
        chunk = await loop.sock_recv(conn, READ_CHUNK)
        if not chunk:
            return bytes(buf) if buf else None
        buf += chunk
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            return bytes(buf[:end])
        if len(buf) > MAX_HEAD_BYTES:
            return bytes(buf[: MAX_HEAD_BYTES + 1])


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart within TIME_WAIT
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
