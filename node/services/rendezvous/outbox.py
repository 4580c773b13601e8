"""Rendezvous frames waiting to go out on the TCP-TLS links: the frame handlers run inside the
coordinator's receive path (synchronous), sending is awaited; one bounded queue joins them."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from node.errors import NodeError
from node.proto.rendezvous import Message, encode
from node.proto.vocabulary import PeerId

log = logging.getLogger(__name__)

# Introductions are small and rare; a peer that makes thousands wait is attacking, and what is
# beyond this is dropped (the requester times out and asks again).
MAX_QUEUED = 1024
# A link whose peer does not read blocks its sends (TCP backpressure): a send that cannot go in
# this long is dropped, so one such peer never stalls the rendezvous traffic of every other.
SEND_TIMEOUT_S = 1.0


class Outbox:
    def __init__(self, send: Callable[[PeerId, bytes], Awaitable[None]]) -> None:
        self._send = send
        self._queue: deque[tuple[PeerId, bytes]] = deque()
        self._ready = asyncio.Event()
        self.dropped = 0
        self.failed = 0

    def put(self, peer: PeerId, message: Message) -> None:
        if len(self._queue) >= MAX_QUEUED:
            self.dropped += 1
            return
        self._queue.append((peer, encode(message)))
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                peer, payload = self._queue.popleft()
                try:
                    async with asyncio.timeout(SEND_TIMEOUT_S):
                        await self._send(peer, payload)
                except (NodeError, TimeoutError) as exc:
                    # The link went, or its peer reads nothing: the requester times out and asks again.
                    self.failed += 1
                    log.debug("rendezvous: cannot send to %s: %s", peer, exc or "the link takes nothing")
