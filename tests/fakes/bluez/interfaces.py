"""The D-Bus objects of the fake bluetoothd, on dbus-fast's service API. Each is a thin shell that
hands the call to ``FakeBluetoothd`` (daemon.py), which owns the virtual radio's state.

Shapes and errors follow BlueZ's API documents (doc/adapter-api.txt, device-api.txt, gatt-api.txt,
advertising-api.txt; org.bluez.*.rst since BlueZ 5.71). Property signatures matter: bleak's
scanner reads RSSI as int16 'n', UUIDs 'as', ServiceData a{sv} of 'ay', ManufacturerData a{qv}.

This module deliberately has no ``from __future__ import annotations``: dbus-fast reads the
``Annotated`` signatures at class creation.
"""

from contextvars import ContextVar
from typing import TYPE_CHECKING, Annotated, Any

from dbus_fast import Variant
from dbus_fast.annotations import DBusSignature
from dbus_fast.constants import PropertyAccess
from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

if TYPE_CHECKING:
    from tests.fakes.bluez.daemon import AdapterState, FakeBluetoothd, Link, RemoteChar

Str = Annotated[str, DBusSignature("s")]
Path = Annotated[str, DBusSignature("o")]
Paths = Annotated[list[str], DBusSignature("ao")]
Bool = Annotated[bool, DBusSignature("b")]
Strs = Annotated[list[str], DBusSignature("as")]
Int16 = Annotated[int, DBusSignature("n")]
UInt16 = Annotated[int, DBusSignature("q")]
UInt32 = Annotated[int, DBusSignature("u")]
Byte = Annotated[int, DBusSignature("y")]
Bytes = Annotated[bytes, DBusSignature("ay")]
Options = Annotated[dict[str, Variant], DBusSignature("a{sv}")]
ServiceDataT = Annotated[dict[str, Variant], DBusSignature("a{sv}")]
ManufacturerT = Annotated[dict[int, Variant], DBusSignature("a{qv}")]

# BlueZ's error names (doc/*-api.txt "Possible errors"); spelled out here rather than imported
# from bluez.defs so a wrong constant in the code under test cannot also make the fake agree.
FAILED = "org.bluez.Error.Failed"
IN_PROGRESS = "org.bluez.Error.InProgress"
NOT_READY = "org.bluez.Error.NotReady"
NOT_CONNECTED = "org.bluez.Error.NotConnected"
DOES_NOT_EXIST = "org.bluez.Error.DoesNotExist"
ALREADY_EXISTS = "org.bluez.Error.AlreadyExists"
ALREADY_CONNECTED = "org.bluez.Error.AlreadyConnected"
INVALID_ARGUMENTS = "org.bluez.Error.InvalidArguments"
NOT_PERMITTED = "org.bluez.Error.NotPermitted"
NOT_SUPPORTED = "org.bluez.Error.NotSupported"
UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"


# dbus-fast's service methods are not told who called; the daemon's message handler (daemon.py)
# sets this before dbus-fast dispatches the call (an async method's task copies the context).
CALLER: ContextVar[str] = ContextVar("CALLER", default="")


def current_sender() -> str:
    return CALLER.get()


def bluez_error(name: str, text: str) -> DBusError:
    return DBusError(name, text)


class Adapter1(ServiceInterface):
    """adapter-api.txt: org.bluez.Adapter1 at /org/bluez/hciN."""

    def __init__(self, daemon: "FakeBluetoothd", adapter: "AdapterState") -> None:
        super().__init__("org.bluez.Adapter1")
        self.daemon = daemon
        self.adapter = adapter

    @dbus_method("StartDiscovery")
    def start_discovery(self) -> None:
        self.daemon.start_discovery(self.adapter, current_sender())

    @dbus_method("StopDiscovery")
    def stop_discovery(self) -> None:
        self.daemon.stop_discovery(self.adapter, current_sender())

    @dbus_method("SetDiscoveryFilter")
    def set_discovery_filter(self, filters: Options) -> None:
        self.daemon.set_discovery_filter(self.adapter, current_sender(), filters)

    @dbus_method("GetDiscoveryFilters")
    def get_discovery_filters(self) -> Strs:
        return ["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Discoverable", "Pattern"]

    @dbus_method("RemoveDevice")
    async def remove_device(self, device: Path) -> None:
        await self.daemon.remove_device(self.adapter, device)

    @dbus_property(PropertyAccess.READ, "Address")
    def address(self) -> Str:
        return self.adapter.address

    @dbus_property(PropertyAccess.READ, "AddressType")
    def address_type(self) -> Str:
        return "public"

    @dbus_property(PropertyAccess.READ, "Name")
    def name_prop(self) -> Str:
        return f"fake-{self.adapter.name}"

    @dbus_property(PropertyAccess.READ, "Alias")
    def alias(self) -> Str:
        return f"fake-{self.adapter.name}"

    @dbus_property(PropertyAccess.READ, "Class")
    def class_(self) -> UInt32:
        return 0

    @dbus_property(PropertyAccess.READWRITE, "Powered")
    def powered(self) -> Bool:
        return self.adapter.powered

    @powered.setter
    def powered_set(self, value: Bool) -> None:
        self.daemon.set_powered(self.adapter, bool(value))

    @dbus_property(PropertyAccess.READ, "Discoverable")
    def discoverable(self) -> Bool:
        return False

    @dbus_property(PropertyAccess.READ, "Pairable")
    def pairable(self) -> Bool:
        return False

    @dbus_property(PropertyAccess.READ, "Discovering")
    def discovering(self) -> Bool:
        return bool(self.adapter.discovery_sessions)

    @dbus_property(PropertyAccess.READ, "UUIDs")
    def uuids(self) -> Strs:
        return []

    @dbus_property(PropertyAccess.READ, "Roles")
    def roles(self) -> Strs:
        return ["central", "peripheral"]


