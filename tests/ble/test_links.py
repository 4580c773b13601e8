"""BLE links between node stacks on fake adapters: scan, connect, chunks both ways in order,
notification addressing between two centrals, MTU limits, a device vanishing mid-stream, and
the StartNotify flag check fixed over bluez-peripheral."""

from __future__ import annotations

import asyncio

import pytest
from dbus_fast import Message, MessageType, Variant

from bluez.links import LinkFailed, LinkFailReason, LinkMisuse, LinkMisuseReason, LinkRole
from bluez.objects import ObjectCache
from bluez.peripheral import NodePeripheral
from tests.ble.nodes import Recorder, node_stack, prefix
from tests.fakes.bluez import FakeBluetoothd, PrivateBus
from tests.support.tlsnodes import eventually

pytestmark = pytest.mark.ble


async def test_found_connect_and_chunks_both_ways_in_order(fake_bluez: FakeBluetoothd) -> None:
    async with ObjectCache() as cache, node_stack(cache, 0) as a, node_stack(cache, 1) as b:
        found = await a.find(b)
        assert found.peer_id_prefix == prefix(1) and found.rssi is not None
        assert (await b.find(a)).peer_id_prefix == prefix(0)  # both roles on both nodes

        link = await a.connector.connect(b.address)
        assert link.role is LinkRole.OUTBOUND and a.handler.opened == [link]
        chunks = [bytes([i]) * (1 + i * 7) for i in range(40)]
        for chunk in chunks:
            await link.send(chunk)
        got = [await b.handler.next_chunk() for _ in chunks]
        assert [data for _, data in got] == chunks
        (inbound,) = {peer_link for peer_link, _ in got}
        assert inbound.role is LinkRole.INBOUND and inbound.address == a.address
        assert b.handler.opened == [inbound]

        for chunk in chunks[:10]:
            await inbound.send(chunk)
        back = [await a.handler.next_chunk() for _ in range(10)]
        assert back == [(link, chunk) for chunk in chunks[:10]]

        await link.aclose()
        assert a.handler.closed == [(link, None)] and not a.connector.links
        # The peripheral sees the central leave (Device1.Connected false).
        async with asyncio.timeout(10):
            await inbound.closed.wait()
        error = inbound.close_error
        assert isinstance(error, LinkFailed) and error.reason is LinkFailReason.LOST


async def test_a_notification_reaches_only_the_central_it_is_addressed_to(private_bus: PrivateBus) -> None:
    async with (
        FakeBluetoothd(private_bus.address, adapters=3),
        ObjectCache() as cache,
        node_stack(cache, 0) as a,
        node_stack(cache, 1) as b,
        node_stack(cache, 2) as c,
    ):
        await a.find(b)
        await c.find(b)
        to_b_from_a = await a.connector.connect(b.address)
        to_b_from_c = await c.connector.connect(b.address)
        assert to_b_from_a.tag != to_b_from_c.tag
        await to_b_from_a.send(b"from a")
        await to_b_from_c.send(b"from c")
        links = {data: link for link, data in [await b.handler.next_chunk() for _ in range(2)]}
        assert links[b"from a"].address == a.address and links[b"from c"].address == c.address

        # Both centrals are subscribed to B's one TX characteristic: each notification reaches
        # both on air, and the tag makes the other drop it.
        await links[b"from a"].send(b"for a")
        await links[b"from c"].send(b"for c")
        assert await a.handler.next_chunk() == (to_b_from_a, b"for a")
        assert await c.handler.next_chunk() == (to_b_from_c, b"for c")
        assert to_b_from_a.foreign_notifications == 1
        assert to_b_from_c.foreign_notifications == 1
        assert a.handler.chunks.empty() and c.handler.chunks.empty()


@pytest.mark.parametrize("mtu", [23, 185])
async def test_the_negotiated_mtu_bounds_every_chunk(fake_bluez: FakeBluetoothd, mtu: int) -> None:
    fake_bluez.set_mtu("hci1", mtu)
    async with ObjectCache() as cache, node_stack(cache, 0) as a, node_stack(cache, 1) as b:
        await a.find(b)
        link = await a.connector.connect(b.address)
        assert (link.mtu, link.max_chunk) == (mtu, mtu - 3)
        await link.send(b"x" * (mtu - 3))
        inbound, data = await b.handler.next_chunk()
        assert data == b"x" * (mtu - 3)
        assert (inbound.mtu, inbound.max_chunk) == (mtu, mtu - 4)  # one byte of tag
        with pytest.raises(LinkMisuse) as too_large:
            await link.send(b"x" * (mtu - 2))
        assert too_large.value.reason is LinkMisuseReason.TOO_LARGE
        with pytest.raises(LinkMisuse):
            await inbound.send(b"y" * (mtu - 3))
        await inbound.send(b"y" * (mtu - 4))
        assert await a.handler.next_chunk() == (link, b"y" * (mtu - 4))
        assert not link.closed.is_set() and not inbound.closed.is_set()


