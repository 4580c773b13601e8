"""The node's GATT server and LE advertisement on one adapter, kept registered across adapter
removal and bluetoothd restarts; each central that talks to it becomes an inbound ``BleLink``.

Built on bluez-peripheral 0.2.0a5 (on dbus-fast), with a thin layer of our own where it gets in
the way:
- Its ``@characteristic`` objects are class attributes, shared by every instance of a Service
  subclass: two peripherals in one process (one per adapter) would export the same objects twice.
  We build the characteristics per instance and add them with ``add_characteristic``.
- Its StartNotify/StopNotify flag check is wrong: bluez/characteristic.py fixes it.
- It has no AcquireNotify, so a notification (a PropertiesChanged of Value) reaches every
  central subscribed to TX. We address notifications: each starts with the one-byte tag of the
  central it is for, which a central learns by reading LINK (bluez/links.py). BlueZ truncates a
  notification to each central's ATT_MTU - 3, which keeps the tag, so another central with a
  smaller MTU still drops it by tag. Cost: every notification is sent to every subscribed
  central on air.
- Registration goes through our ``ObjectCache.call`` (typed errors, no introspection), not its
  ``register`` helpers, and an advertisement's Release does not unexport it, so we can register
  the same objects again when the adapter comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

from bluez_peripheral.advert import Advertisement
from bluez_peripheral.gatt.characteristic import CharacteristicFlags
from bluez_peripheral.gatt.service import Service, ServiceCollection
from dbus_fast import Message
from dbus_fast.errors import DBusError

from bluez.advert import NO_APPEARANCE, advert_name
from bluez.characteristic import NodeCharacteristic
from bluez.component import Component, disconnect_device
from bluez.defs import (
    ATT_MTU_MIN,
    BLUEZ_ROOT,
    BLUEZ_SERVICE,
    NODE_LINK_UUID,
    NODE_RX_UUID,
    NODE_SERVICE_UUID,
    NODE_TX_UUID,
    PEER_ID_PREFIX_LEN,
    ErrorName,
    Interface,
)
from bluez.errors import BluezCallError
from bluez.links import TAG_LEN, BleLink, LinkFailed, LinkFailReason, LinkHandler, LinkRole, value_room
from bluez.objects import (
    AdapterAdded,
    AdapterChanged,
    AdapterRemoved,
    BluezBack,
    BluezGone,
    BusLost,
    DeviceAdded,
    DeviceChanged,
    DeviceRemoved,
    ObjectCache,
    ObjectEvent,
)
from node.errors import LocalError

log = logging.getLogger(__name__)

APP_ROOT = "/org/bitcraps/ble"
BACKOFF_MIN = 0.25
BACKOFF_MAX = 4.0
_MAX_TAG = 255  # tag 0 is never given, so a zeroed notification is nobody's


def _address_from_path(path: str) -> str:
    """device-api.txt: ".../dev_XX_XX_XX_XX_XX_XX" -> "XX:XX:XX:XX:XX:XX"."""
    return path.rsplit("/dev_", 1)[-1].replace("_", ":")


def _option(options: Any, name: str) -> Any:
    return getattr(options, name, None)


class PeripheralLink(BleLink):
    """A central connected to our GATT service: we receive its RX writes, send by addressed TX
    notifications."""

    def __init__(
        self,
        owner: NodePeripheral,
        handler: LinkHandler,
        device_path: str,
        *,
        address: str,
        tag: int,
        mtu: int,
    ) -> None:
        super().__init__(handler, LinkRole.INBOUND, owner.adapter, address, mtu)
        self._owner = owner
        self.device_path = device_path
        self.tag = tag

    @property
    def max_chunk(self) -> int:
        return value_room(self.mtu) - TAG_LEN

    async def send(self, data: bytes) -> None:
        self._check(data)
        self._owner.notify(self, data)

    async def drain(self) -> None:
        # A notification is a signal, sent without a reply: nothing paces a burst of them but
        # this (bluez/objects.py ObjectCache.drain).
        await self._owner.drain()

    async def aclose(self) -> None:
        if self._finish(None):
            self._owner.forget(self)
            await self._owner.disconnect(self.device_path)


class NodePeripheral(Component):
    """``async with NodePeripheral(cache, "hci0", peer_id_prefix, handler)``: serves and advertises
    the node's GATT service on that adapter while the adapter exists, re-registering by itself."""

    def __init__(
        self,
        cache: ObjectCache,
        adapter: str,
        peer_id_prefix: bytes,
        handler: LinkHandler,
    ) -> None:
        if len(peer_id_prefix) != PEER_ID_PREFIX_LEN:
            raise LocalError(f"peer id prefix is {len(peer_id_prefix)} bytes, expected {PEER_ID_PREFIX_LEN}")
        super().__init__()
        self._cache = cache
        self.adapter = adapter
        self._adapter_path = f"{BLUEZ_ROOT}/{adapter}"
        self._handler = handler
        self._app_path = f"{APP_ROOT}/{adapter}"
        self._advert_path = f"{APP_ROOT}/{adapter}/advert"
        self._service = Service(NODE_SERVICE_UUID, True)
        self._rx = NodeCharacteristic(NODE_RX_UUID, CharacteristicFlags.WRITE_WITHOUT_RESPONSE)
        self._rx.setter(self._on_write)
        self._tx = NodeCharacteristic(NODE_TX_UUID, CharacteristicFlags.NOTIFY)
        self._link_char = NodeCharacteristic(NODE_LINK_UUID, CharacteristicFlags.READ)
        self._link_char(self._on_link_read)
        for char in (self._rx, self._tx, self._link_char):
            self._service.add_characteristic(char)
        self._collection = ServiceCollection([self._service])
        # Fits a legacy advertisement on BlueZ 5.66: bluez/advert.py says why this shape.
        self._advert = Advertisement(
            advert_name(peer_id_prefix),
            [NODE_SERVICE_UUID],
            appearance=NO_APPEARANCE,
            release_callback=self._on_release,
        )
        self._links: dict[str, PeripheralLink] = {}
        self._app_registered = False
        self._advert_registered = False
        self._generation = 0  # bumped whenever bluetoothd forgets our registrations
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()  # set while both registrations hold
        self.registrations = 0  # times the service and advertisement were (re)registered
        self.register_failures = 0
        self.bad_writes = 0

    @property
    def links(self) -> Mapping[str, PeripheralLink]:
        """Inbound links by the central's device path."""
        return dict(self._links)

    async def _start(self, stack: AsyncExitStack) -> None:
        bus = self._cache.bus
        self._collection.export(bus, path=self._app_path)
        stack.callback(self._collection.unexport)
        self._advert.export(bus, path=self._advert_path)
        stack.callback(self._advert.unexport)
        stack.push_async_callback(self._unregister)
        stack.callback(self._cache.subscribe(self._on_event))
        stack.callback(self._close_links, None)
        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        stack.callback(tasks.create_task(self._keep_registered()).cancel)

    # -- registration ---------------------------------------------------------------------------

    async def _keep_registered(self) -> None:
        delay = BACKOFF_MIN
        while True:
            self._wake.clear()
            if self.ready.is_set() or self._cache.unavailable(self.adapter) is not None:
                await self._wake.wait()
                continue
            generation = self._generation
            try:
                await self._register()
            except BluezCallError as error:
                self.register_failures += 1
                log.warning("ble: registering on %s failed, retry in %.2f s: %s", self.adapter, delay, error)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            delay = BACKOFF_MIN
            if generation == self._generation:
                self.registrations += 1
                self.ready.set()
                log.info("ble: serving and advertising on %s", self.adapter)

    async def _register(self) -> None:
        if not self._app_registered:
            await self._manager_call(
                Interface.GATT_MANAGER, "RegisterApplication", "oa{sv}", [self._app_path, {}]
            )
            self._app_registered = True
        if not self._advert_registered:
            await self._manager_call(
                Interface.LE_ADVERTISING_MANAGER, "RegisterAdvertisement", "oa{sv}", [self._advert_path, {}]
            )
            self._advert_registered = True

    async def _manager_call(self, interface: Interface, member: str, signature: str, body: list[Any]) -> None:
        try:
            await self._cache.call(
                Message(
                    destination=BLUEZ_SERVICE,
                    path=self._adapter_path,
                    interface=interface.value,
                    member=member,
                    signature=signature,
                    body=body,
                ),
                f"{interface.value.rsplit('.', 1)[-1]}.{member} on {self._adapter_path}",
            )
        except BluezCallError as error:
            # Still registered from before (bluetoothd kept it): that is what we wanted.
            if error.reason is not ErrorName.ALREADY_EXISTS:
                raise

    async def _unregister(self) -> None:
        calls = []
        if self._advert_registered:
            calls.append((Interface.LE_ADVERTISING_MANAGER, "UnregisterAdvertisement", self._advert_path))
        if self._app_registered:
            calls.append((Interface.GATT_MANAGER, "UnregisterApplication", self._app_path))
        self._forgotten()
        for interface, member, path in calls:
            try:
                await self._manager_call(interface, member, "o", [path])
            except BluezCallError as error:
                # Gone with the adapter or bluetoothd: nothing left to undo.
                log.debug("ble: %s", error)

    def _forgotten(self) -> None:
        self._app_registered = self._advert_registered = False
        self._generation += 1
        self.ready.clear()

    def _on_release(self) -> None:
        # advertising-api.txt: bluetoothd dropped the advertisement (adapter gone, or it
        # restarts). Keep the object exported; _keep_registered registers it again.
        self._advert_registered = False
        self.ready.clear()
        self._wake.set()

    def _on_event(self, event: ObjectEvent) -> None:
        match event:
            case AdapterRemoved(path=path) if path == self._adapter_path:
                self._forgotten()
                self._close_links(LinkFailed(LinkFailReason.LOST, f"adapter {self.adapter} was removed"))
            case BluezGone() | BusLost():
                self._forgotten()
                self._close_links(LinkFailed(LinkFailReason.LOST, "bluetoothd left the system bus"))
            case AdapterChanged(adapter=adapter) if (
                adapter.path == self._adapter_path and not adapter.powered
            ):
                # bluetoothd keeps our registrations while the adapter is off (and answers
                # AlreadyExists if asked again); only the links end.
                self._close_links(LinkFailed(LinkFailReason.LOST, f"adapter {self.adapter} was powered off"))
            case AdapterAdded() | AdapterChanged() | BluezBack():
                self._wake.set()
            case DeviceChanged(device=device) | DeviceAdded(device=device) if (
                device.path in self._links and not device.connected
            ):
                # DeviceAdded: the central's device object was made anew, so the one our link
                # was on is gone even if its removal never reached us.
                self._lost(device.path, "the central disconnected")
            case DeviceRemoved(path=path) if path in self._links:
                self._lost(path, "bluetoothd removed the central's device")

    # -- links ----------------------------------------------------------------------------------

    def _lost(self, device_path: str, why: str) -> None:
        link = self._links.pop(device_path, None)
        if link is not None:
            link._finish(LinkFailed(LinkFailReason.LOST, f"{link.address} on {self.adapter}: {why}"))

    def _close_links(self, error: LinkFailed | None) -> None:
        links, self._links = list(self._links.values()), {}
        for link in links:
            link._finish(error)

    def forget(self, link: PeripheralLink) -> None:
        if self._links.get(link.device_path) is link:
            del self._links[link.device_path]

    def _link_for(self, options: Any, *, opens: bool) -> PeripheralLink:
        """The inbound link of the request's device; only a LINK read (``opens``) makes one.

        A central reads its tag before it writes (bluez/links.py), so a write from a device
        with no link is a stale one (in flight when its link dropped, handled after we closed
        the link) or a stack that does not speak our protocol: refused, never a new link."""
        device_path = _option(options, "device")
        if not isinstance(device_path, str) or "/dev_" not in device_path:
            raise DBusError(ErrorName.FAILED.value, "the request names no device")
        mtu = _option(options, "mtu")
        link = self._links.get(device_path)
        if link is None and not opens:
            raise DBusError(ErrorName.FAILED.value, f"no link from {device_path}: read LINK first")
        if link is None:
            used = {existing.tag for existing in self._links.values()}
            tag = next((t for t in range(1, _MAX_TAG + 1) if t not in used), None)
            if tag is None:
                raise DBusError(ErrorName.FAILED.value, f"{_MAX_TAG} centrals are linked already")
            device = self._cache.devices.get(device_path)
            address = device.address if device and device.address else _address_from_path(device_path)
            link = PeripheralLink(
                self, self._handler, device_path, address=address, tag=tag, mtu=mtu or ATT_MTU_MIN
            )
            self._links[device_path] = link
            link._open()
        elif isinstance(mtu, int) and mtu >= ATT_MTU_MIN:
            link.mtu = mtu  # bluetoothd passes the current ATT_MTU with every request
        return link

    def _on_link_read(self, _service: Any, options: Any) -> bytes:
        return bytes([self._link_for(options, opens=True).tag])

    def _on_write(self, _service: Any, data: bytes, options: Any) -> None:
        try:
            link = self._link_for(options, opens=False)
        except DBusError:
            self.bad_writes += 1
            raise
        link._deliver(bytes(data))

    def notify(self, link: PeripheralLink, data: bytes) -> None:
        if not self._tx.notifying:
            raise LinkFailed(LinkFailReason.NOT_SUBSCRIBED, f"to {link.address} on {self.adapter}")
        self._tx.changed(bytes([link.tag]) + data)

    async def drain(self) -> None:
        try:
            await self._cache.drain()
        except BluezCallError as error:
            raise LinkFailed(LinkFailReason.LOST, f"the system bus on {self.adapter}: {error}") from error

    async def disconnect(self, device_path: str) -> None:
        try:
            await disconnect_device(self._cache, device_path)
        except BluezCallError as error:
            log.debug("ble: %s", error)  # already gone: the link is down either way
