"""The central's connector: the slot limit per adapter, transient BlueZ errors retried by type
(and only those), and stale connections from a previous process closed at start."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest
from dbus_fast import Message

from bluez.central import Connector
from bluez.defs import device_path
from bluez.errors import BluezInProgress
from bluez.links import LinkFailed, LinkFailReason, LinkMisuse, LinkMisuseReason
from bluez.objects import ObjectCache
from bluez.peripheral import NodePeripheral
from tests.ble.nodes import Recorder, node_stack, prefix
from tests.fakes.bluez import FakeBluetoothd, PrivateBus, adapter_address
from tests.support.tlsnodes import eventually

pytestmark = pytest.mark.ble

IN_PROGRESS = "org.bluez.Error.InProgress"
NOT_READY = "org.bluez.Error.NotReady"


async def test_the_sixth_connection_is_refused_until_a_slot_frees(private_bus: PrivateBus) -> None:
    async with (
        FakeBluetoothd(private_bus.address, adapters=7),
        ObjectCache() as cache,
        node_stack(cache, 0) as a,
        AsyncExitStack() as peers,
    ):
        for index in range(1, 7):
            await peers.enter_async_context(NodePeripheral(cache, f"hci{index}", prefix(index), Recorder()))
        addresses = [adapter_address(index) for index in range(1, 7)]
        await eventually(lambda: all(address in a.found for address in addresses))
        links = [await a.connector.connect(address) for address in addresses[:5]]
        with pytest.raises(LinkMisuse) as refused:
            await a.connector.connect(addresses[5])
        assert refused.value.reason is LinkMisuseReason.SLOTS_FULL
        assert len(a.connector.links) == 5

        await links[0].aclose()
        sixth = await a.connector.connect(addresses[5])
        await sixth.send(b"in the freed slot")
        assert sorted(a.connector.links) == sorted(addresses[1:])


async def test_in_progress_is_retried_and_a_lasting_error_is_not(fake_bluez: FakeBluetoothd) -> None:
    async with ObjectCache() as cache, node_stack(cache, 0) as a, node_stack(cache, 1) as b:
        await a.find(b)
        fake_bluez.fail_next("Connect", IN_PROGRESS)
        connects = fake_bluez.connects
        link = await a.connector.connect(b.address)
        assert a.connector.retries == 1 and fake_bluez.connects == connects + 2
        await link.aclose()

        fake_bluez.fail_next("Connect", NOT_READY)
        with pytest.raises(LinkFailed) as failed:
            await a.connector.connect(b.address)
        assert failed.value.reason is LinkFailReason.CONNECT_FAILED
        assert a.connector.retries == 1  # NotReady is not retried
        assert not a.connector.links

        # Every attempt refused: bounded, then one typed error naming the last cause.
        fake_bluez.fail_next("Connect", IN_PROGRESS, times=3)
        with pytest.raises(LinkFailed) as exhausted:
            await a.connector.connect(b.address)
        assert exhausted.value.reason is LinkFailReason.CONNECT_FAILED
        assert isinstance(exhausted.value.__cause__, BluezInProgress)
        assert a.connector.retries == 3
        # The slot of each failed connect was given back.
        await (await a.connector.connect(b.address)).send(b"still works")


async def test_a_link_bluetoothd_never_announced_is_retried(fake_bluez: FakeBluetoothd) -> None:
    """bluetoothd 5.66's race (found in the real-bluetoothd VM): Connect succeeds but Connected
    is never signalled, so bleak gives up waiting for services. The Connector tries again."""
    async with ObjectCache() as cache, node_stack(cache, 0) as a, node_stack(cache, 1) as b:
        await a.find(b)
        fake_bluez.unannounced_connects = 1
        connects = fake_bluez.connects
        link = await a.connector.connect(b.address)
        assert a.connector.retries == 1 and fake_bluez.connects == connects + 2
        await link.send(b"through")
        inbound, data = await b.handler.next_chunk()
        assert data == b"through" and inbound.address == a.address


async def test_discovery_is_paused_while_a_link_is_made_and_resumes(fake_bluez: FakeBluetoothd) -> None:
    """So no Device Found event can queue ahead of the kernel's Device Connected (the race
    above); the scan runs again once the link is up."""
    async with ObjectCache() as cache, node_stack(cache, 0) as a, node_stack(cache, 1) as b:
        await a.find(b)
        assert a.scanner.scanning.is_set()
        starts = a.scanner.starts
        link = await a.connector.connect(b.address)
        assert fake_bluez.connects_while_discovering == 0
        async with asyncio.timeout(10):
            await a.scanner.scanning.wait()
        assert a.scanner.starts == starts + 1
        await link.send(b"linked")
        assert (await b.handler.next_chunk())[1] == b"linked"


async def test_a_stale_connection_is_closed_at_start(fake_bluez: FakeBluetoothd) -> None:
    async with ObjectCache() as cache, node_stack(cache, 0) as a, node_stack(cache, 1) as b:
        await a.find(b)
        # A previous process connected and died without disconnecting: BlueZ keeps the link.
        path = device_path("/org/bluez/hci0", b.address)
        await cache.call(
            Message(destination="org.bluez", path=path, interface="org.bluez.Device1", member="Connect"),
            "Device1.Connect",
        )
        await eventually(lambda: cache.devices[path].connected)
        async with Connector(cache, "hci0", Recorder()) as connector:
            assert connector.stale_closed == 1
            await eventually(lambda: not cache.devices[path].connected)
            link = await connector.connect(b.address)
            await link.send(b"fresh")
            _, data = await b.handler.next_chunk()
            assert data == b"fresh"


async def test_a_link_is_made_over_the_le_link_the_other_node_opened(fake_bluez: FakeBluetoothd) -> None:
    """Two nodes dialling each other at once share one LE link: bluetoothd answers Connect on a
    device that is already LE-connected with success (src/device.c dev_connect()), so the
    second dial rides the first's link instead of failing."""
    async with ObjectCache() as cache, node_stack(cache, 0) as a, node_stack(cache, 1) as b:
        await a.find(b)
        await b.find(a)
        b_to_a = await b.connector.connect(a.address)
        path = device_path("/org/bluez/hci0", b.address)
        await eventually(lambda: cache.devices[path].connected)
        # What a Connect racing the other side's link sees (bleak calls it whenever its cache
        # has not yet heard Connected): a plain success, not an error.
        await cache.call(
            Message(destination="org.bluez", path=path, interface="org.bluez.Device1", member="Connect"),
            "Device1.Connect",
        )
        a_to_b = await a.connector.connect(b.address)
        assert a.connector.retries == 0
        await a_to_b.send(b"a to b")
        await b_to_a.send(b"b to a")
        assert (await b.handler.next_chunk())[1] == b"a to b"
        assert (await a.handler.next_chunk())[1] == b"b to a"
