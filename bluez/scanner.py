"""The node's one BLE scanner per adapter (Home Assistant's lesson: one shared scanner, never one
per connection): bleak's BleakScanner filtered on the node's service UUID, reporting each node
heard as a ``FoundNode``. It stops when the adapter or bluetoothd goes away and starts again by
itself when it comes back (bluez/objects.py's events), and restarts if it hears nothing for
``quiet_restart`` seconds (HA restarts a scanner silent for 90 s: BlueZ discovery can stall).
``paused()`` stops discovery while a connection is made (bluez/central.py says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from bluez.advert import prefix_from_advert
from bluez.component import Component
from bluez.defs import BLUEZ_ROOT, NODE_SERVICE_UUID
from bluez.objects import (
    AdapterAdded,
    AdapterChanged,
    AdapterRemoved,
    BluezBack,
    BluezGone,
    BusLost,
    ObjectCache,
    ObjectEvent,
)

log = logging.getLogger(__name__)

BACKOFF_MIN = 0.25
BACKOFF_MAX = 4.0
STOP_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class FoundNode:
    """A node heard advertising our service. ``peer_id_prefix`` is None when neither its service
    data nor its scan response's name carries one (bluez/advert.py)."""

    adapter: str
    address: str
    rssi: int | None
    peer_id_prefix: bytes | None


class NodeScanner(Component):
    """``async with NodeScanner(cache, "hci0", on_found)``; ``scanning`` is set while discovery runs."""

    def __init__(
        self,
        cache: ObjectCache,
        adapter: str,
        on_found: Callable[[FoundNode], None],
        *,
        quiet_restart: float = 90.0,
    ) -> None:
        super().__init__()
        self._cache = cache
        self.adapter = adapter
        self._adapter_path = f"{BLUEZ_ROOT}/{adapter}"
        self._on_found = on_found
        self._quiet_restart = quiet_restart
        self._wake = asyncio.Event()
        self._down = asyncio.Event()  # the adapter or bluetoothd went: stop scanning
        self._stir = asyncio.Event()  # something happened: a node heard, or _down set
        self.scanning = asyncio.Event()
        self._idle = asyncio.Event()  # no discovery session of ours is open (none started, or stopped)
        self._idle.set()
        self._pauses = 0
        self.starts = 0
        self.start_failures = 0
        self.quiet_restarts = 0
        self.callback_errors = 0

    async def _start(self, stack: AsyncExitStack) -> None:
        stack.callback(self._cache.subscribe(self._on_event))
        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        stack.callback(tasks.create_task(self._run()).cancel)

    def _on_event(self, event: ObjectEvent) -> None:
        match event:
            case AdapterRemoved(path=path) if path == self._adapter_path:
                self._go_down()
            case AdapterChanged(adapter=adapter) if (
                adapter.path == self._adapter_path and not adapter.powered
            ):
                self._go_down()  # bluetoothd ended every discovery session on it
            case BluezGone() | BusLost():
                self._go_down()
            case AdapterAdded() | AdapterChanged() | BluezBack():
                self._wake.set()

    async def _run(self) -> None:
        delay = BACKOFF_MIN
        while True:
            self._wake.clear()
            if self._pauses or self._cache.unavailable(self.adapter) is not None:
                await self._wake.wait()
                continue
            self._down.clear()
            scanner = BleakScanner(
                self._seen, service_uuids=[NODE_SERVICE_UUID], bluez={"adapter": self.adapter}
            )
            self._idle.clear()
            try:
                await scanner.start()
            except BleakError as error:
                self._idle.set()
                # bleak's own view of BlueZ may lag ours by a signal (an adapter just added).
                self.start_failures += 1
                log.warning(
                    "ble: scanning on %s failed to start, retry in %.2f s: %s", self.adapter, delay, error
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            delay = BACKOFF_MIN
            self.starts += 1
            self.scanning.set()
            try:
                await self._until_down_or_quiet()
            finally:
                self.scanning.clear()
                await self._stop(scanner)
                self._idle.set()

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Discovery stopped (within STOP_TIMEOUT) while the body runs; it resumes after."""
        self._pauses += 1
        self._stir.set()
        try:
            with contextlib.suppress(TimeoutError):  # a stop that hangs must not block a connect
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self._idle.wait()
            yield
        finally:
            self._pauses -= 1
            if not self._pauses:
                self._wake.set()

    def _go_down(self) -> None:
        self._down.set()
        self._stir.set()

    async def _until_down_or_quiet(self) -> None:
        """Until the adapter or bluetoothd goes, or nothing is heard for ``quiet_restart`` s."""
        while not self._down.is_set() and not self._pauses:
            self._stir.clear()
            try:
                async with asyncio.timeout(self._quiet_restart):
                    await self._stir.wait()
            except TimeoutError:
                self.quiet_restarts += 1
                log.info(
                    "ble: heard nothing on %s for %.0f s, restarting the scan",
                    self.adapter,
                    self._quiet_restart,
                )
                return

    async def _stop(self, scanner: BleakScanner) -> None:
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await scanner.stop()
        except (BleakError, TimeoutError) as error:
            # The adapter or bluetoothd is gone and took the discovery session with it.
            log.debug("ble: stopping the scan on %s: %r", self.adapter, error)

    def _seen(self, device: BLEDevice, adv: AdvertisementData) -> None:
        self._stir.set()
        prefix = prefix_from_advert(adv.service_data, adv.local_name)
        try:
            self._on_found(FoundNode(self.adapter, device.address, adv.rssi, prefix))
        except Exception:
            self.callback_errors += 1
            log.exception("ble: the found-node callback failed for %s", device.address)
