"""The central role: connections to other nodes' GATT services with bleak (BlueZ backend), as
outbound ``BleLink``s, with Home Assistant's lessons (bleak-retry-connector, habluetooth):

- a new BleakClient per connection attempt, never reused;
- a connect timeout of at least 10 s, a few attempts with back-off 0.25-4 s, retried by error
  TYPE only: bluetoothd answers every LE connection failure (le-connection-abort-by-local, the
  controller out of connection slots, a timeout) as org.bluez.Error.Failed with the errno as
  text (src/error.c, btd_error_le_errno), and a second Connect while one is queued as
  org.bluez.Error.InProgress; so ``BluezFailed``, ``BluezInProgress`` and our own timeout are
  retried. So is bleak giving up on a link bluetoothd made without announcing it
  (``BluezConnectUnannounced``: a race in bluetoothd 5.66 that the real-bluetoothd VM found),
  and a link that drops while it is being set up (the characteristic's StartNotify or
  ReadValue answers NotConnected, or UnknownObject as BlueZ removed the link's GATT objects
  under us: two nodes that connected to each other at once share one LE link, and either end
  closing it takes it from both). Nothing else is (Device1.Connect's UnknownObject, which bleak
  raises as BleakDeviceNotFoundError: BlueZ forgot the device, scan again first);
- discovery paused while a link is made (``quiet_radio``, the scanner's ``paused``): with a scan
  running, the kernel's Device Connected event can queue behind Device Found events, and
  bluetoothd 5.66 then never signals Connected (``BluezConnectUnannounced``); without Device
  Found events there is nothing ahead of it (Android's guidance too: stop scanning to connect);
- a slot limit per adapter (default 5; controllers handle about that many links well);
- stale connections closed at start: BlueZ keeps a link when the process that made it dies, so
  any of our adapter's devices still Connected and serving our UUID is disconnected.

The negotiated ATT_MTU comes from the RX characteristic (BlueZ's "MTU" property, which bleak
turns into ``max_write_without_response_size``): bleak's ``client.mtu_size`` on BlueZ is 23
unless AcquireWrite was called, which would take a socket we do not use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.exc import BleakDBusError, BleakDeviceNotFoundError, BleakError
from dbus_fast.errors import DBusError, InvalidInterfaceNameError

from bluez.component import Component, disconnect_device
from bluez.defs import (
    ATT_HEADER,
    ATT_MTU_MIN,
    BLUEZ_ROOT,
    NODE_LINK_UUID,
    NODE_RX_UUID,
    NODE_SERVICE_UUID,
    NODE_TX_UUID,
    ErrorName,
    device_path,
)
from bluez.errors import (
    BluezCallError,
    BluezConnectUnannounced,
    BluezFailed,
    BluezInProgress,
    BluezNotConnected,
    BluezUnknownObject,
    from_dbus_error,
)
from bluez.links import (
    TAG_LEN,
    BleLink,
    LinkFailed,
    LinkFailReason,
    LinkHandler,
    LinkMisuse,
    LinkMisuseReason,
    LinkRole,
    value_room,
)
from bluez.objects import (
    AdapterChanged,
    AdapterRemoved,
    BluezGone,
    BusLost,
    DeviceAdded,
    DeviceChanged,
    DeviceRemoved,
    ObjectCache,
    ObjectEvent,
)

log = logging.getLogger(__name__)

DEFAULT_SLOTS = 5
CONNECT_TIMEOUT = 10.0
ATTEMPTS = 3
BACKOFF_MIN = 0.25
BACKOFF_MAX = 4.0
DISCONNECT_TIMEOUT = 5.0
# Errors worth another attempt (see the module's doc): decided by type, never by text.
TRANSIENT: tuple[type[Exception], ...] = (
    BluezConnectUnannounced,
    BluezInProgress,
    BluezFailed,
    BluezNotConnected,
    BluezUnknownObject,
    TimeoutError,
)


def typed(error: BleakDBusError, call: str) -> BluezCallError:
    """bleak's D-Bus error as our typed error, chosen by its error name."""
    try:
        return from_dbus_error(DBusError(error.dbus_error, error.dbus_error_details or ""), call)
    except InvalidInterfaceNameError:
        return BluezCallError(ErrorName.OTHER, call, error.dbus_error or "an unnamed error", "")


