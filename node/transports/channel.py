"""A bounded event channel from a transport's links to its one consumer (``Transport.events()``).

asyncio.Queue costs a few microseconds per item in checks and wake-ups; a transport hands over
one event per message, so this is a deque with one consumer waiter and a space waiter for
producers. ``offer`` never blocks: it says whether the producer should wait (``wait_for_space``)
before offering more, which is how a link stops reading when the consumer falls behind (TCP
backpressure instead of memory).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")


class EventChannel(Generic[T]):
    def __init__(self, limit: int) -> None:
        self._items: deque[T] = deque()
        self._limit = limit
        self._ready: asyncio.Future[None] | None = None  # the consumer waits here when empty
        self._space: asyncio.Future[None] | None = None  # producers wait here when full
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: T) -> bool:
        """Append ``item``; True while there is room for more (False: call ``wait_for_space``)."""
        self._items.append(item)
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_result(None)
        return len(self._items) < self._limit

    def offer_many(self, items: list[T]) -> bool:
        """``offer`` for several items at once (the messages of one read)."""
        self._items.extend(items)
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_result(None)
        return len(self._items) < self._limit

    async def wait_for_space(self) -> None:
        while len(self._items) >= self._limit and not self._closed:
            if self._space is None or self._space.done():
                self._space = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._space)

    def close(self) -> None:
        """End the consumer's iteration once the items already offered are taken."""
        self._closed = True
        for waiter in (self._ready, self._space):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def __aiter__(self) -> AsyncIterator[T]:
        items = self._items
        while True:
            while items:
                item = items.popleft()
                space = self._space
                if space is not None and not space.done() and len(items) < self._limit:
                    space.set_result(None)
                yield item
            if self._closed:
                return
            self._ready = asyncio.get_running_loop().create_future()
            await self._ready
