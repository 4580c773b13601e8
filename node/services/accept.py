"""BoundedAccept: a listening socket's accept loop, each client served in its own task of the
owner's TaskGroup, at most ``limit`` at once (the control socket and the metrics endpoint).

Not ``asyncio.start_server``: its handler tasks belong to no TaskGroup (STYLE.md), so at close
nothing would wait for them or cancel them. Here the owner's TaskGroup does both, each client runs
behind the owner's ConnectionIsolation (a fault in one is logged once, counted, and closes only
that client), and its socket is closed however its task ends, even cancelled before it started.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import Awaitable, Callable

from node.os_errors import os_reason
from node.transports.isolation import ConnectionIsolation

log = logging.getLogger(__name__)

# accept() failing (out of file descriptors or memory): back off a moment rather than spin.
ACCEPT_BACKOFF_S = 0.1


class BoundedAccept:
    def __init__(
        self,
        what: str,
        isolation: ConnectionIsolation,
        serve: Callable[[socket.socket], Awaitable[None]],
        *,
        limit: int,
        refuse: Callable[[socket.socket], None],
        admitted: Callable[[], str],
    ) -> None:
        """``serve(conn)`` one client; ``refuse(conn)`` one over the limit (it closes it);
        ``admitted()`` names a client about to be served (for the isolation's log line)."""
        self._what = what
        self._isolation = isolation
        self._serve = serve
        self._limit = limit
        self._refuse = refuse
        self._admitted = admitted
        self._clients: set[asyncio.Task[None]] = set()
        self._accept_task: asyncio.Task[None] | None = None

    @property
    def clients(self) -> int:
        return len(self._clients)

    def start(self, tasks: asyncio.TaskGroup, listener: socket.socket) -> None:
        self._accept_task = tasks.create_task(self._accept_loop(tasks, listener), name=f"{self._what}-accept")

    def cancel_all(self) -> None:
        """For the owner's exit stack, before its TaskGroup waits: clients are capped in time
        anyway, and the node's exit does not wait for them."""
        if self._accept_task is not None:
            self._accept_task.cancel()
        for task in self._clients:
            task.cancel()

    async def _accept_loop(self, tasks: asyncio.TaskGroup, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:
                log.warning("%s: accept failed: %s", self._what, os_reason(exc))
                await asyncio.sleep(ACCEPT_BACKOFF_S)
                continue
            conn.setblocking(False)
            if len(self._clients) >= self._limit:
                self._refuse(conn)
                continue
            who = self._admitted()
            task = tasks.create_task(
                self._isolation.run_later(functools.partial(self._serve, conn), who, conn.close)
            )
            self._clients.add(task)
            task.add_done_callback(functools.partial(self._done, conn))

    def _done(self, conn: socket.socket, task: asyncio.Task[None]) -> None:
        self._clients.discard(task)
        conn.close()