class CentralLink(BleLink):
    """Our central connected to a peer's peripheral: RX writes out, tagged TX notifications in."""

    def __init__(
        self, connector: Connector, handler: LinkHandler, client: BleakClient, address: str, path: str
    ) -> None:
        super().__init__(handler, LinkRole.OUTBOUND, connector.adapter, address, ATT_MTU_MIN)
        self.device_path = path
        self._connector = connector
        self._client = client
        self._rx: BleakGATTCharacteristic | None = None
        self._lock = asyncio.Lock()  # one write in flight keeps chunks in order
        self.tag: int | None = None
        self.foreign_notifications = 0  # meant for another central on the same peripheral

    @property
    def max_chunk(self) -> int:
        return value_room(self.mtu)

    async def send(self, data: bytes) -> None:
        self._check(data)
        async with self._lock:
            self._check(data)
            assert self._rx is not None  # set before the link is handed out
            try:
                await self._client.write_gatt_char(self._rx, data, response=False)
            except BleakDBusError as error:
                cause: Exception = typed(error, f"GattCharacteristic1.WriteValue to {self.address}")
            except (BleakError, EOFError) as error:
                # bleak's own "not connected" (no D-Bus name to type it by), or EOFError: the
                # link was lost and its client's bus closed while this write was in flight.
                cause = error
            else:
                return
        failure = LinkFailed(LinkFailReason.WRITE_FAILED, f"{len(data)} bytes to {self.address}: {cause}")
        self._fail(failure)
        raise failure from cause

    async def aclose(self) -> None:
        if self._finish(None):
            await self._connector.release(self)

    def _fail(self, error: LinkFailed) -> None:
        if self._finish(error):
            self._connector.release_later(self)

    def _on_disconnected(self, _client: BleakClient) -> None:
        self._fail(LinkFailed(LinkFailReason.LOST, f"{self.address} disconnected from {self.adapter}"))

    def _on_notify(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        if self.tag is None or len(data) < TAG_LEN or data[0] != self.tag:
            self.foreign_notifications += 1
            return
        self._deliver(bytes(data[TAG_LEN:]))


class Connector(Component):
    """``async with Connector(cache, "hci0", handler) as connector``; ``await
    connector.connect(address)`` -> an open ``CentralLink`` (the handler heard ``link_opened``)."""

    def __init__(
        self,
        cache: ObjectCache,
        adapter: str,
        handler: LinkHandler,
        *,
        slots: int = DEFAULT_SLOTS,
        slot_wait: float = 0.0,
        connect_timeout: float = CONNECT_TIMEOUT,
        attempts: int = ATTEMPTS,
        quiet_radio: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        super().__init__()
        self._cache = cache
        self.adapter = adapter
        self._adapter_path = f"{BLUEZ_ROOT}/{adapter}"
        self._handler = handler
        self._slots = asyncio.Semaphore(slots)
        self._slot_wait = slot_wait
        self._connect_timeout = connect_timeout
        self._attempts = attempts
        self._quiet_radio = quiet_radio
        self._links: dict[str, CentralLink] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self.retries = 0
        self.stale_closed = 0

    @property
    def links(self) -> Mapping[str, CentralLink]:
        """Open outbound links by peer address."""
        return dict(self._links)

    async def _start(self, stack: AsyncExitStack) -> None:
        await self._close_stale()
        self._tasks = await stack.enter_async_context(asyncio.TaskGroup())
        stack.push_async_callback(self._close_all)
        stack.callback(self._cache.subscribe(self._on_event))

    def _on_event(self, event: ObjectEvent) -> None:
        # bleak's client hears only its device's Connected turning false; a bluetoothd that
        # restarts or an adapter unplugged sends no such signal, so the cache tells us.
        match event:
            case AdapterRemoved(path=path) if path == self._adapter_path:
                self._lose_all(f"adapter {self.adapter} was removed")
            case AdapterChanged(adapter=adapter) if (
                adapter.path == self._adapter_path and not adapter.powered
            ):
                self._lose_all(f"adapter {self.adapter} was powered off")
            case BluezGone() | BusLost():
                self._lose_all("bluetoothd left the system bus")
            case DeviceRemoved(path=path):
                self._lose(path, "bluetoothd removed the device")
            case DeviceChanged(device=device) | DeviceAdded(device=device) if not device.connected:
                # DeviceAdded: the device object was made anew, so the one our link was on is
                # gone even if its removal never reached us.
                self._lose(device.path, "the device disconnected")

    def _lose(self, path: str, why: str) -> None:
        for link in list(self._links.values()):
            if link.device_path == path:
                link._fail(LinkFailed(LinkFailReason.LOST, f"{link.address} on {self.adapter}: {why}"))

    def _lose_all(self, why: str) -> None:
        for link in list(self._links.values()):
            link._fail(LinkFailed(LinkFailReason.LOST, f"{link.address} on {self.adapter}: {why}"))

    async def _close_all(self) -> None:
        for link in list(self._links.values()):
            await link.aclose()

    async def _close_stale(self) -> None:
        for device in self._cache.devices.values():
            uuids = {uuid.lower() for uuid in device.uuids}
            if device.adapter != self._adapter_path or not device.connected or NODE_SERVICE_UUID not in uuids:
                continue
            try:
                await disconnect_device(self._cache, device.path)
            except BluezCallError as error:
                log.warning("ble: could not close the stale link to %s: %s", device.address, error)
            else:
                self.stale_closed += 1
                log.info("ble: closed a stale link to %s on %s", device.address, self.adapter)

    # -- connecting -----------------------------------------------------------------------------

    async def connect(self, address: str) -> CentralLink:
        if address in self._links:
            return self._links[address]
        await self._take_slot(address)
        try:
            link = await self._connect_with_retries(address)
        except BaseException:
            self._slots.release()
            raise
        self._links[address] = link
        link._open()
        return link

    async def _take_slot(self, address: str) -> None:
        try:
            if self._slot_wait <= 0 and self._slots.locked():
                raise TimeoutError
            async with asyncio.timeout(self._slot_wait):
                await self._slots.acquire()
        except TimeoutError:
            raise LinkMisuse(
                LinkMisuseReason.SLOTS_FULL,
                f"{len(self._links)} links on {self.adapter}, none freed within {self._slot_wait:.1f} s "
                f"for {address}",
            ) from None

    async def _connect_with_retries(self, address: str) -> CentralLink:
        delay = BACKOFF_MIN
        for attempt in range(1, self._attempts + 1):
            try:
                return await self._connect_once(address)
            except TRANSIENT as error:
                if attempt == self._attempts:
                    raise LinkFailed(
                        LinkFailReason.CONNECT_FAILED,
                        f"{address} on {self.adapter} after {attempt} attempts: {error!r}",
                    ) from error
                self.retries += 1
                log.info("ble: connecting to %s failed (%r), retry in %.2f s", address, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
            except (BluezCallError, BleakError) as error:
                raise LinkFailed(
                    LinkFailReason.CONNECT_FAILED, f"{address} on {self.adapter}: {error!r}"
                ) from error
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _connect_once(self, address: str) -> CentralLink:
        path = device_path(self._adapter_path, address)
        link_ref: list[CentralLink] = []

        def disconnected(client: BleakClient) -> None:
            for link in link_ref:
                link._on_disconnected(client)

        client = BleakClient(
            # A BLEDevice by path: bleak would otherwise start a scan of its own to find it.
            BLEDevice(address, None, {"path": path, "props": None}),
            disconnected_callback=disconnected,
            timeout=self._connect_timeout,
            bluez={"adapter": self.adapter},
        )
        link = CentralLink(self, self._handler, client, address, path)
        link_ref.append(link)
        quiet = self._quiet_radio() if self._quiet_radio is not None else contextlib.nullcontext()
        try:
            async with quiet, asyncio.timeout(self._connect_timeout):
                await self._set_up(client, link, path)
        except BaseException:
            link._finish(None)
            await self._disconnect(client)
            raise
        return link

    async def _set_up(self, client: BleakClient, link: CentralLink, path: str) -> None:
        try:
            await client.connect()
        except BleakDBusError as error:
            raise typed(error, f"Device1.Connect on {path}") from error
        except BleakDeviceNotFoundError as error:
            raise LinkFailed(LinkFailReason.UNKNOWN_DEVICE, f"{path}: {error}") from error
        except BleakError as error:
            # Not a D-Bus error and not an unknown device: bleak's own verdict while it waited for
            # service discovery, i.e. it saw the device not connected (bluez/errors.py says why
            # bluetoothd 5.66 can leave Connected unannounced). bleak has disconnected by now.
            raise BluezConnectUnannounced(f"{path}: bleak gave up on the new link: {error}") from error
        chars = {
            uuid: client.services.get_characteristic(uuid)
            for uuid in (NODE_RX_UUID, NODE_TX_UUID, NODE_LINK_UUID)
        }
        rx, tx, tag_char = chars[NODE_RX_UUID], chars[NODE_TX_UUID], chars[NODE_LINK_UUID]
        if rx is None or tx is None or tag_char is None:
            missing = ", ".join(uuid for uuid, char in chars.items() if char is None)
            raise LinkFailed(LinkFailReason.NOT_OUR_SERVICE, f"{link.address} lacks {missing}")
        link._rx = rx
        link.mtu = rx.max_write_without_response_size + ATT_HEADER
        try:
            # Subscribe first, then learn our tag: no notification meant for us is missed.
            await client.start_notify(tx, link._on_notify)
            value = await client.read_gatt_char(tag_char)
        except BleakDBusError as error:
            raise typed(error, f"setting up the link to {link.address}") from error
        if len(value) != TAG_LEN:
            raise LinkFailed(
                LinkFailReason.NOT_OUR_SERVICE, f"{link.address} answered a {len(value)}-byte tag"
            )
        link.tag = value[0]

    # -- closing --------------------------------------------------------------------------------

    async def release(self, link: CentralLink) -> None:
        if self._links.get(link.address) is link:
            del self._links[link.address]
            self._slots.release()
        await self._disconnect(link._client)

    def release_later(self, link: CentralLink) -> None:
        """Release ``link`` from a callback (no await there): in the connector's task group."""
        if self._tasks is not None:
            self._tasks.create_task(self.release(link))

    async def _disconnect(self, client: BleakClient) -> None:
        try:
            async with asyncio.timeout(DISCONNECT_TIMEOUT):
                await client.disconnect()
        except (BleakError, TimeoutError) as error:
            log.debug("ble: disconnecting %s: %r", client.address, error)
