"""A bounded event channel from a transport's links to its one consumer (``Transport.events()``).

asyncio.Queue costs a few microseconds per item in checks and wake-ups; a transport hands over
a batch of messages per read, so this is a deque with one consumer waiter and a space waiter for
producers. An item weighs what it holds (a batch: its messages) and the limit is on the total
weight. ``offer`` never blocks: it says whether the producer should wait (``wait_for_space``)
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
        self._items: deque[tuple[T, int]] = deque()
        self._weight = 0  # the weights of the items held
        self._limit = limit
        self._ready: asyncio.Future[None] | None = None  # the consumer waits here when empty
        self._space: asyncio.Future[None] | None = None  # producers wait here when full
        self._closed = False

    def __len__(self) -> int:
        """The weight held (the messages, for a transport's channel)."""
        return self._weight

    def offer(self, item: T, weight: int = 1) -> bool:
        """Append ``item``; True while there is room for more (False: call ``wait_for_space``)."""
        self._items.append((item, weight))
        self._weight += weight
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_result(None)
        return self._weight < self._limit

    async def wait_for_space(self) -> None:
        while self._weight >= self._limit and not self._closed:
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
                item, weight = items.popleft()
                self._weight -= weight
                space = self._space
                if space is not None and not space.done() and self._weight < self._limit:
                    space.set_result(None)
                yield item
            if self._closed:
                return
            self._ready = asyncio.get_running_loop().create_future()
            await self._ready
