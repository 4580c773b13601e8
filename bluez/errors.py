"""The errors the ``bluez`` package raises: one root, typed D-Bus replies, and BlueZ unavailable.

A D-Bus error reply is mapped to a type by its error name (``DBusError.type``), never by its text:
BlueZ's texts change between releases, its names are API (doc/*-api.txt, "Possible errors").
"""

from __future__ import annotations

from enum import StrEnum

from dbus_fast.errors import DBusError

from bluez.defs import ErrorName
from node.errors import LocalError, NodeError, ReasonError, RemoteError


class BluezError(NodeError):
    """Root of every error raised by the bluez package."""


class BluezConnectUnannounced(BluezError, RemoteError):
    """bluetoothd made the LE link but bleak never heard Connected turn true, so its wait for
    service discovery saw the device "disconnected" and gave up (bleak raises a bare
    BleakError). bluetoothd 5.66 (and master) marks the device connected when the ATT socket
    comes up (src/device.c att_connect_cb()) and announces it only when the kernel's Device
    Connected event is handled; when that event comes second, device_add_connection() returns
    early ("already connected") and Connected is never signalled. Seen with a scan running on
    a slow bluetoothd (hil-tests/README.md, BLE VM). Another attempt usually connects."""


class BluezCallError(ReasonError[ErrorName], BluezError, RemoteError):
    """bluetoothd (or the bus on its behalf) answered a call with an error reply.

    ``reason`` is the error name as an enum member (``ErrorName.OTHER`` for a name we do not
    know, then ``dbus_name`` holds it); ``call`` says which call failed."""

    def __init__(self, reason: ErrorName, call: str, dbus_name: str, text: str) -> None:
        self.call = call
        self.dbus_name = dbus_name
        self.text = text
        super().__init__(reason, f"{call} failed with {dbus_name}" + (f" ({text})" if text else ""))


class BluezFailed(BluezCallError):
    """org.bluez.Error.Failed: the operation failed (e.g. the link dropped mid-write)."""


class BluezInProgress(BluezCallError):
    """org.bluez.Error.InProgress: the same operation is already under way; retry later."""


class BluezNotReady(BluezCallError):
    """org.bluez.Error.NotReady: the adapter is not powered or not initialised."""


class BluezNotConnected(BluezCallError):
    """org.bluez.Error.NotConnected: the device is not connected."""


class BluezDoesNotExist(BluezCallError):
    """org.bluez.Error.DoesNotExist: the registration or device named does not exist."""


class BluezAlreadyExists(BluezCallError):
    """org.bluez.Error.AlreadyExists: that application or advertisement is already registered."""


class BluezInvalidArguments(BluezCallError):
    """org.bluez.Error.InvalidArguments: the call's arguments were refused."""


class BluezNotPermitted(BluezCallError):
    """org.bluez.Error.NotPermitted: the operation is not allowed (e.g. a read-only value)."""


class BluezUnknownObject(BluezCallError):
    """org.freedesktop.DBus.Error.UnknownObject: the object is gone (BlueZ removed the device)."""


class BluezServiceUnknown(BluezCallError):
    """org.freedesktop.DBus.Error.ServiceUnknown / NameHasNoOwner: bluetoothd is not on the bus."""


_BY_NAME: dict[ErrorName, type[BluezCallError]] = {
    ErrorName.FAILED: BluezFailed,
    ErrorName.IN_PROGRESS: BluezInProgress,
    ErrorName.NOT_READY: BluezNotReady,
    ErrorName.NOT_CONNECTED: BluezNotConnected,
    ErrorName.DOES_NOT_EXIST: BluezDoesNotExist,
    ErrorName.ALREADY_EXISTS: BluezAlreadyExists,
    ErrorName.INVALID_ARGUMENTS: BluezInvalidArguments,
    ErrorName.NOT_PERMITTED: BluezNotPermitted,
    ErrorName.UNKNOWN_OBJECT: BluezUnknownObject,
    ErrorName.SERVICE_UNKNOWN: BluezServiceUnknown,
    ErrorName.NAME_HAS_NO_OWNER: BluezServiceUnknown,
}

_NAMES = {member.value: member for member in ErrorName}


def from_dbus_error(error: DBusError, call: str) -> BluezCallError:
    """The typed error for a D-Bus error reply to ``call`` (e.g. "Adapter1.StartDiscovery on
    /org/bluez/hci0"), chosen by the reply's error name alone."""
    name = error.type or ""
    reason = _NAMES.get(name, ErrorName.OTHER)
    return _BY_NAME.get(reason, BluezCallError)(reason, call, name or "an unnamed error", error.text or "")


class UnavailableReason(StrEnum):
    NO_BUS = "no system D-Bus"
    NO_BLUEZ = "no bluetoothd (org.bluez) on the system bus"
    NO_ADAPTER = "no Bluetooth adapter"
    POWERED_OFF = "the adapter is powered off"


class BluezUnavailable(ReasonError[UnavailableReason], BluezError, LocalError):
    """BLE cannot run on this machine now: no system bus, no bluetoothd on it, no adapter, or
    the adapter powered off.
    A normal state on machines without Bluetooth (CI included), never a crash."""
