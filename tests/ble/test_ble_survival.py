"""A running node on the fake bluetoothd survives what radios and bluetoothd do: its adapter
removed and added again or powered off and on, bluetoothd restarted, the peer's device vanishing
mid-write. Each time it shows ble unavailable while BlueZ or the adapter is missing or off, comes
back ready by itself and exchanges messages again; it never exits. Malformed chunks and mesh
frames another stack writes to it over a link are dropped and counted in ``status --json`` ble
counters."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bluez.objects import ObjectCache
from bluez.proto.linkframes import LinkKind, encode
from tests.ble.conftest import FakeBluezProcess, fake_bluez_subprocess
from tests.ble.transports import ble_node
from tests.fakes.bluez import PrivateBus, adapter_address
from tests.support.app_cli import Listener, app, app_json, peers, wait_for
from tests.support.nodeproc import RunningNode, start_node

pytestmark = [pytest.mark.ble, pytest.mark.process]


@pytest.fixture
async def fake3(private_bus: PrivateBus) -> AsyncIterator[FakeBluezProcess]:
    async with fake_bluez_subprocess(private_bus, 3) as fake:
        yield fake


def _node(tmp_path: Path, bus: PrivateBus, index: int) -> RunningNode:
    (tmp_path / f"n{index}").mkdir()
    config = f'[ble]\nadapter = "hci{index}"\n'
    return start_node(
        tmp_path / f"n{index}", extra_config=config, env={"DBUS_SYSTEM_BUS_ADDRESS": bus.address}
    )


def _ble(node: RunningNode) -> dict[str, Any]:
    assert node.proc.poll() is None, node.stderr_path.read_text()[-2000:]
    ble: dict[str, Any] = app_json(node, "status")["ble"]
    return ble


def _has_ble_peer(node: RunningNode, other: RunningNode) -> bool:
    return any(
        row["peer_id"] == other.peer_id and any(p["kind"] == "ble" for p in row["paths"])
        for row in peers(node)
    )


def _exchange(a: RunningNode, b: RunningNode, data: bytes) -> None:
    wait_for(lambda: _has_ble_peer(a, b), "a has a ble path to b", seconds=40)
    listener = Listener.start(b)
    try:
        assert app_json(a, "send", b.peer_id, "-", input_bytes=data)["acknowledged"] == 1
        item = listener.next()
        while item["type"] != "message" or base64.b64decode(item["data_b64"]) != data:
            item = listener.next()
        assert item["path"] == "ble"
        assert listener.stop() == 0
    finally:
        listener.proc.kill()


# Four outages in a row, each waited out by condition (about 20 s here): more than the default
# 60 s budget on a slow CI machine, still bounded.
@pytest.mark.timeout(150)
async def test_adapter_removal_bluetoothd_restart_and_a_vanishing_device_are_survived(
    tmp_path: Path, private_bus: PrivateBus, fake3: FakeBluezProcess
) -> None:
    a, b = _node(tmp_path, private_bus, 0), _node(tmp_path, private_bus, 1)
    try:
        _exchange(a, b, b"before")
        assert app_json(a, "status")["transports"]["ble"] == "ready"

        await fake3.hook("remove hci0")
        down = wait_for(lambda: (s := _ble(a))["state"] == "unavailable" and s, "a's ble unavailable")
        assert "hci0" in down["reason"] or "adapter" in down["reason"]
        assert app_json(a, "status")["transports"]["ble"] == "degraded"
        await fake3.hook("add 0")
        wait_for(lambda: _ble(a)["state"] == "ready", "a's ble ready again", seconds=30)
        _exchange(a, b, b"after the adapter came back")

        await fake3.hook("restart")
        wait_for(lambda: _ble(a)["state"] == "ready" and _ble(b)["state"] == "ready", "ready after restart")
        _exchange(b, a, b"after bluetoothd restarted")

        # The peer vanishes while a large message is being written to it: the send may fail
        # (its one path is gone), the node must not.
        wait_for(lambda: _has_ble_peer(a, b), "a has a ble path to b", seconds=40)
        sender = asyncio.create_task(
            asyncio.to_thread(app, a, "send", b.peer_id, "-", "--unreliable", input_bytes=os.urandom(200_000))
        )
        await asyncio.sleep(0.2)
        await fake3.hook(f"vanish hci0 {adapter_address(1)}")
        assert (await sender).returncode in (0, 1)
        _exchange(a, b, b"after the device vanished")
        assert _ble(a)["relay"]["links_lost"] >= 1
    finally:
        a.kill()
        b.kill()


async def test_an_adapter_powered_off_shows_unavailable_and_comes_back_when_powered(
    tmp_path: Path, private_bus: PrivateBus, fake_bluez_process: FakeBluezProcess
) -> None:
    a, b = _node(tmp_path, private_bus, 0), _node(tmp_path, private_bus, 1)
    try:
        _exchange(a, b, b"before")
        await fake_bluez_process.hook("power hci0 off")
        down = wait_for(lambda: (s := _ble(a))["state"] == "unavailable" and s, "a's ble unavailable")
        assert "hci0 is powered off" in down["reason"]
        assert app_json(a, "status")["transports"]["ble"] == "degraded"
        # Its links ended with the power: b has no BLE path to a any more.
        wait_for(lambda: not _has_ble_peer(b, a), "b lost its ble path to a")
        await fake_bluez_process.hook("power hci0 on")
        wait_for(lambda: _ble(a)["state"] == "ready", "a's ble ready again", seconds=30)
        _exchange(a, b, b"after the adapter was powered again")
        _exchange(b, a, b"and back")
    finally:
        a.kill()
        b.kill()


async def test_malformed_chunks_and_mesh_frames_are_counted_in_status(
    tmp_path: Path, private_bus: PrivateBus, fake3: FakeBluezProcess
) -> None:
    node = _node(tmp_path, private_bus, 0)
    try:
        wait_for(lambda: _ble(node)["state"] == "ready", "ble ready")
        async with ObjectCache() as cache, ble_node(cache, 2) as attacker:
            async with asyncio.timeout(20):
                while adapter_address(0) not in attacker.found:  # noqa: ASYNC110 - filled by the scanner
                    await asyncio.sleep(0.05)
            link = await attacker.transport.open_link(adapter_address(0))
            pipe = attacker.transport.links[link]
            for datagram in (
                encode(LinkKind.MESH, b"\x40" + bytes(30)),  # reserved bits set
                encode(LinkKind.MESH, bytes(10)),  # shorter than a mesh header
            ):
                assert pipe.put(datagram)
            for chunk in (
                bytes([0xC1, 0xFF, 0xFF]) + b"x",  # a first chunk claiming 65535 bytes
                bytes([0x45]) + b"orphan",  # a continuation without its first chunk
            ):
                await link.send(chunk)

            def counted() -> dict[str, int] | None:
                relay: dict[str, int] = _ble(node)["relay"]
                keys = ("mesh_dropped_reserved_bits", "mesh_dropped_truncated", "chunks_dropped_too_large")
                return relay if all(relay.get(k) for k in keys) else None

            relay = await asyncio.to_thread(wait_for, counted, "the drops counted in status")
            assert relay["chunks_dropped_orphan"] >= 1
        assert node.proc.poll() is None
    finally:
        node.kill()
