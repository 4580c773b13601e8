"""The node's inbox: received messages until a subscriber takes them, each to exactly one.

The bound is the delivery Receiver's (``inbox_messages`` / ``inbox_bytes``): it releases a message
here only when there is room, and acknowledges only what it released, so a full inbox makes
senders wait (nothing is dropped). Taking a message calls ``on_taken(size)``, which tells the
Receiver (``consumed``) so it releases what waited and acknowledges again.

Any number of subscribers may iterate ``messages()`` at once; each message goes to the one that
takes it first (a work queue, not a broadcast).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

from node.services.coordinator.records import InboundMessage


class Inbox:
    def __init__(self, on_taken: Callable[[int], None]) -> None:
        self._items: deque[InboundMessage] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._on_taken = on_taken
        self._closed = False
        self.taken = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: InboundMessage) -> None:
        self._items.append(message)
        self._wake_one()

    def close(self) -> None:
        """End every subscriber's iteration (the node is stopping)."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def take(self) -> InboundMessage | None:
        """The oldest message, waiting for one; None once the inbox is closed."""
        while not self._items:
            if self._closed:
                return None
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # A wake-up meant for us that we cannot take passes to the next subscriber.
                if waiter.done() and not waiter.cancelled() and self._items:
                    self._wake_one()
                raise
        message = self._items.popleft()
        self.taken += 1
        self._on_taken(len(message.data))
        if self._items:
            self._wake_one()  # more waiting: the next subscriber may take one at once
        return message

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def messages(self) -> AsyncIterator[InboundMessage]:
        while (message := await self.take()) is not None:
            yield message