class GattManager1(ServiceInterface):
    """gatt-api.txt "GATT Manager hierarchy": RegisterApplication reads the application back
    through the caller's ObjectManager.GetManagedObjects at the application's path."""

    def __init__(self, daemon: "FakeBluetoothd", adapter: "AdapterState") -> None:
        super().__init__("org.bluez.GattManager1")
        self.daemon = daemon
        self.adapter = adapter

    @dbus_method("RegisterApplication")
    async def register_application(self, application: Path, options: Options) -> None:
        await self.daemon.register_application(self.adapter, current_sender(), application)

    @dbus_method("UnregisterApplication")
    async def unregister_application(self, application: Path) -> None:
        await self.daemon.unregister_application(self.adapter, current_sender(), application)


class LEAdvertisingManager1(ServiceInterface):
    """advertising-api.txt "LE Advertising Manager hierarchy"."""

    def __init__(self, daemon: "FakeBluetoothd", adapter: "AdapterState") -> None:
        super().__init__("org.bluez.LEAdvertisingManager1")
        self.daemon = daemon
        self.adapter = adapter

    @dbus_method("RegisterAdvertisement")
    async def register_advertisement(self, advertisement: Path, options: Options) -> None:
        await self.daemon.register_advertisement(self.adapter, current_sender(), advertisement)

    @dbus_method("UnregisterAdvertisement")
    async def unregister_advertisement(self, advertisement: Path) -> None:
        await self.daemon.unregister_advertisement(self.adapter, current_sender(), advertisement)

    @dbus_property(PropertyAccess.READ, "ActiveInstances")
    def active_instances(self) -> Byte:
        return len(self.adapter.advertisements)

    @dbus_property(PropertyAccess.READ, "SupportedInstances")
    def supported_instances(self) -> Byte:
        return max(0, self.daemon.max_advertisements - len(self.adapter.advertisements))

    @dbus_property(PropertyAccess.READ, "SupportedIncludes")
    def supported_includes(self) -> Strs:
        return ["tx-power", "appearance", "local-name"]


