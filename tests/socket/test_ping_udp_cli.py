"""``bitcraps-node ping udp://`` against the real daemon's UDP port; ``tls://`` and a bare address
still go over TCP-TLS."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.support.nodeproc import RunningNode, cli


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("bitcraps-node:")]


def _other_peer_id(tmp_path: Path) -> str:
    doc = cli("identity", "show", "--state-dir", str(tmp_path / "other"), "--json").stdout
    return str(json.loads(doc)["peer_id"])


def test_ping_udp_proves_the_peer_id_and_reports_rtt(running_node: RunningNode, tmp_path: Path) -> None:
    address = f"udp://127.0.0.1:{running_node.udp_port}"
    state = str(tmp_path / "client")
    result = cli(
        "ping", address, "--peer", running_node.peer_id, "--count", "3", "--json", "--state-dir", state
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["transport"] == "udp"
    assert doc["peer_id"] == running_node.peer_id
    assert doc["address"] == f"127.0.0.1:{running_node.udp_port}"
    assert doc["trust"] == "development"
    assert len(doc["rtt_ms"]) == 3
    assert all(r > 0 for r in doc["rtt_ms"])
    assert doc["rtt_ms_min"] == min(doc["rtt_ms"])

    # Without --peer: the id the key there proves under this node's trust.
    text = cli("ping", address, "--state-dir", state)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"peer {running_node.peer_id} at {address}: rtt ")

    status = json.loads(cli("status", "--json", "--runtime-dir", str(running_node.runtime_dir)).stdout)
    assert status["udp"]["handshakes"] >= 2


def test_ping_udp_refuses_another_peer_id(running_node: RunningNode, tmp_path: Path) -> None:
    address = f"udp://127.0.0.1:{running_node.udp_port}"
    other = _other_peer_id(tmp_path)
    wrong = cli("ping", address, "--peer", other, "--state-dir", str(tmp_path / "client"))
    assert wrong.returncode == 1
    assert wrong.stdout == ""
    errors = _errors(wrong.stderr)
    assert len(errors) == 1
    assert errors[0].startswith(f"bitcraps-node: {address}: peer_mismatch: dialled {other}")
    assert f"proved {running_node.peer_id}" in errors[0]


def test_ping_udp_applies_this_nodes_trust(running_node: RunningNode, tmp_path: Path) -> None:
    # Pinned to another peer: the node's key is proven but not trusted, with or without --peer.
    config = tmp_path / "client.toml"
    config.write_text(f'[trust]\npinned_peer_ids = ["{_other_peer_id(tmp_path)}"]\n')
    address = f"udp://127.0.0.1:{running_node.udp_port}"
    for extra in ((), ("--peer", running_node.peer_id)):
        refused = cli("ping", address, *extra, "--config", str(config), "--state-dir", str(tmp_path / "c"))
        assert refused.returncode == 1
        errors = _errors(refused.stderr)
        assert len(errors) == 1
        assert errors[0].startswith(f"bitcraps-node: {address}: auth_failed: ")
        assert "not trusted" in errors[0]


def test_ping_udp_without_an_answer_says_so(tmp_path: Path) -> None:
    # A port that receives and never answers (ours), and a short connect timeout.
    config = tmp_path / "client.toml"
    config.write_text("[transport]\nconnect_timeout_s = 0.5\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        address = f"udp://127.0.0.1:{silent.getsockname()[1]}"
        result = cli("ping", address, "--config", str(config), "--state-dir", str(tmp_path / "client"))
        assert silent.recv(2048)  # the INIT arrived
    assert result.returncode == 1
    errors = _errors(result.stderr)
    assert len(errors) == 1
    assert errors[0].startswith(f"bitcraps-node: {address}: connect_timeout: no answer to the UDP handshake")


def test_tls_scheme_and_bare_address_ping_over_tcp_tls(running_node: RunningNode, tmp_path: Path) -> None:
    state = str(tmp_path / "client")
    for address in (f"tls://127.0.0.1:{running_node.tls_port}", f"127.0.0.1:{running_node.tls_port}"):
        result = cli("ping", address, "--peer", running_node.peer_id, "--json", "--state-dir", state)
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["transport"] == "tcp_tls"
        assert doc["peer_id"] == running_node.peer_id
        assert doc["address"] == f"127.0.0.1:{running_node.tls_port}"
    unknown = cli("ping", f"ftp://127.0.0.1:{running_node.tls_port}", "--state-dir", state)
    assert unknown.returncode == 2
    assert len(_errors(unknown.stderr)) == 1
