"""A bluez-peripheral GATT service and advertisement like the node's (RX write-without-response,
TX notify), used by the BLE tests as the peripheral side on a fake adapter."""

from __future__ import annotations

import asyncio
from typing import Any

from bluez_peripheral.adapter import Adapter
from bluez_peripheral.advert import Advertisement
from bluez_peripheral.gatt.characteristic import CharacteristicFlags, characteristic
from bluez_peripheral.gatt.service import Service, ServiceCollection
from dbus_fast.aio import MessageBus

SERVICE_UUID = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
RX_UUID = "6e400002-b5a3-f393-e0a9-e50e24dcca9e"
TX_UUID = "6e400003-b5a3-f393-e0a9-e50e24dcca9e"
SERVICE_DATA = b"\x01\x02\x03\x04"
SERVICE_DATA_UUID = "0000fff0-0000-1000-8000-00805f9b34fb"  # a 16-bit UUID: 2 bytes on air


class LinkService(Service):  # type: ignore[misc]  # bluez_peripheral ships no type hints
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.write_gate: asyncio.Event | None = None  # set: writes wait for it (a stalled peer)
        self.write_waiting = asyncio.Event()  # a write is waiting at the gate
        super().__init__(SERVICE_UUID, True)

    @characteristic(RX_UUID, CharacteristicFlags.WRITE_WITHOUT_RESPONSE)  # type: ignore[misc]
    def rx(self, options: Any) -> bytes:
        return b""

    @rx.setter  # type: ignore[misc]
    async def rx_set(self, value: bytes, options: Any) -> None:
        if self.write_gate is not None:
            self.write_waiting.set()
            await self.write_gate.wait()
        self.received.put_nowait(bytes(value))

    @characteristic(TX_UUID, CharacteristicFlags.NOTIFY)  # type: ignore[misc]
    def tx(self, options: Any) -> bytes:
        return b""


async def adapter_named(bus: MessageBus, name: str) -> Adapter:
    return next(a for a in await Adapter.get_all(bus) if a._proxy.path.endswith(f"/{name}"))


async def serve(bus: MessageBus, adapter_name: str) -> tuple[LinkService, ServiceCollection, Advertisement]:
    """Register the service and an advertisement carrying its UUID on ``adapter_name``."""
    adapter = await adapter_named(bus, adapter_name)
    service = LinkService()
    collection = ServiceCollection([service])
    await collection.register(bus, adapter=adapter)
    # 3 (flags) + 18 (the UUID list) + 8 (16-bit service data): fits 31 bytes (fakes/bluez/adsize.py).
    advert = Advertisement(
        "bitcraps", [SERVICE_UUID], appearance=0xFFFF, service_data={SERVICE_DATA_UUID: SERVICE_DATA}
    )
    await advert.register(bus, adapter=adapter)
    return service, collection, advert
