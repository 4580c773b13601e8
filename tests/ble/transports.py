"""Node-side BLE transports for the transport tests: per fake adapter, a ``BleTransport`` as the
link handler of that adapter's peripheral and connector (tests/ble/nodes.py's stack shape), its
identity fresh, trust in development mode (any proven key is a peer, as on UDP's tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bluez.central import Connector
from bluez.objects import ObjectCache
from bluez.peripheral import NodePeripheral
from bluez.proto.linkframes import peer_prefix
from bluez.scanner import FoundNode, NodeScanner
from bluez.transport import BleSettings, BleTransport
from node.proto.identity import Identity
from node.proto.vocabulary import MessageReceived, TransportEvent
from node.security.trust import SessionVerifier, TrustMode, TrustPolicy
from tests.fakes.bluez import adapter_address


@dataclass
class BleNode:
    adapter: str
    identity: Identity
    transport: BleTransport
    peripheral: NodePeripheral
    connector: Connector
    events: asyncio.Queue[TransportEvent]
    found: dict[str, FoundNode]

    async def find(self, other: BleNode) -> FoundNode:
        """``other`` once this node's scanner heard it (BlueZ connects only to a device it knows)."""
        async with asyncio.timeout(10):
            while other.address not in self.found:  # noqa: ASYNC110 - filled by the scanner
                await asyncio.sleep(0.01)
        return self.found[other.address]

    @property
    def address(self) -> str:
        return adapter_address(int(self.adapter.removeprefix("hci")))

    async def next_event(self, kind: type[TransportEvent], within: float = 20.0) -> TransportEvent:
        async with asyncio.timeout(within):
            while True:
                event = await self.events.get()
                if isinstance(event, kind):
                    return event

    async def message(self, within: float = 30.0) -> MessageReceived:
        event = await self.next_event(MessageReceived, within)
        assert isinstance(event, MessageReceived)
        return event


@asynccontextmanager
async def ble_node(
    cache: ObjectCache, index: int, settings: BleSettings | None = None
) -> AsyncIterator[BleNode]:
    adapter = f"hci{index}"
    identity = Identity.from_private_key(Ed25519PrivateKey.generate())
    verifier = SessionVerifier(TrustPolicy(TrustMode.DEVELOPMENT))
    events: asyncio.Queue[TransportEvent] = asyncio.Queue()
    async with AsyncExitStack() as stack:
        transport = await stack.enter_async_context(BleTransport(identity, verifier, settings=settings))
        tasks = await stack.enter_async_context(asyncio.TaskGroup())

        async def pump() -> None:
            async for event in transport.events():
                events.put_nowait(event)

        reader = tasks.create_task(pump())
        stack.callback(reader.cancel)
        peripheral = await stack.enter_async_context(
            NodePeripheral(cache, adapter, peer_prefix(identity.peer_id), transport)
        )
        found: dict[str, FoundNode] = {}
        scanner = await stack.enter_async_context(
            NodeScanner(cache, adapter, lambda node: found.__setitem__(node.address, node))
        )
        connector = await stack.enter_async_context(
            Connector(cache, adapter, transport, quiet_radio=scanner.paused)
        )
        transport.dialer = connector.connect
        async with asyncio.timeout(10):
            await peripheral.ready.wait()
            await scanner.scanning.wait()
        yield BleNode(adapter, identity, transport, peripheral, connector, events, found)
