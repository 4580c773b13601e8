"""The node as a real process behind a symmetric NAT with [turn] naming coturn: the relay comes
up in the background and ``status`` shows it; a dead first server is skipped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netlink.lab.nat import NatBehaviour
from tests.lab.conftest import LabFactory
from tests.lab.turn_helpers import coturn

pytestmark = pytest.mark.lab


def test_the_node_keeps_a_relay_and_reports_it(lab_factory: LabFactory, tmp_path: Path) -> None:
    lab = lab_factory(nats=(("A", NatBehaviour.SYMMETRIC),))
    turn = coturn(lab)
    config = tmp_path / "node.toml"
    config.write_text(
        "[node]\nudp_port = 0\n"
        "[breaker]\nrecovery_timeout_s = 1\n"
        # The first server does not exist (the stranger address answers nothing on 3478).
        f'[turn]\nservers = ["turn:203.0.113.12:3478?transport=tcp", '
        f'"turn:{turn.primary}:{turn.port}?transport=udp"]\n'
        f'username = "{turn.username}"\npassword = "{turn.password}"\n'
    )
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "node.cli", "run", "--config", str(config),
            "--state-dir", str(tmp_path / "state"), "--runtime-dir", str(run)]  # fmt: skip
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("w") as stderr:
        proc = lab.popen("A1", argv, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        status: dict[str, object] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done = subprocess.run(
                [sys.executable, "-m", "node.cli", "status", "--json", "--runtime-dir", str(run)],
                capture_output=True,
                check=False,
            )
            if done.returncode == 0:
                status = json.loads(done.stdout)
                view = status["turn"]
                if isinstance(view, dict) and view["state"] == "ready":
                    break
            time.sleep(0.2)
        view = status.get("turn")
        assert isinstance(view, dict), stderr_path.read_text()
        assert view["state"] == "ready", (view, stderr_path.read_text())
        assert str(view["relayed_address"]).startswith(f"{turn.primary}:")
        assert view["server"] == f"turn:{turn.primary}:{turn.port}?transport=udp"
        assert view["allocations"] == 1 and view["failed_attempts"] >= 1
        assert status["transports"]["turn"] == "ready"  # type: ignore[index]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, stderr_path.read_text()
