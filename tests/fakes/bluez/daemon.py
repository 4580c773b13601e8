"""A fake bluetoothd: several adapters (hci0, hci1, ...; one per node's radio) on one private bus,
joined by a virtual radio.

- Adapter X discovering sees adapter Y's registered advertisement as a Device1 under X whose
  address is Y's address (filtered by X's SetDiscoveryFilter UUIDs and Transport).
- X connecting to it exposes Y's registered GATT applications as remote GattService1 /
  GattCharacteristic1 objects under the device, then sets ServicesResolved.
- X's WriteValue / ReadValue on a remote characteristic calls Y's local application's method over
  the bus, as bluetoothd does (options: device, link, mtu, type, offset; gatt-api.txt).
- Y's local characteristic's PropertiesChanged(Value), once BlueZ has called its StartNotify,
  reaches every X subscribed with StartNotify as PropertiesChanged(Value) on the remote object.
- RegisterAdvertisement refuses advertising data over 31 bytes as bluetoothd 5.66 does on a
  controller without extended advertising; LocalName reaches scanners as the scan response's
  name (adsize.py).

Test hooks: ``remove_adapter`` / ``add_adapter`` (InterfacesRemoved/Added), ``restart`` (a new
connection takes org.bluez again; registrations and devices are lost, as when bluetoothd
restarts), ``vanish`` (a device drops out of range: its link fails in-flight calls with
org.bluez.Error.Failed, later ones with NotConnected, then the Device1 goes away), ``set_mtu``
(ATT MTU of an adapter; a link takes the smaller of its two ends), ``fail_next`` (the next
Connect calls answer a given BlueZ error name), ``set_range`` (two adapters hear each other or
not: out of range, neither discovers the other, a Connect fails as a page timeout does, and a
link between them drops as in ``vanish``; for mesh tests with nodes in a line).

Not modelled yet: InterfacesAdded/Removed come from each object's own path, one per interface
(dbus-fast's export), where bluetoothd sends them from "/" with all interfaces at once; remote
GattDescriptor1 objects (CCCD included); AcquireWrite/AcquireNotify (NotSupported); pairing;
discovery sessions of a client that leaves the bus are not dropped; devices are never expired
after 180 s unseen; no connection-slot limit; an application added to after RegisterApplication
is not re-read; a write without response waits for the peer application's reply (ordered,
with backpressure) where real BlueZ returns once the PDU is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.constants import NameFlag, RequestNameReply
from dbus_fast.errors import DBusError

from tests.fakes.bluez.adsize import LEGACY_MAX, advertising_length, full_uuid, scan_response_name
from tests.fakes.bluez.bus import wait_when_full
from tests.fakes.bluez.interfaces import (
    ALREADY_EXISTS,
    CALLER,
    DOES_NOT_EXIST,
    FAILED,
    IN_PROGRESS,
    INVALID_ARGUMENTS,
    NOT_CONNECTED,
    NOT_PERMITTED,
    NOT_READY,
    NOT_SUPPORTED,
    UNKNOWN_OBJECT,
    Adapter1,
    Device1,
    GattManager1,
    LEAdvertisingManager1,
    RemoteCharacteristic1,
    RemoteService1,
    bluez_error,
)

log = logging.getLogger(__name__)
PEER_VALUE_MAX = 510  # what a bluetoothd 5.66 peripheral takes in one write (write_value())

GATT_CHARACTERISTIC = "org.bluez.GattCharacteristic1"
GATT_SERVICE = "org.bluez.GattService1"
ADVERTISEMENT = "org.bluez.LEAdvertisement1"
DEFAULT_MTU = 517  # the largest ATT_MTU BlueZ negotiates
ADVERTISING_INTERVAL_S = 1.0  # a connectable advertiser's interval is 20 ms to 10.24 s; BlueZ's default ~1 s


def _value(variant: Any) -> Any:
    return variant.value if isinstance(variant, Variant) else variant


@dataclass
class Advertisement:
    uuids: list[str]
    service_data: dict[str, bytes]
    manufacturer_data: dict[int, bytes]
    local_name: str


@dataclass
class LocalChar:
    path: str
    uuid: str
    flags: list[str]


@dataclass
class LocalService:
    path: str
    uuid: str
    primary: bool
    chars: list[LocalChar] = field(default_factory=list)


@dataclass
class App:
    sender: str
    path: str
    services: list[LocalService]


@dataclass
class DiscoveryFilter:
    uuids: list[str] = field(default_factory=list)
    transport: str = "auto"


@dataclass
class AdapterState:
    index: int
    address: str
    powered: bool = True
    mtu: int = DEFAULT_MTU
    filters: dict[str, DiscoveryFilter] = field(default_factory=dict)
    discovery_sessions: set[str] = field(default_factory=set)
    advertisements: dict[tuple[str, str], Advertisement] = field(default_factory=dict)
    apps: dict[tuple[str, str], App] = field(default_factory=dict)
    devices: dict[str, Device1] = field(default_factory=dict)
    interfaces: list[Any] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"hci{self.index}"

    @property
    def path(self) -> str:
        return f"/org/bluez/{self.name}"


@dataclass(eq=False)
class RemoteChar:
    link: Link
    app: App
    local: LocalChar
    path: str
    service_path: str
    seen_as: Device1  # the client as the application's adapter sees it (the "device" option)
    value: bytes = b""
    subscribers: set[str] = field(default_factory=set)
    iface: RemoteCharacteristic1 | None = None

    @property
    def uuid(self) -> str:
        return self.local.uuid

    @property
    def flags(self) -> list[str]:
        return self.local.flags


@dataclass(eq=False)
class Link:
    central: AdapterState
    peripheral: AdapterState
    device: Device1  # under the central
    mirror: Device1  # the central as the peripheral sees it
    mtu: int
    dropped: asyncio.Event = field(default_factory=asyncio.Event)
    chars: list[RemoteChar] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def adapter_address(index: int) -> str:
    return f"02:00:00:00:00:{index:02X}"


class FakeBluetoothd:
    """``async with FakeBluetoothd(bus_address, adapters=2)``: org.bluez with hci0..hciN-1."""

    def __init__(self, bus_address: str, adapters: int = 2, max_advertisements: int = 4) -> None:
        self.bus_address = bus_address
        self.max_advertisements = max_advertisements
        self.adapters: dict[str, AdapterState] = {}
        self._initial = adapters
        self._bus: MessageBus | None = None
        self._lock = asyncio.Lock()  # one Connect at a time, as the controller's connection queue
        self._failures: dict[str, list[str]] = {}
        self.writes = 0
        self.oversize_writes = 0  # writes a bluetoothd 5.66 peripheral would have dropped
        self.connects = 0
        self.connects_while_discovering = 0  # Connect called with the adapter's discovery on
        self.out_of_range: set[frozenset[str]] = set()  # pairs of adapter names that cannot hear each other
        self._timers: set[asyncio.TimerHandle] = set()
        self.unannounced_connects = 0  # the next N Connects leave Connected unsignalled (see connect)

    # -- lifecycle and test hooks ---------------------------------------------------------------

    async def __aenter__(self) -> FakeBluetoothd:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    @property
    def bus(self) -> MessageBus:
        assert self._bus is not None, "the fake bluetoothd is not running"
        return self._bus

    async def start(self) -> None:
        bus = wait_when_full(await MessageBus(bus_address=self.bus_address).connect())
        self._bus = bus
        bus.add_message_handler(self._on_message)
        await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=["type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'"],
            )
        )
        reply = await bus.request_name("org.bluez", NameFlag.DO_NOT_QUEUE)
        if reply != RequestNameReply.PRIMARY_OWNER:
            raise RuntimeError(f"the fake bluetoothd could not own org.bluez: {reply}")
        # bluetoothd owns its name first and registers adapters as the kernel reports them.
        for index in range(self._initial):
            self.add_adapter(index)

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._bus is not None:
            self._bus.disconnect()
            self._bus = None
        for adapter in self.adapters.values():
            for device in adapter.devices.values():
                if device.link is not None:
                    device.link.dropped.set()
        self.adapters.clear()

    async def restart(self) -> None:
        """bluetoothd stops (org.bluez loses its owner) and starts again with fresh objects."""
        indexes = sorted(a.index for a in self.adapters.values())
        self.stop()
        self._initial = 0
        await self.start()
        for index in indexes:
            self.add_adapter(index)

    def add_adapter(self, index: int) -> AdapterState:
        adapter = AdapterState(index=index, address=adapter_address(index))
        if adapter.name in self.adapters:
            raise ValueError(f"{adapter.name} already exists")
        self.adapters[adapter.name] = adapter
        adapter.interfaces = [
            Adapter1(self, adapter),
            GattManager1(self, adapter),
            LEAdvertisingManager1(self, adapter),
        ]
        for iface in adapter.interfaces:
            self.bus.export(adapter.path, iface)
        return adapter

    def remove_adapter(self, name: str) -> None:
        """The controller is unplugged: its links drop, its devices and then it are removed."""
        adapter = self.adapters.pop(name)
        for other in self.adapters.values():
            for device in other.devices.values():
                if device.link is not None and adapter in (device.link.central, device.link.peripheral):
                    self._drop_link(device.link)
        for device in list(adapter.devices.values()):
            if device.link is not None:
                self._drop_link(device.link)
            self.bus.unexport(device.path)
        for sender, path in adapter.advertisements:
            # advertising-api.txt: Release is called when bluetoothd drops an advertisement.
            self.bus.send(
                Message(destination=sender, path=path, interface=ADVERTISEMENT, member="Release", flags=1)
            )
        self.bus.unexport(adapter.path)

    async def vanish(self, adapter_name: str, address: str) -> None:
        """The device at ``address`` leaves ``adapter_name``'s range mid-whatever, for a moment:
        a discovering adapter hears its advertisement again at the next advertising event, as
        a radio does while the device stays in range (set_range keeps it out)."""
        adapter = self.adapters[adapter_name]
        device = adapter.devices.pop(address)
        if device.link is not None:
            self._drop_link(device.link)
        self.bus.unexport(device.path)
        self._later(ADVERTISING_INTERVAL_S, self._refresh_all)

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        def fire() -> None:
            self._timers.discard(timer)
            if self._bus is not None:
                callback()

        timer = asyncio.get_running_loop().call_later(delay, fire)
        self._timers.add(timer)

    def set_powered(self, adapter: AdapterState, on: bool) -> None:
        """Adapter1.Powered written (bluetoothctl power on|off; rfkill does the same to it).

        Powering off ends every link of the adapter and every client's discovery session
        (src/adapter.c adapter_stop(): the discovery list is freed, Discovering turns false);
        registered applications and advertisements stay registered and are served and
        heard again once powered (the kernel keeps advertising instances)."""
        if adapter.powered == on:
            return
        if not on:
            for other in self.adapters.values():
                for device in list(other.devices.values()):
                    link = device.link
                    if link is not None and adapter in (link.central, link.peripheral):
                        self._drop_link(link)
            had_discovery = bool(adapter.discovery_sessions)
            adapter.discovery_sessions.clear()
            adapter.filters.clear()
            if had_discovery:
                adapter.interfaces[0].emit_properties_changed({"Discovering": False}, [])
        adapter.powered = on
        adapter.interfaces[0].emit_properties_changed({"Powered": on}, [])
        if on:
            self._refresh_all()

    def in_range(self, a: AdapterState, b: AdapterState) -> bool:
        return frozenset((a.name, b.name)) not in self.out_of_range

    async def set_range(self, first: str, second: str, on: bool) -> None:
        """Whether adapters ``first`` and ``second`` hear each other (both exist or not)."""
        pair = frozenset((first, second))
        if on:
            self.out_of_range.discard(pair)
            self._refresh_all()
            return
        self.out_of_range.add(pair)
        for here, there in ((first, second), (second, first)):
            adapter = self.adapters.get(here)
            address = adapter_address(int(there.removeprefix("hci")))
            if adapter is not None and address in adapter.devices:
                await self.vanish(here, address)

    def set_mtu(self, adapter_name: str, mtu: int) -> None:
        """The ATT_MTU this adapter offers; links made afterwards use min(central, peripheral)."""
        self.adapters[adapter_name].mtu = mtu

    def fail_next(self, member: str, error_name: str, times: int = 1) -> None:
        """The next ``times`` calls of ``member`` (only "Connect" is wired) answer ``error_name``,
        e.g. org.bluez.Error.InProgress as when another client's Connect is queued."""
        self._failures.setdefault(member, []).extend([error_name] * times)

    def _injected(self, member: str) -> None:
        queue = self._failures.get(member)
        if queue:
            raise bluez_error(queue.pop(0), f"{member} failure injected by the test")

    def adapter(self, name: str) -> AdapterState:
        return self.adapters[name]

    # -- bus plumbing ---------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> bool | None:
        if msg.message_type == MessageType.METHOD_CALL:
            CALLER.set(msg.sender or "")
            if (
                msg.interface
                and msg.interface.startswith("org.bluez.")
                and msg.path not in self.bus._path_exports
            ):
                # libdbus answers a call on an unregistered path with UnknownObject; BlueZ's
                # clients (bleak) rely on that name once a device is gone.
                raise DBusError(
                    UNKNOWN_OBJECT,
                    f'Method "{msg.member}" with signature "{msg.signature}" on interface '
                    f'"{msg.interface}" doesn\'t exist',
                )
        elif msg.message_type == MessageType.SIGNAL and msg.member == "PropertiesChanged":
            self._on_local_properties(msg)
        return None

    async def _call_app(
        self, destination: str, path: str, interface: str, member: str, *, signature: str, body: list[Any]
    ) -> Message:
        reply = await self.bus.call(
            Message(
                destination=destination,
                path=path,
                interface=interface,
                member=member,
                signature=signature,
                body=body,
            )
        )
        assert reply is not None
        return reply

    async def _call_on_link(
        self, link: Link, destination: str, path: str, member: str, *, signature: str, body: list[Any]
    ) -> Message:
        """A call to the peripheral's application that fails with org.bluez.Error.Failed if the
        link drops before the answer."""
        call = asyncio.ensure_future(
            self._call_app(destination, path, GATT_CHARACTERISTIC, member, signature=signature, body=body)
        )
        drop = asyncio.ensure_future(link.dropped.wait())
        try:
            done, _ = await asyncio.wait({call, drop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            drop.cancel()
        if call not in done:
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
            raise bluez_error(FAILED, "Not connected")
        return call.result()

    # -- discovery ------------------------------------------------------------------------------

    def set_discovery_filter(self, adapter: AdapterState, sender: str, filters: dict[str, Variant]) -> None:
        known = {"UUIDs": "as", "RSSI": "n", "Pathloss": "q", "Transport": "s", "DuplicateData": "b",
                 "Discoverable": "b", "Pattern": "s"}  # fmt: skip
        for key, variant in filters.items():
            if key not in known or variant.signature != known[key]:
                raise bluez_error(INVALID_ARGUMENTS, f"Invalid arguments in method call: {key}")
        transport = _value(filters.get("Transport", "auto"))
        if transport not in ("auto", "bredr", "le"):
            raise bluez_error(INVALID_ARGUMENTS, f"Invalid arguments in method call: Transport {transport}")
        uuids = [u.lower() for u in _value(filters.get("UUIDs", []))]
        adapter.filters[sender] = DiscoveryFilter(uuids=uuids, transport=transport)
        if adapter.discovery_sessions:
            self._refresh(adapter)

    def start_discovery(self, adapter: AdapterState, sender: str) -> None:
        if not adapter.powered:
            raise bluez_error(NOT_READY, "Resource Not Ready")
        if sender in adapter.discovery_sessions:
            raise bluez_error(IN_PROGRESS, "Operation already in progress")
        was = bool(adapter.discovery_sessions)
        adapter.discovery_sessions.add(sender)
        if not was:
            adapter.interfaces[0].emit_properties_changed({"Discovering": True}, [])
        self._refresh(adapter)

    def stop_discovery(self, adapter: AdapterState, sender: str) -> None:
        if sender not in adapter.discovery_sessions:
            raise bluez_error(FAILED, "No discovery started")
        adapter.discovery_sessions.discard(sender)
        adapter.filters.pop(sender, None)
        if not adapter.discovery_sessions:
            adapter.interfaces[0].emit_properties_changed({"Discovering": False}, [])

    def _matches(self, adapter: AdapterState, advert: Advertisement) -> bool:
        for sender in adapter.discovery_sessions:
            f = adapter.filters.get(sender, DiscoveryFilter())
            if f.transport == "bredr":
                continue  # every fake advertisement is LE
            if not f.uuids or {u.lower() for u in advert.uuids} & set(f.uuids):
                return True
        return False

    def _merged_advert(self, peer: AdapterState) -> Advertisement | None:
        if not peer.advertisements:
            return None
        merged = Advertisement([], {}, {}, "")
        for advert in peer.advertisements.values():
            merged.uuids += [u for u in advert.uuids if u not in merged.uuids]
            merged.service_data.update(advert.service_data)
            merged.manufacturer_data.update(advert.manufacturer_data)
            merged.local_name = merged.local_name or advert.local_name
        return merged

    def _refresh(self, adapter: AdapterState) -> None:
        """What ``adapter``'s discovery hears now from every other powered adapter."""
        if not adapter.discovery_sessions or not adapter.powered:
            return
        for peer in list(self.adapters.values()):
            advert = self._merged_advert(peer)
            if (
                peer is adapter
                or not peer.powered
                or advert is None
                or not self.in_range(adapter, peer)
                or not self._matches(adapter, advert)
            ):
                continue
            device = adapter.devices.get(peer.address)
            if device is None:
                device = Device1(self, adapter, peer.address)
                self._fill(device, advert)
                adapter.devices[peer.address] = device
                self.bus.export(device.path, device)
            else:
                self._fill(device, advert)
                device.emit_properties_changed(
                    {
                        "RSSI": device.rssi,
                        "UUIDs": list(device.uuids_),
                        "ServiceData": {k: Variant("ay", v) for k, v in device.service_data.items()},
                        "ManufacturerData": {
                            k: Variant("ay", v) for k, v in device.manufacturer_data.items()
                        },
                    },
                    [],
                )

    @staticmethod
    def _fill(device: Device1, advert: Advertisement) -> None:
        device.uuids_ = list(advert.uuids)
        device.service_data = dict(advert.service_data)
        device.manufacturer_data = dict(advert.manufacturer_data)
        device.name_ = advert.local_name

    def _refresh_all(self) -> None:
        for adapter in self.adapters.values():
            self._refresh(adapter)

    async def remove_device(self, adapter: AdapterState, path: str) -> None:
        device = next((d for d in adapter.devices.values() if d.path == path), None)
        if device is None:
            raise bluez_error(DOES_NOT_EXIST, "Does Not Exist")
        if device.link is not None:
            self._drop_link(device.link)
        del adapter.devices[device.address_]
        self.bus.unexport(device.path)

    # -- advertising ----------------------------------------------------------------------------

    async def register_advertisement(self, adapter: AdapterState, sender: str, path: str) -> None:
        key = (sender, path)
        if key in adapter.advertisements:
            raise bluez_error(ALREADY_EXISTS, "Already Exists")
        if len(adapter.advertisements) >= self.max_advertisements:
            raise bluez_error(NOT_PERMITTED, "Maximum advertisements reached")
        reply = await self._call_app(
            sender, path, "org.freedesktop.DBus.Properties", "GetAll", signature="s", body=[ADVERTISEMENT]
        )
        if reply.message_type == MessageType.ERROR:
            raise bluez_error(FAILED, f"Failed to parse advertisement: {reply.error_name}")
        props = reply.body[0]
        kind = _value(props.get("Type", ""))
        if kind not in ("broadcast", "peripheral"):
            raise bluez_error(INVALID_ARGUMENTS, f"Invalid arguments in method call: Type {kind!r}")
        advert = Advertisement(
            uuids=[full_uuid(u) for u in _value(props.get("ServiceUUIDs", []))],
            service_data={
                full_uuid(k): bytes(_value(v)) for k, v in _value(props.get("ServiceData", {})).items()
            },
            manufacturer_data={
                k: bytes(_value(v)) for k, v in _value(props.get("ManufacturerData", {})).items()
            },
            local_name=scan_response_name(_value(props.get("LocalName", ""))),
        )
        # Real bluetoothd on a legacy-advertising controller: adsize.py says what it counts.
        length = advertising_length(
            advert.uuids,
            advert.service_data,
            advert.manufacturer_data,
            _value(props["Appearance"]) if "Appearance" in props else None,
            _value(props.get("Includes", [])),
        )
        if length > LEGACY_MAX:
            log.warning("fake bluez: advertising data too long (%d > %d bytes)", length, LEGACY_MAX)
            raise bluez_error(FAILED, "Failed to parse advertisement.")
        adapter.advertisements[key] = advert
        adapter.interfaces[2].emit_properties_changed({"ActiveInstances": len(adapter.advertisements)}, [])
        self._refresh_all()

    async def unregister_advertisement(self, adapter: AdapterState, sender: str, path: str) -> None:
        if adapter.advertisements.pop((sender, path), None) is None:
            raise bluez_error(DOES_NOT_EXIST, "Does Not Exist")
        adapter.interfaces[2].emit_properties_changed({"ActiveInstances": len(adapter.advertisements)}, [])

    # -- GATT applications (peripheral side) ----------------------------------------------------

    async def register_application(self, adapter: AdapterState, sender: str, path: str) -> None:
        if (sender, path) in adapter.apps:
            raise bluez_error(ALREADY_EXISTS, "Already Exists")
        reply = await self._call_app(
            sender, path, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", signature="", body=[]
        )
        if reply.message_type == MessageType.ERROR:
            raise bluez_error(FAILED, f"Failed to read the application's objects: {reply.error_name}")
        objects: dict[str, dict[str, dict[str, Variant]]] = reply.body[0]
        services: dict[str, LocalService] = {}
        for obj_path, ifaces in sorted(objects.items()):
            if GATT_SERVICE in ifaces:
                props = ifaces[GATT_SERVICE]
                services[obj_path] = LocalService(
                    obj_path, _value(props.get("UUID", "")).lower(), bool(_value(props.get("Primary", True)))
                )
        for obj_path, ifaces in sorted(objects.items()):
            if GATT_CHARACTERISTIC in ifaces:
                props = ifaces[GATT_CHARACTERISTIC]
                service = services.get(_value(props.get("Service", "")))
                if service is None:
                    raise bluez_error(
                        FAILED, f"Failed to create entry in database: {obj_path} has no service"
                    )
                service.chars.append(
                    LocalChar(
                        obj_path, _value(props.get("UUID", "")).lower(), list(_value(props.get("Flags", [])))
                    )
                )
        if not services:
            raise bluez_error(FAILED, "No valid service object found")
        adapter.apps[(sender, path)] = App(sender, path, list(services.values()))

    async def unregister_application(self, adapter: AdapterState, sender: str, path: str) -> None:
        if adapter.apps.pop((sender, path), None) is None:
            raise bluez_error(DOES_NOT_EXIST, "Does Not Exist")

    # -- connections (central side) -------------------------------------------------------------

    async def connect(self, device: Device1) -> None:
        central = device.adapter
        self.connects += 1
        if central.discovery_sessions:
            self.connects_while_discovering += 1
        self._injected("Connect")
        if not central.powered:
            raise bluez_error(NOT_READY, "Resource Not Ready")
        if device.connected_:
            # An LE link already up (the other node connected to us, say) answers Connect with
            # success at once: src/device.c dev_connect() returns the method reply when
            # le_state.connected; AlreadyConnected is only the BR/EDR profiles' answer.
            return
        if self._lock.locked():
            raise bluez_error(IN_PROGRESS, "In Progress")
        async with self._lock:
            peer = next((a for a in self.adapters.values() if a.address == device.address_), None)
            if peer is None or not peer.powered or not self.in_range(central, peer):
                raise bluez_error(FAILED, "Host is down")
            mirror = peer.devices.get(central.address)
            if mirror is None:
                mirror = Device1(self, peer, central.address)
                peer.devices[central.address] = mirror
                self.bus.export(mirror.path, mirror)
            link = Link(central, peer, device, mirror, mtu=min(central.mtu, peer.mtu))
            device.link = mirror.link = link
            device.connected_ = mirror.connected_ = True
            if self.unannounced_connects:
                # bluetoothd 5.66's race (src/device.c): the ATT socket came up first and marked
                # the device connected, so the kernel's Device Connected event was dropped as
                # "already connected" and Connected: true was never signalled to clients.
                self.unannounced_connects -= 1
            else:
                device.emit_properties_changed({"Connected": True}, [])
            mirror.emit_properties_changed({"Connected": True}, [])
            # The central discovers the peripheral's applications; then the peripheral's bluetoothd
            # discovers the central's, as BlueZ does for every LE link unless main.conf turns
            # ReverseServiceDiscovery off (src/device.c gatt_client_init() runs in either role).
            # So a Device1 that connected to us also turns ServicesResolved, and bleak on that
            # side (which skips Connect for a connected device) gets the central's services.
            self._resolve(link, peer, device, mirror)
            self._resolve(link, central, mirror, device)

    def _resolve(self, link: Link, server: AdapterState, under: Device1, seen_as: Device1) -> None:
        """``server``'s applications as remote objects under ``under``, then ServicesResolved."""
        handle = 0x0001
        for app in server.apps.values():
            for service in app.services:
                handle += 1
                service_path = f"{under.path}/service{handle:04x}"
                self.bus.export(service_path, RemoteService1(service.uuid, service.primary, under.path))
                link.paths.append(service_path)
                for local in service.chars:
                    handle += 2  # declaration + value handles, as ATT lays them out
                    char = RemoteChar(
                        link, app, local, f"{service_path}/char{handle:04x}", service_path, seen_as
                    )
                    char.iface = RemoteCharacteristic1(self, char)
                    self.bus.export(char.path, char.iface)
                    link.chars.append(char)
                    link.paths.append(char.path)
        # device-api.txt: ServicesResolved turns true once discovery is done (after the
        # objects exist, which is what clients wait for).
        under.services_resolved_ = True
        under.emit_properties_changed({"ServicesResolved": True}, [])

    async def disconnect(self, device: Device1) -> None:
        if device.link is None:
            raise bluez_error(NOT_CONNECTED, "Not Connected")
        self._drop_link(device.link)

    def _drop_link(self, link: Link) -> None:
        if link.dropped.is_set():
            return
        link.dropped.set()
        for char in link.chars:
            if char.subscribers:
                char.subscribers.clear()
                self._maybe_stop_local_notify(char)
        for path in reversed(link.paths):
            if self._bus is not None:
                self.bus.unexport(path)
        for device in (link.device, link.mirror):
            device.link = None
            if device.services_resolved_:
                device.services_resolved_ = False
                device.emit_properties_changed({"ServicesResolved": False}, [])
            device.connected_ = False
            device.emit_properties_changed({"Connected": False}, [])

    # -- remote characteristics -----------------------------------------------------------------

    def _options(self, char: RemoteChar, **extra: Variant) -> dict[str, Variant]:
        return {
            "device": Variant("o", char.seen_as.path),
            "link": Variant("s", "LE"),
            "mtu": Variant("q", char.link.mtu),
            "offset": Variant("q", 0),
            **extra,
        }

    async def read_value(self, char: RemoteChar, options: dict[str, Variant]) -> bytes:
        if char.link.dropped.is_set():
            raise bluez_error(NOT_CONNECTED, "Not connected")
        if "read" not in char.flags:
            raise bluez_error(NOT_PERMITTED, "Read not permitted")
        reply = await self._call_on_link(
            char.link,
            char.app.sender,
            char.local.path,
            "ReadValue",
            signature="a{sv}",
            body=[self._options(char)],
        )
        if reply.message_type == MessageType.ERROR:
            raise bluez_error(FAILED, f"Operation failed with ATT error: {reply.error_name}")
        char.value = bytes(reply.body[0])
        return char.value

    async def write_value(self, char: RemoteChar, value: bytes, options: dict[str, Variant]) -> None:
        if char.link.dropped.is_set():
            raise bluez_error(NOT_CONNECTED, "Not connected")
        kind = _value(options.get("type", "command" if "write" not in char.flags else "request"))
        needed = {"command": "write-without-response", "request": "write", "reliable": "reliable-write"}
        if kind not in needed:
            raise bluez_error(INVALID_ARGUMENTS, f"Invalid arguments in method call: type {kind!r}")
        if needed[kind] not in char.flags:
            raise bluez_error(NOT_PERMITTED, "Write not permitted")
        if kind == "command" and len(value) > char.link.mtu - 3:
            # gatt-api.txt: a write without response carries at most ATT_MTU - 3 bytes.
            raise bluez_error(FAILED, f"Failed to initiate write: {len(value)} > MTU-3 ({char.link.mtu - 3})")
        if len(value) > PEER_VALUE_MAX:
            # The peer's bluetoothd 5.66 (before 5.69) counts the PDU's 2-byte handle against the
            # 512-byte value limit: a longer Write Command is dropped without a word, a Write
            # Request answered Invalid Attribute Value Length (src/shared/gatt-server.c
            # write_cb(): check_length(length, 0); fixed by commit 8bf3a4a26).
            self.oversize_writes += 1
            if kind == "command":
                return
            raise bluez_error(FAILED, "Operation failed with ATT error: 0x0d")
        # The peer's bluetoothd hands the write to its application; awaiting that keeps the
        # order of writes and gives the link backpressure.
        reply = await self._call_on_link(
            char.link,
            char.app.sender,
            char.local.path,
            "WriteValue",
            signature="aya{sv}",
            body=[value, self._options(char, type=Variant("s", kind))],
        )
        self.writes += 1
        if reply.message_type == MessageType.ERROR and kind != "command":
            raise bluez_error(FAILED, f"Operation failed with ATT error: {reply.error_name}")

    def _local_subscribers(self, char: RemoteChar) -> int:
        """Centrals subscribed, over every link, to the peripheral's local characteristic."""
        count = 0
        for adapter in self.adapters.values():
            for device in adapter.devices.values():
                if device.link is not None and device.link.device is device:
                    count += sum(
                        1
                        for c in device.link.chars
                        if c.subscribers and c.app is char.app and c.local.path == char.local.path
                    )
        return count

    async def start_notify(self, char: RemoteChar, sender: str) -> None:
        if char.link.dropped.is_set():
            raise bluez_error(NOT_CONNECTED, "Not connected")
        if not {"notify", "indicate"} & set(char.flags):
            raise bluez_error(NOT_SUPPORTED, "Operation is not supported")
        if sender in char.subscribers:
            raise bluez_error(IN_PROGRESS, "In Progress")
        first = self._local_subscribers(char) == 0
        char.subscribers.add(sender)
        if first:
            # The first central to enable notifications: the peer's bluetoothd calls StartNotify
            # on the application's characteristic (gatt-api.txt, server side).
            await self._call_on_link(
                char.link, char.app.sender, char.local.path, "StartNotify", signature="", body=[]
            )
        if len(char.subscribers) == 1:
            assert char.iface is not None
            char.iface.emit_properties_changed({"Notifying": True}, [])

    async def stop_notify(self, char: RemoteChar, sender: str) -> None:
        if sender not in char.subscribers:
            raise bluez_error(FAILED, "No notify session started")
        char.subscribers.discard(sender)
        if not char.subscribers:
            assert char.iface is not None
            char.iface.emit_properties_changed({"Notifying": False}, [])
            self._maybe_stop_local_notify(char)

    def _maybe_stop_local_notify(self, char: RemoteChar) -> None:
        if self._bus is not None and self._local_subscribers(char) == 0:
            self.bus.send(
                Message(
                    destination=char.app.sender,
                    path=char.local.path,
                    interface=GATT_CHARACTERISTIC,
                    member="StopNotify",
                    flags=1,  # NO_REPLY_EXPECTED
                )
            )

    def _on_local_properties(self, msg: Message) -> None:
        """A peripheral application's characteristic changed Value: notify subscribed centrals."""
        if not msg.body or msg.body[0] != GATT_CHARACTERISTIC or "Value" not in msg.body[1]:
            return
        value = bytes(_value(msg.body[1]["Value"]))
        for adapter in list(self.adapters.values()):
            for device in list(adapter.devices.values()):
                link = device.link
                if link is None or link.device is not device or link.dropped.is_set():
                    continue
                for char in link.chars:
                    if char.subscribers and char.app.sender == msg.sender and char.local.path == msg.path:
                        char.value = value
                        assert char.iface is not None
                        char.iface.emit_properties_changed({"Value": value}, [])
