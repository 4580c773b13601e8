"""The running daemon follows its network (issue 14): when its host's cable is pulled, the TCP-TLS
link and the UDP session that left from the lost address are closed at once as NETWORK_DOWN (not
after the 30 s consent or TCP timeouts), every change is logged, and NAT discovery runs again
once the cable is back."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from netlink.lab.builder import Lab
from netlink.lab.coturn import STUN_PORT
from netlink.lab.failover import set_carrier
from netlink.lab.nat import NatBehaviour
from netlink.lab.topology import STUN_PRIMARY
from tests.lab.conftest import LabFactory
from tests.lab.node_daemon import NODE, node_daemon

pytestmark = pytest.mark.lab

UDP_PORT, TLS_PORT = 47474, 47475
HANG_S = 60.0  # deadlines only to detect a hang, never measurements


def _status(lab: Lab, runtime: Path) -> dict[str, Any]:
    done = lab.run("O1", [*NODE, "status", "--json", "--runtime-dir", str(runtime)], timeout=30)
    assert done.returncode == 0, done.stderr.decode()
    status: dict[str, Any] = json.loads(done.stdout)
    return status


def _wait(lab: Lab, runtime: Path, what: str, ok: Any) -> dict[str, Any]:
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        status = _status(lab, runtime)
        if ok(status):
            return status
        time.sleep(0.1)
    raise AssertionError(f"the daemon never showed {what}: {json.dumps(status)[:2000]}")


def _holder(lab: Lab, kind: str, peer: str, port: int, state: Path) -> subprocess.Popen[bytes]:
    host = str(lab.host("O1").address)
    proc = lab.popen(
        "srv",
        [sys.executable, "-m", "tests.lab.hold_link", kind, host, str(port), peer, str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"held\n", f"the {kind} holder did not connect"
    return proc


def test_a_pulled_cable_closes_links_on_it_as_network_down_and_rediscovers(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    lab = lab_factory((("A", NatBehaviour.OPEN),), open_hosts=1)
    config = (
        f'[node]\nlisten_address = "0.0.0.0"\nudp_port = {UDP_PORT}\n[tcp_tls]\nport = {TLS_PORT}\n'
        f'[stun]\nservers = ["{STUN_PRIMARY}:{STUN_PORT}"]\n[metrics]\nlisten = ""\n'
    )
    (tmp_path / "node").mkdir()
    with node_daemon(lab, "O1", config, tmp_path / "node") as (first, runtime):
        peer = first.split()[0].removeprefix("peer_id=")
        _wait(lab, runtime, "a first discovery", lambda s: s["nat"]["runs"] >= 1)
        holders = [
            _holder(lab, "tls", peer, TLS_PORT, tmp_path / "tls"),
            _holder(lab, "udp", peer, UDP_PORT, tmp_path / "udp"),
        ]
        try:
            _wait(
                lab, runtime, "both links", lambda s: s["tcp_tls"]["peers"] == 1 and s["udp"]["sessions"] == 1
            )
            before = _status(lab, runtime)
            runs = before["nat"]["runs"]
            (eth0,) = [i for i in before["network"]["interfaces"] if i["name"] == "eth0"]
            assert eth0["carrier"] is True and eth0["addresses"] == [f"{lab.host('O1').address}/24"]

            set_carrier(lab, "O1", up=False)
            down = _wait(
                lab,
                runtime,
                "both links closed for the network",
                lambda s: (
                    s["network"]["closed_for_network"] == 2
                    and s["tcp_tls"]["peers"] == 0
                    and s["udp"]["sessions"] == 0
                ),
            )
            (eth0,) = [i for i in down["network"]["interfaces"] if i["name"] == "eth0"]
            assert eth0["carrier"] is False
            assert down["network"]["events"] > before["network"]["events"]

            set_carrier(lab, "O1", up=True)
            _wait(lab, runtime, "a discovery after the cable came back", lambda s: s["nat"]["runs"] > runs)
        finally:
            for holder in holders:
                holder.communicate(timeout=HANG_S)
    log = (tmp_path / "node" / "stderr").read_text()
    assert "event=link_down interface=eth0" in log and "event=link_up interface=eth0" in log
