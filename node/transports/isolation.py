"""The wall between one connection (or datagram) and the service that owns it.

A rule for every service: nothing that happens on one connection — the peer's bytes, or a bug in
the code that handles them — may reach the service's TaskGroup, where it would cancel every other
connection and stop the node. Per-connection work runs through ``ConnectionIsolation``: an
exception closes that connection only (the ``close`` callback, then the work's own ``finally``
blocks), is counted by exception type for ``status`` and logged: the first fault of a type with
its traceback (it is a bug, or a peer we failed to type), later ones of that type in one line at
the 2nd, 4th, 8th, ... so a stranger who found the bug cannot flood the journal with it.
Cancellation is never swallowed: it is how a service stops its connections.

TCP-TLS, UDP and the control socket use it today; the rendezvous and BLE services of wave 2 run
their per-peer handlers through the same object (``call`` for a synchronous datagram handler).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")


class ConnectionIsolation:
    """One service's boundary; ``faults`` counts what it stopped, by exception type."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.faults: Counter[str] = Counter()

    async def run(self, work: Awaitable[T], who: str, close: Callable[[], object] | None = None) -> T | None:
        """Await ``work`` (one connection's whole life); None if it failed, which is contained."""
        try:
            return await work
        except Exception as exc:  # the point: nothing passes this wall
            self._contain(exc, who, close)
            return None

    async def run_later(
        self, work: Callable[[], Awaitable[T]], who: str, close: Callable[[], object] | None = None
    ) -> T | None:
        """``run`` as a task's body: the work's coroutine is made only once the task runs, so a
        task cancelled before its first step (a service stopping) leaves none never awaited."""
        return await self.run(work(), who, close)

    def call(self, handler: Callable[P, T], who: str, /, *args: P.args, **kwargs: P.kwargs) -> T | None:
        """A synchronous per-datagram (or per-request) handler; None if it failed."""
        try:
            return handler(*args, **kwargs)
        except Exception as exc:
            self._contain(exc, who, None)
            return None

    def contain(self, exc: Exception, who: str) -> None:
        """Count and log ``exc``, which a handler the caller ran in its own loop raised (``call``
        for one item at a time costs a frame and a ``who`` string per item)."""
        self._contain(exc, who, None)

    def _contain(self, exc: Exception, who: str, close: Callable[[], object] | None) -> None:
        kind = type(exc).__name__
        self.faults[kind] += 1
        count = self.faults[kind]
        if count == 1:  # the first of its kind: the traceback, which is what a fix needs
            log.error(
                "%s: %s failed and was closed (%s); the service goes on",
                self.service,
                who,
                kind,
                exc_info=exc,
            )
        elif count & (count - 1) == 0:  # then at 2, 4, 8, ...: a flood cannot flood the journal
            log.error("%s: %d faults of type %s so far (latest: %s): %s", self.service, count, kind, who, exc)
        if close is not None:
            try:
                close()
            except Exception:  # closing a broken connection may fail too
                log.debug("%s: closing %s after a fault failed as well", self.service, who, exc_info=True)

    def snapshot(self) -> dict[str, int]:
        """The faults by exception type, for ``status`` (empty when nothing ever failed)."""
        return dict(sorted(self.faults.items()))
