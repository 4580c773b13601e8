"""Real node processes over BLE: the fake bluetoothd runs as its own process on a private bus, each
node gets DBUS_SYSTEM_BUS_ADDRESS and an adapter of its own; they find each other by scan, link,
prove their ids in the session handshake and exchange messages with ``send``/``listen`` on path
kind "ble". A node whose bus has no BlueZ, or no bus at all, shows ble unavailable and works."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ble.conftest import FakeBluezProcess
from tests.fakes.bluez import PrivateBus
from tests.support.app_cli import Listener, app_json, peers, wait_for
from tests.support.nodeproc import RunningNode, start_node

pytestmark = [pytest.mark.ble, pytest.mark.process]


@pytest.fixture
def ble_pair(
    tmp_path: Path, private_bus: PrivateBus, fake_bluez_process: FakeBluezProcess
) -> Iterator[tuple[RunningNode, RunningNode]]:
    env = {"DBUS_SYSTEM_BUS_ADDRESS": private_bus.address}
    nodes: list[RunningNode] = []
    try:
        for index in range(2):
            (tmp_path / f"n{index}").mkdir()
            nodes.append(
                start_node(tmp_path / f"n{index}", extra_config=f'[ble]\nadapter = "hci{index}"\n', env=env)
            )
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.kill()


def _ble_peer(node: RunningNode, other: RunningNode) -> dict[str, object] | None:
    for row in peers(node):
        if row["peer_id"] == other.peer_id and any(p["kind"] == "ble" for p in row["paths"]):
            return row
    return None


def test_two_nodes_find_each_other_and_exchange_messages_over_ble(
    ble_pair: tuple[RunningNode, RunningNode],
) -> None:
    a, b = ble_pair
    wait_for(lambda: _ble_peer(a, b), "a has a ble path to b", seconds=30)
    wait_for(lambda: _ble_peer(b, a), "b has a ble path to a", seconds=30)
    status = app_json(a, "status")
    assert status["ble"]["state"] == "ready" and status["ble"]["adapter"] == "hci0"
    assert status["ble"]["links"] == 1 and status["ble"]["peers"] == 1

    listener = Listener.start(b)
    try:
        data = os.urandom(100_000)
        result = app_json(a, "send", b.peer_id, "-", input_bytes=data)
        assert result["acknowledged"] == 1
        item = listener.next()
        while item["type"] != "message":
            item = listener.next()
        assert base64.b64decode(item["data_b64"]) == data
        assert item["peer_id"] == a.peer_id and item["path"] == "ble"
        assert listener.stop() == 0
    finally:
        listener.proc.kill()


def test_a_bus_without_bluez_shows_ble_unavailable_and_the_node_works(
    tmp_path: Path, private_bus: PrivateBus
) -> None:
    node = start_node(tmp_path, env={"DBUS_SYSTEM_BUS_ADDRESS": private_bus.address})
    try:

        def unavailable() -> dict[str, str] | None:
            ble: dict[str, str] = app_json(node, "status")["ble"]
            return ble if ble["state"] == "unavailable" and ble["reason"] != "starting" else None

        ble = wait_for(unavailable, "ble unavailable")
        assert "org.bluez" in ble["reason"] or "bluetoothd" in ble["reason"]
        assert app_json(node, "status")["transports"]["udp"] == "ready"
    finally:
        node.kill()


def test_no_system_bus_shows_ble_unavailable_and_disabled_shows_disabled(tmp_path: Path) -> None:
    (tmp_path / "on").mkdir()
    node = start_node(tmp_path / "on", env={"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"})
    try:
        ble = app_json(node, "status")["ble"]
        assert ble["state"] == "unavailable" and "D-Bus" in ble["reason"]
        (tmp_path / "off").mkdir()
        disabled = start_node(tmp_path / "off", extra_config="[ble]\nenabled = false\n")
        try:
            assert app_json(disabled, "status")["ble"] == {"state": "disabled"}
        finally:
            disabled.kill()
    finally:
        node.kill()