class Device1(ServiceInterface):
    """device-api.txt: a remote device as one adapter sees it (another fake adapter)."""

    def __init__(self, daemon: "FakeBluetoothd", adapter: "AdapterState", address: str) -> None:
        super().__init__("org.bluez.Device1")
        self.daemon = daemon
        self.adapter = adapter
        self.address_ = address
        self.name_ = ""
        self.rssi = -50
        self.uuids_: list[str] = []
        self.service_data: dict[str, bytes] = {}
        self.manufacturer_data: dict[int, bytes] = {}
        self.connected_ = False
        self.services_resolved_ = False
        self.trusted_ = False
        self.link: Link | None = None

    @property
    def path(self) -> str:
        return f"{self.adapter.path}/dev_{self.address_.replace(':', '_')}"

    @dbus_method("Connect")
    async def connect(self) -> None:
        await self.daemon.connect(self)

    @dbus_method("Disconnect")
    async def disconnect(self) -> None:
        await self.daemon.disconnect(self)

    @dbus_method("Pair")
    def pair(self) -> None:
        raise bluez_error(NOT_SUPPORTED, "the fake bluetoothd does not model pairing")

    @dbus_method("CancelPairing")
    def cancel_pairing(self) -> None:
        raise bluez_error(DOES_NOT_EXIST, "no pairing in progress")

    @dbus_property(PropertyAccess.READ, "Address")
    def address(self) -> Str:
        return self.address_

    @dbus_property(PropertyAccess.READ, "AddressType")
    def address_type(self) -> Str:
        return "public"

    @dbus_property(PropertyAccess.READ, "Name")
    def name_prop(self) -> Str:
        return self.name_ or self.address_.replace(":", "-")

    @dbus_property(PropertyAccess.READ, "Alias")
    def alias(self) -> Str:
        return self.name_ or self.address_.replace(":", "-")

    @dbus_property(PropertyAccess.READ, "Adapter")
    def adapter_path(self) -> Path:
        return self.adapter.path

    @dbus_property(PropertyAccess.READ, "RSSI")
    def rssi_(self) -> Int16:
        return self.rssi

    @dbus_property(PropertyAccess.READ, "UUIDs")
    def uuids(self) -> Strs:
        return list(self.uuids_)

    @dbus_property(PropertyAccess.READ, "ServiceData")
    def service_data_(self) -> ServiceDataT:
        return {k: Variant("ay", v) for k, v in self.service_data.items()}

    @dbus_property(PropertyAccess.READ, "ManufacturerData")
    def manufacturer_data_(self) -> ManufacturerT:
        return {k: Variant("ay", v) for k, v in self.manufacturer_data.items()}

    @dbus_property(PropertyAccess.READ, "Connected")
    def connected(self) -> Bool:
        return self.connected_

    @dbus_property(PropertyAccess.READ, "ServicesResolved")
    def services_resolved(self) -> Bool:
        return self.services_resolved_

    @dbus_property(PropertyAccess.READ, "Paired")
    def paired(self) -> Bool:
        return False

    @dbus_property(PropertyAccess.READ, "Bonded")
    def bonded(self) -> Bool:
        return False

    @dbus_property(PropertyAccess.READWRITE, "Trusted")
    def trusted(self) -> Bool:
        return self.trusted_

    @trusted.setter
    def trusted_set(self, value: Bool) -> None:
        self.trusted_ = value

    @dbus_property(PropertyAccess.READ, "Blocked")
    def blocked(self) -> Bool:
        return False

    @dbus_property(PropertyAccess.READ, "LegacyPairing")
    def legacy_pairing(self) -> Bool:
        return False


class RemoteService1(ServiceInterface):
    """gatt-api.txt "Service hierarchy", client side: dev_XX/serviceXXXX."""

    def __init__(self, uuid: str, primary: bool, device_path: str) -> None:
        super().__init__("org.bluez.GattService1")
        self.uuid_ = uuid
        self.primary_ = primary
        self.device_path = device_path

    @dbus_property(PropertyAccess.READ, "UUID")
    def uuid(self) -> Str:
        return self.uuid_

    @dbus_property(PropertyAccess.READ, "Primary")
    def primary(self) -> Bool:
        return self.primary_

    @dbus_property(PropertyAccess.READ, "Device")
    def device(self) -> Path:
        return self.device_path

    @dbus_property(PropertyAccess.READ, "Includes")
    def includes(self) -> Paths:
        return []


class RemoteCharacteristic1(ServiceInterface):
    """gatt-api.txt "Characteristic hierarchy", client side: serviceXXXX/charYYYY. Calls go
    through the daemon to the peer's local application, over the bus."""

    def __init__(self, daemon: "FakeBluetoothd", char: "RemoteChar") -> None:
        super().__init__("org.bluez.GattCharacteristic1")
        self.daemon = daemon
        self.char = char

    @dbus_method("ReadValue")
    async def read_value(self, options: Options) -> Bytes:
        return await self.daemon.read_value(self.char, options)

    @dbus_method("WriteValue")
    async def write_value(self, value: Bytes, options: Options) -> None:
        await self.daemon.write_value(self.char, bytes(value), options)

    @dbus_method("StartNotify")
    async def start_notify(self) -> None:
        await self.daemon.start_notify(self.char, current_sender())

    @dbus_method("StopNotify")
    async def stop_notify(self) -> None:
        await self.daemon.stop_notify(self.char, current_sender())

    @dbus_method("AcquireWrite")
    def acquire_write(self, options: Options) -> Annotated[list[Any], DBusSignature("hq")]:
        raise bluez_error(NOT_SUPPORTED, "the fake bluetoothd does not model AcquireWrite")

    @dbus_property(PropertyAccess.READ, "UUID")
    def uuid(self) -> Str:
        return self.char.uuid

    @dbus_property(PropertyAccess.READ, "Service")
    def service(self) -> Path:
        return self.char.service_path

    @dbus_property(PropertyAccess.READ, "Value")
    def value(self) -> Bytes:
        return self.char.value

    @dbus_property(PropertyAccess.READ, "Notifying")
    def notifying(self) -> Bool:
        return bool(self.char.subscribers)

    @dbus_property(PropertyAccess.READ, "Flags")
    def flags(self) -> Strs:
        return list(self.char.flags)

    @dbus_property(PropertyAccess.READ, "MTU")
    def mtu(self) -> UInt16:
        return self.char.link.mtu
