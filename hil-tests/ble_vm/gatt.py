"""The node's GATT service from bumble's side: advertisement parsing, the central's and the
peripheral's halves of the link protocol (bluez/links.py: RX writes, TX notifications tagged with
the central's byte, LINK read for that byte)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bumble.core import UUID, AdvertisingData
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.gatt_client import CharacteristicProxy

from bluez.advert import prefix_from_advert
from bluez.defs import NODE_LINK_UUID, NODE_RX_UUID, NODE_SERVICE_UUID, NODE_TX_UUID

SERVICE = UUID(NODE_SERVICE_UUID)
ATT_MTU_MAX = 517  # Core 5.3 Vol 3 Part F 3.2.9: attribute values are at most 512 bytes


def service_data(adv: Advertisement) -> bytes | None:
    """Our service's data in ``adv`` (type 0x21: the 16-byte UUID, little-endian, then data)."""
    key = SERVICE.to_bytes()
    for kind, value in adv.data.ad_structures:
        if kind == AdvertisingData.Type.SERVICE_DATA_128_BIT_UUID and value[:16] == key:
            return value[16:]
    return None


def lists_service(adv: Advertisement) -> bool:
    lists = (
        AdvertisingData.Type.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
        AdvertisingData.Type.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
    )
    key = SERVICE.to_bytes()
    return any(
        kind in lists and any(value[i : i + 16] == key for i in range(0, len(value), 16))
        for kind, value in adv.data.ad_structures
    )


def local_name(adv: Advertisement) -> str | None:
    for kind in (AdvertisingData.Type.COMPLETE_LOCAL_NAME, AdvertisingData.Type.SHORTENED_LOCAL_NAME):
        value = adv.data.get(kind)
        if isinstance(value, str):
            return value
    return None


async def scan_for_node(device: Device) -> tuple[Advertisement, bytes]:
    """The first node heard listing our service UUID, and the peer-id prefix it advertises (by
    bluez/advert.py's rules: in its scan response's name, or in service data), gathered over its
    advertising and scan-response reports, which bumble hands over one by one."""
    found: asyncio.Future[tuple[Advertisement, bytes]] = asyncio.get_running_loop().create_future()
    listed: set[str] = set()
    prefixes: dict[str, bytes] = {}

    def on_adv(adv: Advertisement) -> None:
        address = str(adv.address)
        if lists_service(adv):
            listed.add(address)
        data = service_data(adv)
        prefix = prefix_from_advert({NODE_SERVICE_UUID: data} if data else {}, local_name(adv))
        if prefix is not None:
            prefixes[address] = prefix
        if address in listed and address in prefixes and not found.done():
            found.set_result((adv, prefixes[address]))

    device.on("advertisement", on_adv)
    await device.start_scanning(active=True, filter_duplicates=False)
    try:
        async with asyncio.timeout(20):
            return await found
    finally:
        device.remove_listener("advertisement", on_adv)
        await device.stop_scanning()


@dataclass
class CentralSide:
    """bumble as a central on our peripheral: subscribed to TX, its tag read from LINK."""

    connection: Connection
    peer: Peer
    mtu: int
    rx: CharacteristicProxy[bytes]
    tag: int
    notified: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    async def write(self, chunk: bytes) -> None:
        await self.peer.write_value(self.rx, chunk, with_response=False)

    async def next_notification(self) -> bytes:
        async with asyncio.timeout(10):
            return await self.notified.get()


async def open_central(device: Device, address: object) -> CentralSide:
    connection = await device.connect(address, timeout=15)  # type: ignore[arg-type]
    peer = Peer(connection)
    mtu = await peer.request_mtu(ATT_MTU_MAX)
    await peer.discover_services([SERVICE])
    (service,) = peer.get_services_by_uuid(SERVICE)
    await service.discover_characteristics()

    def char(uuid: str) -> CharacteristicProxy[bytes]:
        (found,) = service.get_characteristics_by_uuid(UUID(uuid))
        return found

    notified: asyncio.Queue[bytes] = asyncio.Queue()
    await peer.subscribe(char(NODE_TX_UUID), notified.put_nowait)
    tag = await peer.read_value(char(NODE_LINK_UUID))
    assert len(tag) == 1, f"LINK answered {tag!r}, expected one tag byte"
    return CentralSide(connection, peer, mtu, char(NODE_RX_UUID), tag[0], notified)


@dataclass
class PeripheralSide:
    """bumble as a peripheral serving our GATT service (what another node's NodePeripheral
    serves): RX writes queued, TX notified with our tag, LINK answering that tag."""

    device: Device
    tag: int = 7
    written: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    tx: Characteristic[bytes] = field(init=False)

    def __post_init__(self) -> None:
        rx = Characteristic(
            NODE_RX_UUID,
            Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
            Characteristic.WRITEABLE,
            CharacteristicValue(write=self._on_write),
        )
        self.tx = Characteristic(NODE_TX_UUID, Characteristic.Properties.NOTIFY, Characteristic.READABLE, b"")
        link = Characteristic(
            NODE_LINK_UUID, Characteristic.Properties.READ, Characteristic.READABLE, bytes([self.tag])
        )
        self.device.add_service(Service(NODE_SERVICE_UUID, [rx, self.tx, link]))

    def _on_write(self, _connection: Connection, value: bytes) -> None:
        self.written.put_nowait(bytes(value))

    async def advertise(self, prefix: bytes) -> None:
        # 3 + 18 bytes, then the service data in the scan response: a legacy advertisement
        # holds 31 bytes (Core 5.3 Vol 3 Part C 11).
        self.device.advertising_data = bytes(
            AdvertisingData(
                [
                    (AdvertisingData.Type.FLAGS, bytes([0x06])),
                    (AdvertisingData.Type.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS, SERVICE.to_bytes()),
                ]
            )
        )
        self.device.scan_response_data = bytes(
            AdvertisingData([(AdvertisingData.Type.SERVICE_DATA_128_BIT_UUID, SERVICE.to_bytes() + prefix)])
        )
        await self.device.start_advertising(auto_restart=True)

    async def keep_advertising(self, period: float = 1.0) -> None:
        """Re-announce the advertisement every ``period`` s until the first connection (cancel to
        stop). btvirt's controllers (emulator/btdev.c, 5.66) hand an advertising report to a
        scanner only when advertising or scanning is enabled, never on an interval as a radio
        does; the kernel creates a requested LE connection when it hears the device while
        scanning, and bluetoothd restarts discovery only every ~10 s, so without this a 10 s
        connect attempt can miss every report."""
        while not self.device.connections:
            await asyncio.sleep(period)
            if self.device.connections:
                return
            await self.device.stop_advertising()
            await self.device.start_advertising(auto_restart=True)

    async def notify(self, chunk: bytes) -> None:
        await self.device.notify_subscribers(self.tx, bytes([self.tag]) + chunk)

    async def next_write(self) -> bytes:
        async with asyncio.timeout(10):
            return await self.written.get()
