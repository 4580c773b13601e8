"""bluez.objects.ObjectCache against the fake bluetoothd: adapters and devices, the signals that
change them, bluetoothd restarting, an adapter unplugged, and the three ways BLE is unavailable."""

from __future__ import annotations

from pathlib import Path

import pytest
from dbus_fast import BusType, Message
from dbus_fast.aio import MessageBus

from bluez.errors import BluezUnavailable, UnavailableReason
from bluez.objects import (
    AdapterAdded,
    AdapterRemoved,
    BluezBack,
    BluezGone,
    DeviceAdded,
    ObjectCache,
    ObjectEvent,
)
from tests.ble.conftest import FakeBluezProcess
from tests.ble.peripheral import SERVICE_DATA, SERVICE_DATA_UUID, SERVICE_UUID, serve
from tests.fakes.bluez import FakeBluetoothd, PrivateBus, adapter_address
from tests.support.tlsnodes import eventually

pytestmark = pytest.mark.ble


async def start_discovery(bus: MessageBus, adapter: str) -> None:
    reply = await bus.call(
        Message(
            destination="org.bluez",
            path=f"/org/bluez/{adapter}",
            interface="org.bluez.Adapter1",
            member="StartDiscovery",
        )
    )
    assert reply is not None and reply.error_name is None, reply


async def test_sees_adapters_and_follows_devices_and_properties(fake_bluez: FakeBluetoothd) -> None:
    events: list[ObjectEvent] = []
    async with ObjectCache() as cache:
        cache.subscribe(events.append)
        assert {a.name: a.address for a in cache.adapters.values()} == {
            "hci0": adapter_address(0),
            "hci1": adapter_address(1),
        }
        assert cache.adapter("hci1").powered and "central" in cache.adapter("hci1").roles
        assert not cache.adapter("hci0").discovering
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            await serve(bus, "hci1")
            await start_discovery(bus, "hci0")
            # PropertiesChanged(Discovering) and InterfacesAdded(Device1) reach the cache.
            await eventually(lambda: cache.adapter("hci0").discovering)
            await eventually(lambda: len(cache.devices) == 1)
            (device,) = cache.devices.values()
            assert device.address == adapter_address(1)
            assert device.adapter == "/org/bluez/hci0"
            assert device.uuids == (SERVICE_UUID,)
            assert device.service_data == ((SERVICE_DATA_UUID, SERVICE_DATA),)
            assert device.rssi is not None and not device.connected
            assert any(isinstance(e, DeviceAdded) for e in events)
            reply = await bus.call(
                Message(
                    destination="org.bluez", path=device.path, interface="org.bluez.Device1", member="Connect"
                )
            )
            assert reply is not None and reply.error_name is None, reply
            await eventually(lambda: cache.devices[device.path].services_resolved)
            assert cache.devices[device.path].connected
            # The peripheral side sees the central as a connected device too.
            await eventually(
                lambda: any(
                    d.adapter == "/org/bluez/hci1" and d.connected and d.address == adapter_address(0)
                    for d in cache.devices.values()
                )
            )
        finally:
            bus.disconnect()


async def test_adapter_removed_and_added_again(fake_bluez: FakeBluetoothd) -> None:
    events: list[ObjectEvent] = []
    async with ObjectCache() as cache:
        cache.subscribe(events.append)
        fake_bluez.remove_adapter("hci1")
        await eventually(lambda: "/org/bluez/hci1" not in cache.adapters)
        assert AdapterRemoved("/org/bluez/hci1") in events
        with pytest.raises(BluezUnavailable) as caught:
            cache.adapter("hci1")
        assert caught.value.reason is UnavailableReason.NO_ADAPTER
        fake_bluez.add_adapter(1)
        await eventually(lambda: "/org/bluez/hci1" in cache.adapters)
        assert any(isinstance(e, AdapterAdded) and e.adapter.name == "hci1" for e in events)
        assert cache.adapter("hci1").address == adapter_address(1)


async def test_survives_bluetoothd_restart(fake_bluez: FakeBluetoothd) -> None:
    events: list[ObjectEvent] = []
    async with ObjectCache() as cache:
        cache.subscribe(events.append)
        fake_bluez.stop()
        await eventually(lambda: not cache.bluez_present)
        assert BluezGone() in events and not cache.adapters
        assert cache.unavailable() is not None
        assert cache.unavailable().reason is UnavailableReason.NO_BLUEZ  # type: ignore[union-attr]
        await fake_bluez.start()
        await eventually(lambda: len(cache.adapters) == 2)
        await eventually(lambda: BluezBack() in events)
        assert cache.unavailable() is None
        # And once more through the restart hook (a new owner of org.bluez, objects re-created).
        events.clear()
        await fake_bluez.restart()
        await eventually(lambda: BluezBack() in events and len(cache.adapters) == 2)
        assert BluezGone() in events


async def test_a_change_handled_while_a_snapshot_resumes_is_kept(
    fake_bluez: FakeBluetoothd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bluetoothd adds an object just after answering GetManagedObjects, and its signal is
    handled before the snapshot's coroutine resumes (dbus-fast dispatches a whole read at once):
    the snapshot must not overwrite the newer state with its older one."""
    events: list[ObjectEvent] = []
    async with ObjectCache() as cache:
        cache.subscribe(events.append)
        answer = cache.call

        async def call_then_change(message: Message, what: str) -> Message:
            reply = await answer(message, what)
            if message.member == "GetManagedObjects":
                fake_bluez.add_adapter(2)
                await eventually(lambda: any(isinstance(e, AdapterAdded) for e in events))
            return reply

        monkeypatch.setattr(cache, "call", call_then_change)
        await cache._settled_snapshot(initial=False)
        assert cache.adapter("hci2").address == adapter_address(2)
        assert AdapterRemoved("/org/bluez/hci2") not in events


async def test_no_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'nobus'}")
    with pytest.raises(BluezUnavailable) as caught:
        async with ObjectCache():
            pass
    assert caught.value.reason is UnavailableReason.NO_BUS
    assert ObjectCache.current() is None


async def test_no_bluez_then_bluez_arrives(private_bus: PrivateBus) -> None:
    async with ObjectCache() as cache:
        error = cache.unavailable()
        assert error is not None and error.reason is UnavailableReason.NO_BLUEZ
        async with FakeBluetoothd(private_bus.address, adapters=1):
            await eventually(lambda: cache.unavailable() is None)
            assert cache.adapter().name == "hci0"


async def test_no_adapter(private_bus: PrivateBus) -> None:
    async with FakeBluetoothd(private_bus.address, adapters=0), ObjectCache() as cache:
        error = cache.unavailable("hci0")
        assert error is not None and error.reason is UnavailableReason.NO_ADAPTER
        assert "hci0" in str(error)


async def test_fake_as_a_process(fake_bluez_process: FakeBluezProcess) -> None:
    async with ObjectCache() as cache:
        assert len(cache.adapters) == 2
        await fake_bluez_process.hook("remove hci0")
        await eventually(lambda: "/org/bluez/hci0" not in cache.adapters)
        await fake_bluez_process.hook("restart")
        await eventually(lambda: cache.bluez_present and len(cache.adapters) == 1)
