"""Node-side BLE stacks for the link tests: per adapter, the node's peripheral (serves and
advertises), its scanner and its connector, all on the process's one ObjectCache, with a
``Recorder`` as the link handler."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from bluez.central import Connector
from bluez.links import BleLink, BleLinkError
from bluez.objects import ObjectCache
from bluez.peripheral import NodePeripheral
from bluez.scanner import FoundNode, NodeScanner
from tests.fakes.bluez import adapter_address


@dataclass
class Recorder:
    """A LinkHandler that keeps what it is told."""

    opened: list[BleLink] = field(default_factory=list)
    chunks: asyncio.Queue[tuple[BleLink, bytes]] = field(default_factory=asyncio.Queue)
    closed: list[tuple[BleLink, BleLinkError | None]] = field(default_factory=list)

    def link_opened(self, link: BleLink) -> None:
        self.opened.append(link)

    def chunk_received(self, link: BleLink, data: bytes) -> None:
        self.chunks.put_nowait((link, data))

    def link_closed(self, link: BleLink, error: BleLinkError | None) -> None:
        self.closed.append((link, error))

    async def next_chunk(self) -> tuple[BleLink, bytes]:
        async with asyncio.timeout(10):
            return await self.chunks.get()


def prefix(index: int) -> bytes:
    return bytes([0xB0 + index]) * 8


@dataclass
class Stack:
    adapter: str
    peripheral: NodePeripheral
    scanner: NodeScanner
    connector: Connector
    handler: Recorder
    found: dict[str, FoundNode]  # the last report of each address
    reports: Counter[str]  # reports of each address so far

    @property
    def address(self) -> str:
        return adapter_address(int(self.adapter.removeprefix("hci")))

    async def find(self, other: Stack, *, more_than: int = 0) -> FoundNode:
        """``other``'s report once this node's scanner has reported it more than ``more_than``
        times (the fake reports a known device again only when its advertisement changes)."""
        async with asyncio.timeout(10):
            while self.reports[other.address] <= more_than:  # noqa: ASYNC110 - filled by the scanner
                await asyncio.sleep(0.01)
        return self.found[other.address]


@asynccontextmanager
async def node_stack(cache: ObjectCache, index: int, **connector_options: float) -> AsyncIterator[Stack]:
    adapter = f"hci{index}"
    handler = Recorder()
    found: dict[str, FoundNode] = {}
    reports: Counter[str] = Counter()

    def on_found(node: FoundNode) -> None:
        found[node.address] = node
        reports[node.address] += 1

    async with AsyncExitStack() as stack:
        peripheral = await stack.enter_async_context(NodePeripheral(cache, adapter, prefix(index), handler))
        scanner = await stack.enter_async_context(NodeScanner(cache, adapter, on_found))
        connector = await stack.enter_async_context(
            Connector(cache, adapter, handler, quiet_radio=scanner.paused, **connector_options)  # type: ignore[arg-type]
        )
        async with asyncio.timeout(10):
            await peripheral.ready.wait()
            await scanner.scanning.wait()
        yield Stack(adapter, peripheral, scanner, connector, handler, found, reports)
