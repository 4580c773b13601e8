"""Our NodePeripheral on hci0 through the real bluetoothd, a bumble central on the other
emulated controller: advertisement, connection, MTU, RX writes in order, TX notifications, and
the throughput of writes without response (a figure, never asserted)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from bumble.device import Device
from gatt import open_central, scan_for_node
from vm import figure

from bluez.defs import ATT_VALUE_MAX
from bluez.links import BleLink
from bluez.objects import ObjectCache
from bluez.peripheral import NodePeripheral
from tests.ble.nodes import Recorder

pytestmark = [pytest.mark.ble_vm, pytest.mark.timeout(120)]

PREFIX = bytes.fromhex("b1e0b1e0c0ffee01")
CHUNKS = 200


async def drain(handler: Recorder, count: int) -> list[tuple[BleLink, bytes]]:
    """Up to ``count`` chunks, each within 10 s of the one before (fewer if they stop)."""
    got: list[tuple[BleLink, bytes]] = []
    with contextlib.suppress(TimeoutError):
        while len(got) < count:
            got.append(await handler.next_chunk())
    return got


async def test_node_advertisement_registers_with_real_bluetoothd(cache: ObjectCache) -> None:
    """bluez/advert.py's advertisement fits what bluetoothd 5.66 takes on a controller without
    extended advertising (legacy: 31 bytes of data, 31 of scan response)."""
    async with NodePeripheral(cache, "hci0", PREFIX, Recorder()) as peripheral:
        async with asyncio.timeout(15):
            await peripheral.ready.wait()
        assert peripheral.register_failures == 0


async def test_bumble_central_finds_connects_writes_and_hears_our_notifications(
    cache: ObjectCache, bumble: Device, pytestconfig: pytest.Config
) -> None:
    handler = Recorder()
    async with NodePeripheral(cache, "hci0", PREFIX, handler) as peripheral:
        async with asyncio.timeout(15):
            await peripheral.ready.wait()
        t0 = time.monotonic()
        adv, data = await scan_for_node(bumble)
        figure(pytestconfig, f"peripheral: advertisement heard {time.monotonic() - t0:.2f} s after ready")
        assert data == PREFIX, f"prefix {data!r} in {adv.data}"

        central = await open_central(bumble, adv.address)
        figure(pytestconfig, f"peripheral: ATT MTU {central.mtu} (bumble asked 517)")
        assert central.mtu > 23

        # RX: every write arrives, in order, on one inbound link whose MTU bluetoothd told us.
        # At most ATT_VALUE_MAX: bluetoothd 5.66 drops a longer Write Command (bluez/defs.py).
        room = min(central.mtu - 3, ATT_VALUE_MAX)
        chunks = [bytes([i % 256]) * room for i in range(CHUNKS)]
        t0 = time.monotonic()
        for chunk in chunks:
            await central.write(chunk)
        got = await drain(handler, len(chunks))
        took = time.monotonic() - t0
        assert [data for _, data in got] == chunks, (
            f"{len(got)} of {len(chunks)} writes arrived; bad writes {peripheral.bad_writes}, "
            f"links opened {handler.opened}, handler errors {[c.handler_errors for c in handler.opened]}"
        )
        (link,) = {link for link, _ in got}
        assert link.mtu == central.mtu
        figure(
            pytestconfig,
            f"peripheral: {CHUNKS} x {room} B writes without response in {took:.2f} s = "
            f"{CHUNKS * room / took / 1000:.1f} kB/s",
        )

        # TX: our notifications reach bumble, each tagged with the tag bumble read from LINK.
        out = [bytes([0xA0 + i]) * link.max_chunk for i in range(20)]
        t0 = time.monotonic()
        for chunk in out:
            await link.send(chunk)
        heard = [await central.next_notification() for _ in out]
        took = time.monotonic() - t0
        assert heard == [bytes([central.tag]) + chunk for chunk in out]
        figure(
            pytestconfig,
            f"peripheral: 20 x {link.max_chunk} B notifications in {took:.2f} s = "
            f"{20 * link.max_chunk / took / 1000:.1f} kB/s",
        )

        await central.connection.disconnect()
        async with asyncio.timeout(10):
            await link.closed.wait()
