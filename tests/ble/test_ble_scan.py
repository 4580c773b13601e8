"""``bitcraps-node ble scan`` as a process against the fake bluetoothd: it lists a node process
advertising on another adapter with that node's peer-id prefix; without a system bus, without
bluetoothd or without the adapter it exits 1 with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bluez.proto.linkframes import peer_prefix
from tests.ble.conftest import FakeBluezProcess
from tests.fakes.bluez import PrivateBus, adapter_address
from tests.support.nodeproc import cli, start_node

pytestmark = [pytest.mark.ble, pytest.mark.process]


def test_scan_lists_a_node_advertising_on_another_adapter(
    tmp_path: Path, private_bus: PrivateBus, fake_bluez_process: FakeBluezProcess
) -> None:
    (tmp_path / "node").mkdir()
    node = start_node(
        tmp_path / "node",
        extra_config='[ble]\nadapter = "hci1"\n',
        env={"DBUS_SYSTEM_BUS_ADDRESS": private_bus.address},
    )
    config = tmp_path / "scan.toml"
    config.write_text('[ble]\nadapter = "hci0"\n')
    try:
        # The node registers its advertisement a moment after it starts: scan until it is heard.
        for _ in range(10):
            done = cli("ble", "scan", "--seconds", "1", "--json", "--config", str(config))
            assert done.returncode == 0, done.stderr
            nodes = json.loads(done.stdout)["nodes"]
            if nodes:
                break
        assert nodes == [
            {
                "address": adapter_address(1),
                "rssi": nodes[0]["rssi"],
                "peer_id_prefix": peer_prefix(node.peer_id).hex(),
            }
        ]
        assert isinstance(nodes[0]["rssi"], int)
        table = cli("ble", "scan", "--seconds", "1", "--config", str(config))
        assert table.returncode == 0 and peer_prefix(node.peer_id).hex() in table.stdout
    finally:
        node.kill()


def test_scan_without_a_bus_or_adapter_exits_1_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_bus: PrivateBus
) -> None:
    # A bus without bluetoothd on it.
    done = cli("ble", "scan", "--seconds", "0.2", "--json")
    assert done.returncode == 1 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "org.bluez" in done.stderr
    # No bus at all.
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    done = cli("ble", "scan", "--seconds", "0.2")
    assert done.returncode == 1 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "D-Bus" in done.stderr


async def test_scan_of_a_missing_adapter_exits_1_with_one_line(
    tmp_path: Path, fake_bluez_process: FakeBluezProcess
) -> None:
    config = tmp_path / "scan.toml"
    config.write_text('[ble]\nadapter = "hci7"\n')
    done = cli("ble", "scan", "--seconds", "0.2", "--config", str(config))
    assert done.returncode == 1 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "hci7" in done.stderr
