"""StallWatch: one timer per flush of a peer's sending task notices a send stuck on a path.

A transport's ``send`` returns once the frame is queued, but waits while the connection's
buffer is full (TCP backpressure). When a path's traffic is silently dropped, TCP keeps the
connection and its buffer never drains: the task would wait there for minutes, its resends and
the peer's ACKs stuck behind it. A send that has waited the bound is interrupted (the frame stays
queued on that path) and the caller fails the path.

One ``asyncio.timeout`` per send would cost a timer handle per message (5 µs per message in
bench/coordinator.py); the watch re-arms one timer per bound while a flush runs, and a send only
notes when it starts and ends.
"""

from __future__ import annotations

import asyncio

from node.proto.coordinator import PathKey


class StallWatch:
    def __init__(self, loop: asyncio.AbstractEventLoop, guard: asyncio.Timeout, bound: float) -> None:
        self._loop = loop
        self._guard = guard
        self._bound = bound
        self._key: PathKey | None = None  # the path a send is waiting on
        self._since = 0.0
        self.stalled: PathKey | None = None  # set when the watch interrupted a send
        self._timer = loop.call_later(bound, self._check)

    def begin(self, key: PathKey) -> None:
        self._key = key
        self._since = self._loop.time()

    def end(self) -> None:
        self._key = None

    def close(self) -> None:
        self._timer.cancel()

    def _check(self) -> None:
        key, now = self._key, self._loop.time()
        if key is not None and now - self._since >= self._bound:
            self.stalled = key
            self._guard.reschedule(now)  # the waiting send raises; asyncio.timeout makes it TimeoutError
            return
        start = self._since if key is not None else now
        self._timer = self._loop.call_at(start + self._bound, self._check)
