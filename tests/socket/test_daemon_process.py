"""The daemon as a real process: systemd notifications, status, STUN on its UDP port, shutdown."""

from __future__ import annotations

import ipaddress
import json
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from node.proto import stun
from tests.support.nodeproc import NotifyListener, RunningNode, cli, start_node

pytestmark = pytest.mark.process


def _binding(sock: socket.socket, port: int) -> stun.Message:
    request = stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, stun.new_transaction_id())
    sock.sendto(stun.encode(request), ("127.0.0.1", port))
    data, _ = sock.recvfrom(2048)
    response = stun.decode(data)
    assert response.transaction_id == request.transaction_id
    assert stun.verify_fingerprint(data)
    return response


def test_ready_watchdog_status_stun_and_orderly_stop(
    running_node: RunningNode, notify_socket: NotifyListener
) -> None:
    messages = notify_socket.wait_for("READY=1")
    ready = next(m for m in messages if "READY=1" in m.splitlines())
    assert any(
        line.startswith("STATUS=") and running_node.peer_id[:12] in line for line in ready.splitlines()
    )

    # WATCHDOG_USEC=0.2 s -> a ping every 0.1 s; count over a generous window, no tight timing.
    notify_socket.collect(1.5)
    assert sum(m.splitlines().count("WATCHDOG=1") for m in notify_socket.messages) >= 3

    status = cli("status", "--json", "--runtime-dir", str(running_node.runtime_dir))
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["peer_id"] == running_node.peer_id
    assert doc["listen"] == [
        f"udp://127.0.0.1:{running_node.udp_port}",
        f"tls://127.0.0.1:{running_node.tls_port}",
    ]
    # ble is degraded on a machine without BlueZ (CI), ready on one with it.
    assert doc["transports"].pop("ble") in ("ready", "degraded")
    assert doc["transports"] == {"udp": "ready", "tcp_tls": "ready"}
    assert doc["tcp_tls"]["trust"].startswith("development")
    assert doc["tcp_tls"]["connections"] == 0
    assert isinstance(doc["version"], str) and doc["uptime_s"] >= 0
    # The status request itself is the one client; nothing served, refused or failed before it.
    assert doc["control"] == {
        "clients": 1,
        "max_clients": 16,
        "served": 0,
        "refused": 0,
        "errors": {},
        "faults": {},
        "streams": 0,
        "streams_slow": 0,
    }
    human = cli("status", "--runtime-dir", str(running_node.runtime_dir))
    assert human.returncode == 0, human.stderr
    assert "control:    1/16 clients, 1 served, 0 refused, 0 bad requests, 0 faults" in human.stdout

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.bind(("127.0.0.1", 0))
        # Garbage first: the node must drop it and keep answering.
        for junk in (
            b"",
            b"\x00\x01",
            b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"\x00" * 12 + b"\xff",
            b"x" * 900,
        ):
            sock.sendto(junk, ("127.0.0.1", running_node.udp_port))
        response = _binding(sock, running_node.udp_port)
        assert response.message_class is stun.MessageClass.SUCCESS
        mapped = response.find(stun.XorMappedAddress)
        assert mapped is not None
        assert (mapped.ip, mapped.port) == (ipaddress.ip_address("127.0.0.1"), sock.getsockname()[1])

    running_node.proc.send_signal(signal.SIGTERM)
    assert running_node.proc.wait(timeout=10) == 0
    notify_socket.wait_for("STOPPING=1", timeout=5)
    assert not (running_node.runtime_dir / "control.sock").exists()

    after = cli("status", "--json", "--runtime-dir", str(running_node.runtime_dir))
    assert after.returncode == 3
    assert after.stdout == ""
    assert "no node is running" in after.stderr


def test_identity_persists_across_restarts(running_node: RunningNode, tmp_path: Path) -> None:
    key = running_node.state_dir / "identity.key"
    assert key.stat().st_mode & 0o777 == 0o600
    running_node.proc.send_signal(signal.SIGINT)
    assert running_node.proc.wait(timeout=10) == 0
    again = start_node(tmp_path)
    try:
        assert again.peer_id == running_node.peer_id
        assert "loaded identity" in again.stderr_path.read_text()
    finally:
        again.kill()


def test_status_without_a_node_exits_3(tmp_path: Path) -> None:
    result = cli("status", "--runtime-dir", str(tmp_path))
    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1


def test_bad_config_exits_2_with_one_line_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[transport]\nmax_connections = "lots"\n')
    for args in (("config", "check", str(bad)), ("run", "--config", str(bad), "--state-dir", str(tmp_path))):
        result = cli(*args)
        assert result.returncode == 2, result
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1
        assert "transport.max_connections" in result.stderr
        assert "Traceback" not in result.stderr


def test_config_show_prints_effective_config_as_one_json_document(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[transport]\nretries = 5\n")
    assert cli("config", "check", str(good)).returncode == 0
    result = cli("config", "show", "--config", str(good), "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["transport"]["retries"] == 5
    toml_out = cli("config", "show", "--config", str(good))
    assert "retries = 5" in toml_out.stdout


def test_config_show_hides_credentials_unless_asked(tmp_path: Path) -> None:
    cfg = tmp_path / "turn.toml"
    cfg.write_text(
        '[turn]\nservers = ["turn:203.0.113.10"]\nusername = "u"\nshared_secret = "s3cret-value"\n'
    )
    for extra in ((), ("--json",)):
        assert "s3cret-value" not in cli("config", "show", "--config", str(cfg), *extra).stdout
    shown = cli("config", "show", "--config", str(cfg), "--json", "--show-secrets")
    assert json.loads(shown.stdout)["turn"]["shared_secret"] == "s3cret-value"


def test_second_node_on_the_same_runtime_dir_refuses(running_node: RunningNode, tmp_path: Path) -> None:
    config = tmp_path / "second.toml"
    config.write_text('[node]\nlisten_address = "127.0.0.1"\nudp_port = 0\n[tcp_tls]\nport = 0\n')
    result = cli(
        "run",
        "--config",
        str(config),
        "--state-dir",
        str(tmp_path / "s2"),
        "--runtime-dir",
        str(running_node.runtime_dir),
    )
    assert result.returncode == 1
    assert "already running" in result.stderr
    # The first node still answers.
    assert cli("status", "--runtime-dir", str(running_node.runtime_dir)).returncode == 0


def _run_with_config(tmp_path: Path, toml: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "busy.toml"
    config.write_text('[node]\nlisten_address = "127.0.0.1"\n' + toml)
    return cli(
        "run",
        "--config",
        str(config),
        "--state-dir",
        str(tmp_path / "s"),
        "--runtime-dir",
        str(tmp_path / "r"),
    )


def test_udp_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        result = _run_with_config(tmp_path, f"udp_port = {port}\n[tcp_tls]\nport = 0\n")
    assert result.returncode == 1
    assert f"port {port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_tcp_tls_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run_with_config(tmp_path, f"udp_port = 0\n[tcp_tls]\nport = {port}\n")
    assert result.returncode == 1
    assert f"TCP 127.0.0.1 port {port}" in result.stderr
    assert "Traceback" not in result.stderr
