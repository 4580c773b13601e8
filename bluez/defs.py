"""BlueZ's D-Bus vocabulary: bus name, interfaces, error names and the property shapes we read.

Everything here comes from BlueZ's API documents (doc/org.bluez.Adapter.rst, org.bluez.Device.rst,
org.bluez.GattManager.rst, org.bluez.LEAdvertisingManager.rst; doc/adapter-api.txt, device-api.txt,
gatt-api.txt, advertising-api.txt before BlueZ 5.71). Property shapes are read defensively: a value
of the wrong D-Bus type is treated as absent, so a misbehaving daemon cannot crash the node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from dbus_fast import Variant

BLUEZ_SERVICE = "org.bluez"
# BlueZ exports its ObjectManager at "/" and every adapter under this prefix (adapter-api.txt,
# "Object path [variable prefix]/{hci0,hci1,...}").
BLUEZ_ROOT = "/org/bluez"
DBUS_SERVICE = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"


class Interface(StrEnum):
    ADAPTER = "org.bluez.Adapter1"
    DEVICE = "org.bluez.Device1"
    GATT_MANAGER = "org.bluez.GattManager1"
    GATT_SERVICE = "org.bluez.GattService1"
    GATT_CHARACTERISTIC = "org.bluez.GattCharacteristic1"
    GATT_DESCRIPTOR = "org.bluez.GattDescriptor1"
    LE_ADVERTISING_MANAGER = "org.bluez.LEAdvertisingManager1"
    LE_ADVERTISEMENT = "org.bluez.LEAdvertisement1"
    OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
    PROPERTIES = "org.freedesktop.DBus.Properties"
    DBUS = "org.freedesktop.DBus"


class ErrorName(StrEnum):
    """D-Bus error names BlueZ replies with (each API document's "Possible errors"), plus the
    bus's own names a BlueZ client meets: a removed object, or no bluetoothd on the bus."""

    FAILED = "org.bluez.Error.Failed"
    IN_PROGRESS = "org.bluez.Error.InProgress"
    NOT_READY = "org.bluez.Error.NotReady"
    NOT_CONNECTED = "org.bluez.Error.NotConnected"
    DOES_NOT_EXIST = "org.bluez.Error.DoesNotExist"
    ALREADY_EXISTS = "org.bluez.Error.AlreadyExists"
    ALREADY_CONNECTED = "org.bluez.Error.AlreadyConnected"
    INVALID_ARGUMENTS = "org.bluez.Error.InvalidArguments"
    INVALID_VALUE_LENGTH = "org.bluez.Error.InvalidValueLength"
    NOT_PERMITTED = "org.bluez.Error.NotPermitted"
    NOT_AUTHORIZED = "org.bluez.Error.NotAuthorized"
    NOT_SUPPORTED = "org.bluez.Error.NotSupported"
    NOT_AVAILABLE = "org.bluez.Error.NotAvailable"
    UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
    UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
    SERVICE_UNKNOWN = "org.freedesktop.DBus.Error.ServiceUnknown"
    NAME_HAS_NO_OWNER = "org.freedesktop.DBus.Error.NameHasNoOwner"
    NO_REPLY = "org.freedesktop.DBus.Error.NoReply"
    # Any name not listed above; the raw name is kept on the error.
    OTHER = "other"


def adapter_name(path: str) -> str:
    """ "/org/bluez/hci0" -> "hci0"."""
    return path.rsplit("/", 1)[-1]


def device_path(adapter_path: str, address: str) -> str:
    """device-api.txt: "[variable prefix]/{hci0,hci1,...}/dev_XX_XX_XX_XX_XX_XX"."""
    return f"{adapter_path}/dev_{address.replace(':', '_')}"


def _get(props: Mapping[str, Any], name: str, kind: type[Any]) -> Any:
    """The value of property ``name`` (a Variant or an already unpacked value) if it is a
    ``kind``, else None."""
    value = props.get(name)
    if isinstance(value, Variant):
        value = value.value
    return value if isinstance(value, kind) else None


def _strings(props: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = _get(props, name, list)
    return tuple(v for v in value if isinstance(v, str)) if value else ()


def _bytes_map(props: Mapping[str, Any], name: str, key_kind: type[Any]) -> tuple[tuple[Any, bytes], ...]:
    value = _get(props, name, dict)
    if not value:
        return ()
    out: list[tuple[Any, bytes]] = []
    for key, item in value.items():
        data = item.value if isinstance(item, Variant) else item
        if isinstance(key, key_kind) and isinstance(data, bytes | bytearray):
            out.append((key, bytes(data)))
    return tuple(sorted(out))


@dataclass(frozen=True, slots=True)
class AdapterProps:
    """org.bluez.Adapter1 as the node uses it (adapter-api.txt, "Properties")."""

    path: str
    address: str
    powered: bool
    discovering: bool
    roles: tuple[str, ...]

    @property
    def name(self) -> str:
        return adapter_name(self.path)

    @classmethod
    def from_dbus(cls, path: str, props: Mapping[str, Any]) -> AdapterProps:
        return cls(
            path=path,
            address=_get(props, "Address", str) or "",
            powered=bool(_get(props, "Powered", bool)),
            discovering=bool(_get(props, "Discovering", bool)),
            roles=_strings(props, "Roles"),
        )

    def changed(self, props: Mapping[str, Any]) -> AdapterProps:
        """This snapshot with the properties of a PropertiesChanged signal applied."""
        merged = AdapterProps.from_dbus(self.path, props)
        return replace(
            self,
            address=merged.address if "Address" in props else self.address,
            powered=merged.powered if "Powered" in props else self.powered,
            discovering=merged.discovering if "Discovering" in props else self.discovering,
            roles=merged.roles if "Roles" in props else self.roles,
        )


@dataclass(frozen=True, slots=True)
class DeviceProps:
    """org.bluez.Device1 as the node uses it (device-api.txt, "Properties"): RSSI is int16 ('n'),
    UUIDs 'as', ServiceData a{sv} of 'ay', ManufacturerData a{qv} of 'ay'."""

    path: str
    adapter: str
    address: str
    name: str | None
    rssi: int | None
    uuids: tuple[str, ...]
    service_data: tuple[tuple[str, bytes], ...]
    manufacturer_data: tuple[tuple[int, bytes], ...]
    connected: bool
    services_resolved: bool

    @classmethod
    def from_dbus(cls, path: str, props: Mapping[str, Any]) -> DeviceProps:
        return cls(
            path=path,
            adapter=_get(props, "Adapter", str) or path.rsplit("/", 1)[0],
            address=_get(props, "Address", str) or "",
            name=_get(props, "Name", str),
            rssi=_get(props, "RSSI", int),
            uuids=_strings(props, "UUIDs"),
            service_data=_bytes_map(props, "ServiceData", str),
            manufacturer_data=_bytes_map(props, "ManufacturerData", int),
            connected=bool(_get(props, "Connected", bool)),
            services_resolved=bool(_get(props, "ServicesResolved", bool)),
        )

    def changed(self, props: Mapping[str, Any]) -> DeviceProps:
        """This snapshot with the properties of a PropertiesChanged signal applied."""
        new = DeviceProps.from_dbus(self.path, props)
        fields = {
            "Address": "address",
            "Name": "name",
            "RSSI": "rssi",
            "UUIDs": "uuids",
            "ServiceData": "service_data",
            "ManufacturerData": "manufacturer_data",
            "Connected": "connected",
            "ServicesResolved": "services_resolved",
        }
        updates = {attr: getattr(new, attr) for prop, attr in fields.items() if prop in props}
        return replace(self, **updates)


# The node's own GATT service (BitChat's shape: one service, a write characteristic and a notify
# characteristic). Random (version 4) UUIDs of our own, so a scan filtered on SERVICE_UUID finds
# only bitcraps nodes.
NODE_SERVICE_UUID = "5f3c6a10-8d2e-4b7a-9c41-2e0b7d9a1c01"
# RX: centrals write chunks here (write without response).
NODE_RX_UUID = "5f3c6a10-8d2e-4b7a-9c41-2e0b7d9a1c02"
# TX: the peripheral notifies chunks here; every notification starts with the tag of the central
# it is meant for (see bluez/links.py, "addressing").
NODE_TX_UUID = "5f3c6a10-8d2e-4b7a-9c41-2e0b7d9a1c03"
# LINK: read by a central once subscribed to TX; answers that central's one-byte tag.
NODE_LINK_UUID = "5f3c6a10-8d2e-4b7a-9c41-2e0b7d9a1c04"
# Bytes of the peer id carried in the advertisement's service data: enough to recognise a peer
# before connecting. Note: with flags (3), the 128-bit UUID list (18) and 128-bit service data
# (2 + 16 + 8) the data is 47 bytes, more than a legacy advertisement's 31 (Core 5.3 Vol 3 Part C
# 11): real BlueZ needs extended advertising for it; the fake does not check lengths.
PEER_ID_PREFIX_LEN = 8
# ATT header of a Write Command / Handle Value Notification (Core 5.3 Vol 3 Part F 3.4.5.3, 3.4.7.1):
# one opcode byte and a two-byte handle, so a value carries at most ATT_MTU - 3 bytes.
ATT_HEADER = 3
# Core 5.3 Vol 3 Part F 3.2.9: an attribute value is at most 512 bytes, so a write or notification
# carries at most that even at ATT_MTU 517. And bluetoothd before 5.69 (Debian bookworm's 5.66,
# the boards') counts a Write Command's 2-byte handle against those 512 and drops a longer
# write without a word (src/shared/gatt-server.c write_cb(): check_length(length, 0); fixed by
# bluez commit 8bf3a4a26): a peripheral there takes at most 510 bytes per write.
ATT_VALUE_MAX = 510
# The ATT_MTU every LE link starts with (Core 5.3 Vol 3 Part F 3.2.8).
ATT_MTU_MIN = 23