async def test_a_device_vanishing_mid_stream_fails_typed_and_closes_the_link(
    fake_bluez: FakeBluetoothd,
) -> None:
    async with ObjectCache() as cache, node_stack(cache, 0) as a, node_stack(cache, 1) as b:
        await a.find(b)
        link = await a.connector.connect(b.address)
        sent = 0

        async def stream() -> None:
            nonlocal sent
            while True:
                await link.send(b"z" * 100)
                sent += 1

        async with asyncio.timeout(10):
            writer = asyncio.ensure_future(stream())
            while sent < 20:  # noqa: ASYNC110 - the stream counts its writes
                await asyncio.sleep(0.001)
            await fake_bluez.vanish("hci0", b.address)
            with pytest.raises((LinkFailed, LinkMisuse)) as stopped:
                await writer
        # Either the write in flight failed (WRITE_FAILED) or the disconnection came first and
        # the next send found the link closed: a typed error both ways.
        failure = stopped.value
        assert isinstance(failure, LinkFailed) or (
            isinstance(failure, LinkMisuse) and failure.reason is LinkMisuseReason.CLOSED
        )
        assert link.closed.is_set()
        ((closed_link, error),) = a.handler.closed
        assert closed_link is link and isinstance(error, LinkFailed)
        assert error.reason in (LinkFailReason.LOST, LinkFailReason.WRITE_FAILED)
        async with asyncio.timeout(10):
            while a.connector.links:  # noqa: ASYNC110 - released by the connector's task
                await asyncio.sleep(0.01)
        # The node goes on: B still serves, and a later scan finds it again.
        assert b.peripheral.ready.is_set() and a.scanner.scanning.is_set()


async def test_start_notify_on_a_characteristic_without_notify_is_refused(fake_bluez: FakeBluetoothd) -> None:
    async with ObjectCache() as cache, node_stack(cache, 1):
        # RX (write without response only) is the first characteristic of the service.
        reply = await cache.bus.call(
            Message(
                destination=cache.bus.unique_name,
                path="/org/bitcraps/ble/hci1/service0/char0",
                interface="org.bluez.GattCharacteristic1",
                member="StartNotify",
            )
        )
        assert reply is not None and reply.error_name == "org.bluez.Error.NotSupported"


async def test_a_write_before_the_link_read_opens_no_link(fake_bluez: FakeBluetoothd) -> None:
    """A central reads LINK (its tag) before it writes: a write from a device with no link (one
    in flight when its link dropped, or a stack that skips the read) is refused and counted,
    never a new inbound link; the LINK read opens it, and writes then arrive."""
    async with ObjectCache() as cache, node_stack(cache, 1) as b:
        app = "/org/bitcraps/ble/hci1/service0"
        device = Variant("o", "/org/bluez/hci1/dev_02_00_00_00_00_00")
        options = {"device": device, "mtu": Variant("q", 185), "type": Variant("s", "command")}

        async def call(char: str, member: str, signature: str, body: list[object]) -> Message:
            reply = await cache.bus.call(
                Message(
                    destination=cache.bus.unique_name,
                    path=f"{app}/{char}",
                    interface="org.bluez.GattCharacteristic1",
                    member=member,
                    signature=signature,
                    body=body,
                )
            )
            assert reply is not None
            return reply

        refused = await call("char0", "WriteValue", "aya{sv}", [b"stale", options])
        assert refused.error_name == "org.bluez.Error.Failed"
        assert b.peripheral.bad_writes == 1 and not b.peripheral.links and not b.handler.opened

        tag = await call("char2", "ReadValue", "a{sv}", [{"device": device}])
        assert tag.message_type is MessageType.METHOD_RETURN and len(tag.body[0]) == 1
        ok = await call("char0", "WriteValue", "aya{sv}", [b"fresh", options])
        assert ok.message_type is MessageType.METHOD_RETURN
        inbound, data = await b.handler.next_chunk()
        assert data == b"fresh" and inbound.address == "02:00:00:00:00:00"


async def test_a_link_whose_central_device_is_made_anew_closes(fake_bluez: FakeBluetoothd) -> None:
    """A link open under a device path whose object is then made anew (DeviceAdded, not
    connected) is gone, even if the old object's removal never reached us (the object cache
    lost one so once, in a snapshot race after bluetoothd restarted)."""
    async with ObjectCache() as cache, node_stack(cache, 1) as b:
        path = "/org/bluez/hci1/dev_02_00_00_00_00_00"
        assert path not in cache.devices  # as if its InterfacesAdded had been missed
        reply = await cache.bus.call(
            Message(
                destination=cache.bus.unique_name,
                path="/org/bitcraps/ble/hci1/service0/char2",
                interface="org.bluez.GattCharacteristic1",
                member="ReadValue",
                signature="a{sv}",
                body=[{"device": Variant("o", path)}],
            )
        )
        assert reply is not None and reply.message_type is MessageType.METHOD_RETURN
        (link,) = b.handler.opened
        # hci1's discovery hears hci0 advertising: bluetoothd makes that device object anew.
        async with NodePeripheral(cache, "hci0", prefix(0), Recorder()):
            await eventually(lambda: bool(b.handler.closed))
        ((closed, error),) = b.handler.closed
        assert closed is link and isinstance(error, LinkFailed) and error.reason is LinkFailReason.LOST
        assert not b.peripheral.links
