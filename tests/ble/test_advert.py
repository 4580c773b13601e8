"""The node's advertisement against bluetoothd's 31-byte legacy limit (bluez/advert.py), and the
peer-id prefix read back from what a scanner hears."""

from __future__ import annotations

import pytest
from bluez_peripheral.advert import Advertisement
from dbus_fast import BusType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from bluez.advert import advert_name, prefix_from_advert
from bluez.defs import NODE_SERVICE_UUID, ErrorName
from tests.ble.peripheral import adapter_named
from tests.fakes.bluez import FakeBluetoothd

pytestmark = pytest.mark.ble

PREFIX = bytes.fromhex("0102030405060708")


async def test_an_advertisement_over_31_bytes_is_refused_as_bluetoothd_refuses_it(
    fake_bluez: FakeBluetoothd,
) -> None:
    # The node's first advertisement: flags 3 + UUID list 18 + service data 26 + appearance 4.
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        advert = Advertisement(
            "bitcraps", [NODE_SERVICE_UUID], appearance=0, service_data={NODE_SERVICE_UUID: PREFIX}
        )
        with pytest.raises(DBusError) as refused:
            await advert.register(bus, adapter=await adapter_named(bus, "hci0"), path="/test/too_long")
        assert refused.value.type == ErrorName.FAILED.value
    finally:
        bus.disconnect()


@pytest.mark.parametrize(
    ("service_data", "name", "prefix"),
    [
        ({}, advert_name(PREFIX), PREFIX),
        ({NODE_SERVICE_UUID: PREFIX + b"more"}, None, PREFIX),  # service data wins (bumble, later formats)
        ({NODE_SERVICE_UUID: b"short"}, None, None),
        ({}, None, None),  # the scan response not heard yet
        ({}, "bitcraps", None),
        ({}, "bitcraps-0102", None),
        ({}, "bitcraps-01 02 03 04 0506", None),  # 16 characters; bytes.fromhex skips spaces
        ({}, "bitcraps-zz02030405060708", None),
        ({}, "other-0102030405060708", None),
    ],
)
def test_prefix_read_from_service_data_or_scan_response_name(
    service_data: dict[str, bytes], name: str | None, prefix: bytes | None
) -> None:
    assert prefix_from_advert(service_data, name) == prefix
