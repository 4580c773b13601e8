"""bleak (the node's central library) against the fake bluetoothd: a bluez-peripheral service on
hci1, bleak on hci0, joined by the virtual radio. Proves the fake is faithful enough for both
libraries: scan filtered on the service UUID, connect, write without response, notifications."""

from __future__ import annotations

import asyncio

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from dbus_fast import BusType, Message, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from bluez.defs import ErrorName
from bluez.errors import BluezFailed, BluezNotPermitted, BluezUnknownObject, from_dbus_error
from tests.ble.peripheral import RX_UUID, SERVICE_DATA, SERVICE_DATA_UUID, SERVICE_UUID, TX_UUID, serve
from tests.fakes.bluez import FakeBluetoothd, adapter_address

pytestmark = pytest.mark.ble


async def find(adapter: str) -> tuple[BLEDevice, dict[str, bytes]]:
    found: asyncio.Future[tuple[BLEDevice, dict[str, bytes]]] = asyncio.get_running_loop().create_future()

    def seen(device: BLEDevice, adv: object) -> None:
        if not found.done():
            found.set_result((device, dict(adv.service_data)))  # type: ignore[attr-defined]

    async with (
        BleakScanner(seen, service_uuids=[SERVICE_UUID], bluez={"adapter": adapter}),
        asyncio.timeout(10),
    ):
        return await found


async def test_scan_connect_write_notify_between_two_adapters(fake_bluez: FakeBluetoothd) -> None:
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        service, _collection, _advert = await serve(bus, "hci1")
        device, service_data = await find("hci0")
        assert device.address == adapter_address(1)
        assert service_data == {SERVICE_DATA_UUID: SERVICE_DATA}
        async with BleakClient(device, timeout=10.0, bluez={"adapter": "hci0"}) as client:
            rx = client.services.get_characteristic(RX_UUID)
            assert rx is not None and "write-without-response" in rx.properties
            assert rx.max_write_without_response_size == 517 - 3
            for chunk in (b"hello", b"x" * 300, b"bye"):
                await client.write_gatt_char(RX_UUID, chunk, response=False)
            async with asyncio.timeout(10):
                got = [await service.received.get() for _ in range(3)]
            assert got == [b"hello", b"x" * 300, b"bye"]

            notes: asyncio.Queue[bytes] = asyncio.Queue()
            await client.start_notify(TX_UUID, lambda _c, data: notes.put_nowait(bytes(data)))
            service.tx.changed(b"from the peripheral")
            async with asyncio.timeout(10):
                assert await notes.get() == b"from the peripheral"
    finally:
        bus.disconnect()


async def test_mtu_vanish_and_error_names(fake_bluez: FakeBluetoothd) -> None:
    fake_bluez.set_mtu("hci1", 185)
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        service, _collection, _advert = await serve(bus, "hci1")
        device, _ = await find("hci0")
        async with BleakClient(device, timeout=10.0, bluez={"adapter": "hci0"}) as client:
            rx = client.services.get_characteristic(RX_UUID)
            assert rx is not None and rx.max_write_without_response_size == 185 - 3
            char_path = rx.obj[0]

            async def write(value: bytes, kind: str = "command") -> Message:
                reply = await bus.call(
                    Message(
                        destination="org.bluez",
                        path=char_path,
                        interface="org.bluez.GattCharacteristic1",
                        member="WriteValue",
                        signature="aya{sv}",
                        body=[value, {"type": Variant("s", kind)}],
                    )
                )
                assert reply is not None
                return reply

            def typed(reply: Message) -> Exception:
                return from_dbus_error(DBusError(reply.error_name or "", reply.body[0], reply), "WriteValue")

            # RX has no "write" flag: a write with response is refused by name.
            assert isinstance(typed(await write(b"x", "request")), BluezNotPermitted)
            # Longer than ATT_MTU - 3 for a write without response.
            assert isinstance(typed(await write(b"x" * 183)), BluezFailed)
            # The peer stalls; the device vanishes while the write waits for it.
            service.write_gate = asyncio.Event()
            pending = asyncio.ensure_future(write(b"lost"))
            async with asyncio.timeout(10):
                await service.write_waiting.wait()
                await fake_bluez.vanish("hci0", adapter_address(1))
                reply = await pending
            error = typed(reply)
            assert isinstance(error, BluezFailed) and error.reason is ErrorName.FAILED
            # The device and its characteristics are gone: BlueZ's clients see UnknownObject.
            assert isinstance(typed(await write(b"late")), BluezUnknownObject)
            service.write_gate.set()
    finally:
        bus.disconnect()
