"""One shape for every BLE link, inbound (a central connected to our peripheral) or outbound (our
central connected to a peer's peripheral): a byte pipe where one ``send`` is one GATT write or one
notification. Chunking frames to ``max_chunk`` is the BLE transport's job, not this layer's.

Addressing (a workaround, see bluez/peripheral.py): bluez-peripheral has no AcquireNotify, so a
notification on TX goes to every central subscribed to it. Each notification therefore starts
with a one-byte tag naming the central it is meant for; a central learns its tag by reading the
LINK characteristic once it is subscribed, and drops notifications carrying another tag. That
byte is why a peripheral-side link's ``max_chunk`` is one less than a central-side one's.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from enum import StrEnum
from typing import Protocol

from bluez.defs import ATT_HEADER, ATT_VALUE_MAX
from bluez.errors import BluezError
from node.errors import LocalError, ReasonError, RemoteError

log = logging.getLogger(__name__)

TAG_LEN = 1


class LinkRole(StrEnum):
    INBOUND = "inbound"  # the peer is a central on our peripheral
    OUTBOUND = "outbound"  # our central connected to the peer's peripheral


class LinkFailReason(StrEnum):
    CONNECT_FAILED = "connecting failed"
    NOT_OUR_SERVICE = "the device does not serve the node's GATT service"
    UNKNOWN_DEVICE = "bluetoothd does not know the device (not seen by a scan, or forgotten)"
    WRITE_FAILED = "the GATT write failed"
    NOT_SUBSCRIBED = "no central is subscribed to TX notifications"
    LOST = "the link dropped"


class LinkMisuseReason(StrEnum):
    CLOSED = "the link is closed"
    TOO_LARGE = "the chunk is larger than the link's max_chunk"
    SLOTS_FULL = "every connection slot of the adapter is taken"


class BleLinkError(BluezError):
    """Root of the link errors."""


class LinkFailed(ReasonError[LinkFailReason], BleLinkError, RemoteError):
    """The peer or the radio failed the link (it is closed afterwards, except CONNECT_FAILED,
    NOT_OUR_SERVICE and UNKNOWN_DEVICE, where no link was made)."""


class LinkMisuse(ReasonError[LinkMisuseReason], BleLinkError, LocalError):
    """We asked for something the link or the connector cannot do now."""


class BleLink(ABC):
    """A BLE link as the transport sees it; ``closed`` is set once it is down for good (then
    ``close_error`` says why, None for a close we asked for)."""

    def __init__(self, handler: LinkHandler, role: LinkRole, adapter: str, address: str, mtu: int) -> None:
        self._handler = handler
        self.role = role
        self.adapter = adapter  # our adapter, e.g. "hci0"
        self.address = address  # the peer's Bluetooth address
        self.mtu = mtu  # the negotiated ATT_MTU
        self.closed = asyncio.Event()
        self.close_error: BleLinkError | None = None
        self.handler_errors = 0
        self._announced = False  # the handler heard link_opened

    @property
    @abstractmethod
    def max_chunk(self) -> int:
        """The largest ``send`` this link takes: ATT_MTU - 3, less the tag byte on TX."""

    @abstractmethod
    async def send(self, data: bytes) -> None:
        """Send one chunk; ``LinkMisuse(CLOSED | TOO_LARGE)`` or ``LinkFailed`` (then closed)."""

    async def drain(self) -> None:
        """Wait until what ``send`` queued on the bus left this process (see PeripheralLink).
        A central's writes are method calls, each awaited: nothing is left to wait for."""
        return None

    @abstractmethod
    async def aclose(self) -> None:
        """Close the link (idempotent); the handler hears ``link_closed`` with None."""

    def _check(self, data: bytes) -> None:
        if self.closed.is_set():
            raise LinkMisuse(LinkMisuseReason.CLOSED, f"{self.role} link to {self.address} on {self.adapter}")
        if len(data) > self.max_chunk:
            raise LinkMisuse(
                LinkMisuseReason.TOO_LARGE,
                f"{len(data)} bytes > {self.max_chunk} (ATT_MTU {self.mtu}) to {self.address}",
            )

    def _open(self) -> None:
        self._announced = True
        self._call("link_opened")

    def _deliver(self, data: bytes) -> None:
        if self._announced and not self.closed.is_set():
            self._call("chunk_received", data)

    def _finish(self, error: BleLinkError | None) -> bool:
        """Mark the link closed and tell the handler, once; False if it already was."""
        if self.closed.is_set():
            return False
        self.close_error = error
        self.closed.set()
        if self._announced:
            self._call("link_closed", error)
        return True

    def _call(self, what: str, *args: object) -> None:
        try:
            getattr(self._handler, what)(self, *args)
        except Exception:
            # The owner's bug must not break the link or the D-Bus dispatch that called us.
            self.handler_errors += 1
            log.exception("ble: link handler %s failed for %r", what, self)

    def __repr__(self) -> str:
        state = "closed" if self.closed.is_set() else "open"
        return f"<{type(self).__name__} {self.role} {self.adapter}->{self.address} mtu={self.mtu} {state}>"


def value_room(mtu: int) -> int:
    """Bytes of value one Write Command or Notification carries at ``mtu`` (defs.ATT_VALUE_MAX)."""
    return min(mtu - ATT_HEADER, ATT_VALUE_MAX)


class LinkHandler(Protocol):
    """What the owner of links (the BLE transport) is told. Called from the event loop; must not
    block. An exception from it is counted and logged by the caller, never lets a link crash."""

    def link_opened(self, link: BleLink) -> None: ...

    def chunk_received(self, link: BleLink, data: bytes) -> None: ...

    def link_closed(self, link: BleLink, error: BleLinkError | None) -> None: ...
