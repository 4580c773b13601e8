"""One BLE link as the transport drives it: link datagrams cut into chunks (bluez/proto/fragments)
and written in order by one writer task, chunks received put back together by the link's
``LinkReassembler``.

The outbound queue is bounded in bytes: BLE is slow (10-40 kB/s per link on real boards), and a
sender faster than the radio must meet a limit, not grow memory. A datagram that does not fit is
dropped and counted (the transport is unreliable; the coordinator resends). A chunk that fails
to go out drops the rest of its datagram: the receiver's reassembler drops the partial one when
the next first chunk arrives (SUPERSEDED).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from bluez.defs import ATT_HEADER
from bluez.links import BleLink, BleLinkError
from bluez.proto.errors import BleProtoUsageError
from bluez.proto.fragments import Fragmenter, LinkReassembler

log = logging.getLogger(__name__)

# Chunks sent between two ``drain``s of the link: a peripheral's notifications are D-Bus signals
# with no reply, so this bounds what waits in the socket (64 x 520 bytes, well under its buffer).
DRAIN_EVERY = 64


@dataclass(slots=True)
class PipeCounters:
    datagrams_sent: int = 0
    chunks_sent: int = 0
    chunk_bytes_sent: int = 0  # ATT values written or notified (our chunk headers included)
    queue_full: int = 0  # datagrams dropped: the link's queue was at its byte cap
    write_failures: int = 0  # chunks the link refused or failed (the rest of the datagram dropped)


class LinkPipe:
    def __init__(self, link: BleLink, reassembler: LinkReassembler, queue_bytes: int) -> None:
        self.link = link
        self.reassembler = reassembler
        self.peer_hint: str | None = None  # the peer id its HELLO named (a hint, never trusted)
        self.counters = PipeCounters()
        self._fragmenter = Fragmenter()
        self._queue: deque[list[bytes]] = deque()
        self._queued = 0
        self._queue_cap = queue_bytes
        self._wake = asyncio.Event()
        self.closed = False

    def put(self, datagram: bytes) -> bool:
        """Queue ``datagram``'s chunks; False (and counted) when it cannot go."""
        link = self.link
        try:
            # The link's room per write: its ATT_MTU less the ATT header, less the tag byte a
            # peripheral's notification carries (bluez/links.py).
            reserve = link.mtu - ATT_HEADER - link.max_chunk
            chunks = self._fragmenter.fragment(datagram, link.mtu, reserve=reserve)
        except BleProtoUsageError as error:
            self.counters.write_failures += 1
            log.debug("ble: datagram to %s not sent: %s", link.address, error)
            return False
        size = sum(len(chunk) for chunk in chunks)
        if self.closed or self._queued + size > self._queue_cap:
            self.counters.queue_full += 0 if self.closed else 1
            return False
        self._queue.append(chunks)
        self._queued += size
        self._wake.set()
        return True

    def close(self) -> None:
        self.closed = True
        self._queue.clear()
        self._queued = 0
        self._wake.set()
        self.reassembler.close()

    async def run(self) -> None:
        """The writer: until the pipe closes, each queued datagram's chunks in order."""
        counters = self.counters
        unpaced = 0
        while not self.closed:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            chunks = self._queue.popleft()
            self._queued -= sum(len(chunk) for chunk in chunks)
            for chunk in chunks:
                try:
                    await self.link.send(chunk)
                    unpaced += 1
                    if unpaced >= DRAIN_EVERY:
                        unpaced = 0
                        await self.link.drain()
                except BleLinkError as error:
                    # Typed link failures only: the link closes itself on LinkFailed, and the
                    # transport hears link_closed; the rest of this datagram is dropped.
                    counters.write_failures += 1
                    log.debug("ble: write to %s failed: %s", self.link.address, error)
                    break
                counters.chunks_sent += 1
                counters.chunk_bytes_sent += len(chunk)
            else:
                counters.datagrams_sent += 1
