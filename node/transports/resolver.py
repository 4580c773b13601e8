"""Host name lookups for the node's services: bounded, and never in the way of a stop.

getaddrinfo blocks in C and cannot be interrupted. ``loop.getaddrinfo`` runs it on a thread pool
that the process waits for when it stops: asyncio's default executor (``asyncio.run`` joins it,
every queued lookup included) or, under uvloop, libuv's pool (joined as the process exits). So a
slow DNS held a stopping node: with 16 STUN server names that the DNS never answered (DNS timeout
30 s), the node took 236 s to exit after SIGTERM (measured here).

Here ``RESOLVER_THREADS`` daemon threads take lookups from one queue. At most that many run at
once, however many names the services ask for; a caller that gives up (its timeout, or
cancellation) leaves at once, a queued lookup it left is skipped and a running one's answer is
dropped; and the process exits without waiting for a thread still blocked in getaddrinfo.
``concurrent.futures.ThreadPoolExecutor`` does not fit: its threads are joined at interpreter exit,
even after ``shutdown(wait=False, cancel_futures=True)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# libuv's default pool size. Bounded config lists (node.config, ``max_items``) bound the queue.
RESOLVER_THREADS = 4

AddrInfo = tuple[Any, ...]  # (family, type, proto, canonname, sockaddr) as socket.getaddrinfo returns


@dataclass(slots=True)
class _Job:
    loop: asyncio.AbstractEventLoop
    args: tuple[str, int, int, int]  # host, port, family, socktype
    future: asyncio.Future[list[AddrInfo]]
    abandoned: bool = field(default=False)  # set on the loop's thread, read by a worker

    def settle(self, result: list[AddrInfo] | None, error: Exception | None) -> None:
        if self.future.done():  # the caller gave up
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(result or [])


Lookup = Callable[[str, int, int, int], list[AddrInfo]]


class ResolverPool:
    """``threads`` daemon threads that run ``lookup`` (socket.getaddrinfo) for the event loops."""

    def __init__(self, threads: int, lookup: Lookup = socket.getaddrinfo) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._threads = threads
        self._lookup = lookup
        self._started = False
        self._lock = threading.Lock()

    async def getaddrinfo(
        self, host: str, port: int, *, family: int = 0, socktype: int = 0
    ) -> list[AddrInfo]:
        """``socket.getaddrinfo(host, port, family, socktype)``; raises socket.gaierror as it does.
        Run it under ``asyncio.timeout``: leaving on a timeout or a cancellation is immediate."""
        if _is_invalid(host):
            # RFC 6761 §6.4: resolver APIs "SHOULD always return immediate negative responses"
            # for names under "invalid." -- and no query leaves the machine for them.
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        loop = asyncio.get_running_loop()
        job = _Job(loop, (host, port, family, socktype), loop.create_future())
        self._submit(job)
        try:
            return await job.future
        finally:
            job.abandoned = True  # a worker that has not started it yet skips it

    def _submit(self, job: _Job) -> None:
        with self._lock:
            if not self._started:
                for i in range(self._threads):
                    threading.Thread(target=self._work, name=f"resolver-{i}", daemon=True).start()
                self._started = True
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job.abandoned:
                continue
            result: list[AddrInfo] | None = None
            error: Exception | None = None
            try:
                result = self._lookup(*job.args)
            except Exception as exc:  # handed to the caller, who types it
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits for this
                job.loop.call_soon_threadsafe(job.settle, result, error)


# One pool for the whole process: the bound holds across every service that resolves names.
_pool = ResolverPool(RESOLVER_THREADS)


def _is_invalid(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name == "invalid" or name.endswith(".invalid")


getaddrinfo = _pool.getaddrinfo
