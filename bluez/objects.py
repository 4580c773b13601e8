"""The node's one view of bluetoothd: a cache of BlueZ's object manager over the system bus.

As bleak's BlueZManager does (and STYLE.md "Watchers subscribe first, then snapshot"), it adds its
match rules for InterfacesAdded/InterfacesRemoved, PropertiesChanged and org.bluez's
NameOwnerChanged BEFORE it calls GetManagedObjects, so no change is lost in the gap; D-Bus delivers
a reply after every signal sent before it, so the snapshot replaces what came earlier and later
signals apply on top. It keeps typed snapshots (``AdapterProps``, ``DeviceProps``), updates them
before it tells subscribers, and follows bluetoothd leaving and coming back (a restart) by taking
a fresh snapshot.

One cache per process (``ObjectCache.current()``); opening a second while one is open is a
``LocalError``. A missing bus is ``BluezUnavailable(NO_BUS)`` at open; a missing bluetoothd or
adapter is a state (``unavailable()``), never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from bluez.defs import (
    BLUEZ_ROOT,
    BLUEZ_SERVICE,
    DBUS_PATH,
    DBUS_SERVICE,
    AdapterProps,
    DeviceProps,
    ErrorName,
    Interface,
)
from bluez.errors import BluezCallError, BluezError, BluezUnavailable, UnavailableReason, from_dbus_error
from node.errors import LocalError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AdapterAdded:
    adapter: AdapterProps


@dataclass(frozen=True, slots=True)
class AdapterChanged:
    adapter: AdapterProps


@dataclass(frozen=True, slots=True)
class AdapterRemoved:
    path: str


@dataclass(frozen=True, slots=True)
class DeviceAdded:
    device: DeviceProps


@dataclass(frozen=True, slots=True)
class DeviceChanged:
    device: DeviceProps


@dataclass(frozen=True, slots=True)
class DeviceRemoved:
    path: str


@dataclass(frozen=True, slots=True)
class BluezGone:
    """bluetoothd left the bus (stopped or crashed); every adapter was reported removed first."""


@dataclass(frozen=True, slots=True)
class BluezBack:
    """bluetoothd took org.bluez again and the cache holds its fresh snapshot (adapters reported
    added first)."""


@dataclass(frozen=True, slots=True)
class BusLost:
    """The system bus connection itself broke; this cache is dead and must be opened again."""


ObjectEvent = (
    AdapterAdded
    | AdapterChanged
    | AdapterRemoved
    | DeviceAdded
    | DeviceChanged
    | DeviceRemoved
    | BluezGone
    | BluezBack
    | BusLost
)
Subscriber = Callable[[ObjectEvent], None]


class SecondCacheError(BluezError, LocalError):
    """An ObjectCache was opened while another one is open in this process."""


def _match(**rule: str) -> str:
    return ",".join(f"{key}='{value}'" for key, value in rule.items())


# The rules bleak's BlueZManager adds, plus org.bluez's owner: arg0path limits the object manager
# signals to BlueZ's tree, sender limits every rule to the current owner of org.bluez.
_RULES = (
    _match(
        type="signal",
        sender=BLUEZ_SERVICE,
        interface=Interface.OBJECT_MANAGER.value,
        member="InterfacesAdded",
        arg0path=f"{BLUEZ_ROOT}/",
    ),
    _match(
        type="signal",
        sender=BLUEZ_SERVICE,
        interface=Interface.OBJECT_MANAGER.value,
        member="InterfacesRemoved",
        arg0path=f"{BLUEZ_ROOT}/",
    ),
    _match(
        type="signal",
        sender=BLUEZ_SERVICE,
        interface=Interface.PROPERTIES.value,
        member="PropertiesChanged",
        path_namespace=BLUEZ_ROOT,
    ),
    _match(
        type="signal",
        sender=DBUS_SERVICE,
        interface=Interface.DBUS.value,
        member="NameOwnerChanged",
        arg0=BLUEZ_SERVICE,
    ),
)


# A snapshot is taken again while change signals keep coming before it names the owner; a
# bluetoothd still exporting settles within a few.
MAX_SNAPSHOTS = 5
_CHANGES = frozenset({"InterfacesAdded", "InterfacesRemoved", "PropertiesChanged"})


class ObjectCache:
    """``async with ObjectCache() as cache``: adapters and devices of bluetoothd, kept current."""

    _open: ClassVar[ObjectCache | None] = None

    def __init__(self) -> None:
        self._bus: MessageBus | None = None
        self._owner: str | None = None  # org.bluez's unique name, None while bluetoothd is away
        self._adapters: dict[str, AdapterProps] = {}
        self._devices: dict[str, DeviceProps] = {}
        self._subscribers: list[Subscriber] = []
        self._resync: asyncio.Queue[None] = asyncio.Queue()
        self._stack = AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []
        self._bus_lost = False
        self._missed = 0  # change signals that came while no owner was known (see _settled_snapshot)
        self._journal: list[Message] | None = None  # change signals during a snapshot (see _snapshot)
        self.subscriber_errors = 0

    @classmethod
    def current(cls) -> ObjectCache | None:
        """The process's open cache, if any."""
        return cls._open

    async def __aenter__(self) -> ObjectCache:
        if ObjectCache._open is not None:
            raise SecondCacheError("an ObjectCache is already open in this process; share that one")
        try:
            self._bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        except (OSError, ValueError, DBusError, EOFError) as error:
            # ValueError: a malformed DBUS_SYSTEM_BUS_ADDRESS; OSError: no socket at it.
            raise BluezUnavailable(UnavailableReason.NO_BUS, f"cannot connect: {error!r}") from error
        ObjectCache._open = self
        try:
            self._stack.callback(self._bus.disconnect)
            self._bus.add_message_handler(self._on_message)
            for rule in _RULES:
                await self._call_dbus("AddMatch", "s", [rule])
            await self._settled_snapshot(initial=True)
            tasks = await self._stack.enter_async_context(asyncio.TaskGroup())
            self._tasks = [
                tasks.create_task(self._resync_loop()),
                tasks.create_task(self._watch_bus(self._bus)),
            ]
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        for task in self._tasks:
            task.cancel()
        try:
            await self._stack.aclose()
        finally:
            if ObjectCache._open is self:
                ObjectCache._open = None

    # -- what users read ------------------------------------------------------------------------

    @property
    def bus(self) -> MessageBus:
        if self._bus is None:
            raise BluezUnavailable(UnavailableReason.NO_BUS, "the object cache is not open")
        return self._bus

    @property
    def adapters(self) -> Mapping[str, AdapterProps]:
        """Adapters by object path."""
        return dict(self._adapters)

    @property
    def devices(self) -> Mapping[str, DeviceProps]:
        """Devices by object path."""
        return dict(self._devices)

    @property
    def bluez_present(self) -> bool:
        return self._owner is not None

    def unavailable(self, adapter: str | None = None) -> BluezUnavailable | None:
        """Why BLE cannot run now on ``adapter`` (a name like "hci0", or any adapter), or None."""
        try:
            self.adapter(adapter)
        except BluezUnavailable as error:
            return error
        return None

    def adapter(self, name: str | None = None) -> AdapterProps:
        """The adapter called ``name`` (or the first by name); BluezUnavailable if there is none."""
        if self._bus_lost:
            raise BluezUnavailable(UnavailableReason.NO_BUS, "the system bus connection was lost")
        if self._owner is None:
            raise BluezUnavailable(UnavailableReason.NO_BLUEZ, "org.bluez has no owner on the system bus")
        found = sorted(
            (a for a in self._adapters.values() if name is None or a.name == name), key=lambda a: a.name
        )
        if not found:
            wanted = f"adapter {name}" if name else "any adapter"
            have = ", ".join(sorted(a.name for a in self._adapters.values())) or "none"
            raise BluezUnavailable(UnavailableReason.NO_ADAPTER, f"bluetoothd has no {wanted} (has: {have})")
        powered = [a for a in found if a.powered]
        if not powered:
            # Powered off by an operator (bluetoothctl power off), rfkill, or not yet powered
            # by bluetoothd's AutoEnable: it can neither advertise, scan nor connect.
            raise BluezUnavailable(
                UnavailableReason.POWERED_OFF,
                f"adapter {found[0].name} is powered off (bluetoothctl power on; rfkill list)",
            )
        return powered[0]

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber`` with every change, after the cache holds it; returns the
        unsubscribe function."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(subscriber)

        return unsubscribe

    async def drain(self) -> None:
        """Return once the bus daemon has read everything we sent before: it answers a Ping
        after the messages ahead of it. dbus-fast treats a full socket buffer (EAGAIN) as a
        broken connection, so a burst of signals (GATT notifications) must wait for this."""
        await self.call(
            Message(
                destination=DBUS_SERVICE, path=DBUS_PATH, interface="org.freedesktop.DBus.Peer", member="Ping"
            ),
            "org.freedesktop.DBus.Peer.Ping",
        )

    async def call(self, message: Message, what: str) -> Message:
        """Send a method call; an error reply raises its typed ``BluezCallError``."""
        reply = await self.bus.call(message)
        if reply is None:
            raise BluezCallError(ErrorName.NO_REPLY, what, ErrorName.NO_REPLY.value, "no reply")
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise from_dbus_error(DBusError(reply.error_name or "", text, reply), what)
        return reply

    # -- keeping it current ---------------------------------------------------------------------

    async def _call_dbus(self, member: str, signature: str, body: list[Any]) -> Message:
        return await self.call(
            Message(
                destination=DBUS_SERVICE,
                path=DBUS_PATH,
                interface=Interface.DBUS.value,
                member=member,
                signature=signature,
                body=body,
            ),
            f"org.freedesktop.DBus.{member}",
        )

    async def _snapshot(self, *, initial: bool) -> None:
        """Take org.bluez's owner and objects afresh and report what changed.

        The change signals that arrive while the snapshot is under way are replayed on it: one
        sent after the GetManagedObjects reply can be handled before this coroutine resumes
        (dbus-fast dispatches every message of a read at once), and the snapshot would
        otherwise overwrite it with the older state. A device added so, then forgotten, would
        never report its link dropping (the survival test caught a peripheral that kept a dead
        link after bluetoothd restarted). Each signal sets state, so replaying the ones the
        reply already holds changes nothing."""
        self._journal = []
        try:
            owner = (await self._call_dbus("GetNameOwner", "s", [BLUEZ_SERVICE])).body[0]
            reply = await self.call(
                Message(
                    destination=BLUEZ_SERVICE,
                    path="/",
                    interface=Interface.OBJECT_MANAGER.value,
                    member="GetManagedObjects",
                ),
                "ObjectManager.GetManagedObjects on /",
            )
        except BluezCallError as error:
            if error.reason in (ErrorName.NAME_HAS_NO_OWNER, ErrorName.SERVICE_UNKNOWN):
                if not initial:
                    self._gone()
                return
            raise
        finally:
            journal, self._journal = self._journal, None
        objects: dict[str, dict[str, dict[str, Any]]] = reply.body[0]
        adapters: dict[str, AdapterProps] = {}
        devices: dict[str, DeviceProps] = {}
        for path, interfaces in objects.items():
            if Interface.ADAPTER in interfaces:
                adapters[path] = AdapterProps.from_dbus(path, interfaces[Interface.ADAPTER])
            if Interface.DEVICE in interfaces:
                devices[path] = DeviceProps.from_dbus(path, interfaces[Interface.DEVICE])
        for msg in journal or ():
            if msg.sender == owner:
                _apply(msg, adapters, devices)
        old_adapters, old_devices, was_present = self._adapters, self._devices, self._owner is not None
        self._owner, self._adapters, self._devices = owner, adapters, devices
        events: list[ObjectEvent] = [AdapterRemoved(p) for p in old_adapters if p not in adapters]
        events += [DeviceRemoved(p) for p in old_devices if p not in devices]
        events += [AdapterAdded(a) for p, a in adapters.items() if p not in old_adapters]
        events += [
            AdapterChanged(a) for p, a in adapters.items() if p in old_adapters and a != old_adapters[p]
        ]
        events += [DeviceAdded(d) for p, d in devices.items() if p not in old_devices]
        events += [DeviceChanged(d) for p, d in devices.items() if old_devices.get(p, d) != d]
        if not was_present and not initial:
            events.append(BluezBack())
        self._emit(events)

    def _gone(self) -> None:
        events: list[ObjectEvent] = [DeviceRemoved(p) for p in self._devices]
        events += [AdapterRemoved(p) for p in self._adapters]
        was_present = self._owner is not None
        self._owner, self._adapters, self._devices = None, {}, {}
        if was_present:
            events.append(BluezGone())
        self._emit(events)

    async def _settled_snapshot(self, *, initial: bool) -> None:
        """``_snapshot`` until no change signal was missed while it ran.

        Until a snapshot has named org.bluez's owner, its signals are not applied (they could
        not be told from a stale owner's). A bluetoothd that has just started exports its objects
        while we ask for them: an InterfacesAdded that arrives after GetManagedObjects was
        answered, but before the snapshot's coroutine runs again, would otherwise be lost (the
        fake bluetoothd's restart showed it: the cache kept no adapter). Such a signal is
        counted, and the snapshot taken again, which holds its change."""
        for _ in range(MAX_SNAPSHOTS):
            self._missed = 0
            await self._snapshot(initial=initial)
            if not self._missed:
                return
            initial = False
        log.warning("bluez: objects still changing after %d snapshots; following signals now", MAX_SNAPSHOTS)

    async def _resync_loop(self) -> None:
        while True:
            await self._resync.get()
            try:
                await self._settled_snapshot(initial=False)
            except BluezCallError as error:
                # One line; the next NameOwnerChanged brings another attempt.
                log.warning("bluez: snapshot after bluetoothd came back failed: %s", error)

    async def _watch_bus(self, bus: MessageBus) -> None:
        try:
            await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]  # dbus-fast leaves it untyped
        except Exception as error:
            # dbus-fast ends the connection with the error that broke it (an OSError from its
            # socket, e.g. EAGAIN on a full send buffer): the bus is lost all the same, and the
            # owner of the cache (the BLE service) opens a new one; it must not end our tasks.
            log.warning("bluez: the system bus connection broke: %r", error)
        self._bus_lost = True
        self._gone()
        self._emit([BusLost()])

    def _emit(self, events: list[ObjectEvent]) -> None:
        for event in events:
            for subscriber in list(self._subscribers):
                try:
                    subscriber(event)
                except Exception:
                    # A subscriber's bug must not stop the others or the cache.
                    self.subscriber_errors += 1
                    log.exception("bluez: object cache subscriber failed on %s", type(event).__name__)

    def _on_message(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL:
            return
        if msg.member == "NameOwnerChanged" and msg.interface == Interface.DBUS:
            self._on_owner_changed(msg)
            return
        if self._journal is not None and msg.member in _CHANGES:
            self._journal.append(msg)
        if self._owner is None:
            if msg.member in _CHANGES:
                self._missed += 1  # a change before the snapshot named the owner: snapshot again
            return
        if msg.sender != self._owner:
            return
        self._emit(_apply(msg, self._adapters, self._devices))

    def _on_owner_changed(self, msg: Message) -> None:
        name, _old, new = msg.body
        if name != BLUEZ_SERVICE:
            return
        if not new:
            self._gone()
        else:
            # bluetoothd (re)started: its objects are new, take them afresh.
            self._resync.put_nowait(None)


Adapters = dict[str, AdapterProps]
Devices = dict[str, DeviceProps]


def _apply(msg: Message, adapters: Adapters, devices: Devices) -> list[ObjectEvent]:
    """One change signal of org.bluez applied to ``adapters`` and ``devices``: what it changed."""
    try:
        if msg.member == "InterfacesAdded" and msg.interface == Interface.OBJECT_MANAGER:
            return _added(msg.body[0], msg.body[1], adapters, devices)
        if msg.member == "InterfacesRemoved" and msg.interface == Interface.OBJECT_MANAGER:
            return _removed(msg.body[0], msg.body[1], adapters, devices)
        if msg.member == "PropertiesChanged" and msg.interface == Interface.PROPERTIES:
            return _changed(msg.path or "", msg.body[0], msg.body[1], adapters, devices)
    except (IndexError, TypeError, AttributeError) as error:
        log.warning("bluez: ignored a malformed %s signal from %s: %r", msg.member, msg.sender, error)
    return []


def _added(
    path: str, interfaces: dict[str, dict[str, Any]], adapters: Adapters, devices: Devices
) -> list[ObjectEvent]:
    events: list[ObjectEvent] = []
    if Interface.ADAPTER in interfaces:
        adapter = AdapterProps.from_dbus(path, interfaces[Interface.ADAPTER])
        events.append(AdapterChanged(adapter) if path in adapters else AdapterAdded(adapter))
        adapters[path] = adapter
    if Interface.DEVICE in interfaces:
        device = DeviceProps.from_dbus(path, interfaces[Interface.DEVICE])
        events.append(DeviceChanged(device) if path in devices else DeviceAdded(device))
        devices[path] = device
    return events


def _removed(path: str, interfaces: list[str], adapters: Adapters, devices: Devices) -> list[ObjectEvent]:
    events: list[ObjectEvent] = []
    if Interface.DEVICE in interfaces and devices.pop(path, None) is not None:
        events.append(DeviceRemoved(path))
    if Interface.ADAPTER in interfaces and adapters.pop(path, None) is not None:
        # Devices live under their adapter: they go with it even if no signal says so.
        for device_path in [p for p in devices if p.startswith(f"{path}/")]:
            del devices[device_path]
            events.append(DeviceRemoved(device_path))
        events.append(AdapterRemoved(path))
    return events


def _changed(
    path: str, interface: str, changed: dict[str, Any], adapters: Adapters, devices: Devices
) -> list[ObjectEvent]:
    if interface == Interface.ADAPTER and path in adapters:
        adapter = adapters[path] = adapters[path].changed(changed)
        return [AdapterChanged(adapter)]
    if interface == Interface.DEVICE and path in devices:
        device = devices[path] = devices[path].changed(changed)
        return [DeviceChanged(device)]
    return []
