"""Peer events (a path came up or went away) to every subscriber: a broadcast, unlike the inbox.

Each subscriber has its own bounded queue; one that falls ``QUEUE`` events behind loses the
oldest and the loss is counted (``dropped``): a stalled subscriber must not hold the node's memory,
and peer events describe state that ``peers()`` shows anyway.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from node.services.coordinator.records import PeerEvent

QUEUE = 1024


class _Subscriber:
    __slots__ = ("events", "waiter")

    def __init__(self) -> None:
        self.events: deque[PeerEvent] = deque()
        self.waiter: asyncio.Future[None] | None = None


class PeerEvents:
    def __init__(self) -> None:
        self._subscribers: set[_Subscriber] = set()
        self._closed = False
        self.dropped = 0

    def publish(self, event: PeerEvent) -> None:
        for sub in self._subscribers:
            if len(sub.events) >= QUEUE:
                sub.events.popleft()
                self.dropped += 1
            sub.events.append(event)
            if sub.waiter is not None and not sub.waiter.done():
                sub.waiter.set_result(None)

    def close(self) -> None:
        self._closed = True
        for sub in self._subscribers:
            if sub.waiter is not None and not sub.waiter.done():
                sub.waiter.set_result(None)

    def subscribe(self) -> AsyncIterator[PeerEvent]:
        """Every event from this call on, until the node stops. The subscriber is registered
        here, not at the first ``anext``: nothing published in between is missed."""
        sub = _Subscriber()
        self._subscribers.add(sub)
        return self._events_of(sub)

    async def _events_of(self, sub: _Subscriber) -> AsyncIterator[PeerEvent]:
        try:
            while True:
                while sub.events:
                    yield sub.events.popleft()
                if self._closed:
                    return
                sub.waiter = asyncio.get_running_loop().create_future()
                await sub.waiter
        finally:
            self._subscribers.discard(sub)
