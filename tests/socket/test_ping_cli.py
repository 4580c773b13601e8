"""``bitcraps-node ping`` against the real daemon's TCP-TLS listener, in dev and fleet-CA modes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.nodeproc import RunningNode, cli, start_node


def test_ping_proves_the_peer_id_and_reports_rtt(running_node: RunningNode, tmp_path: Path) -> None:
    address = f"127.0.0.1:{running_node.tls_port}"
    state = str(tmp_path / "client")
    result = cli("ping", address, "--state-dir", state, "--json", "--count", "3")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["peer_id"] == running_node.peer_id
    assert len(doc["rtt_ms"]) == 3
    assert all(r > 0 for r in doc["rtt_ms"])
    text = cli("ping", address, "--state-dir", state, "--peer", running_node.peer_id)
    assert text.returncode == 0
    assert text.stdout.startswith(f"peer {running_node.peer_id} at {address}: rtt ")

    # Another peer id expected at that address: refused, typed, one line.
    other = json.loads(cli("identity", "show", "--state-dir", state, "--json").stdout)["peer_id"]
    wrong = cli("ping", address, "--state-dir", state, "--peer", other)
    assert wrong.returncode == 1
    errors = [line for line in wrong.stderr.splitlines() if line.startswith("bitcraps-node:")]
    assert len(errors) == 1
    assert f"peer_mismatch (peer_mismatch): expected {other}" in errors[0]

    status = json.loads(cli("status", "--json", "--runtime-dir", str(running_node.runtime_dir)).stdout)
    assert status["tcp_tls"]["handshakes"] >= 2
    assert status["tcp_tls"]["bytes_received"] > 0


def test_fleet_ca_node_admits_fleet_peers_only(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    assert cli("identity", "ca-init", str(ca)).returncode == 0
    # The node's identity first, then its certificate from the CA (as Ansible would do).
    node_state = tmp_path / "state"
    pub = json.loads(cli("identity", "show", "--state-dir", str(node_state), "--json").stdout)[
        "public_key_path"
    ]
    assert (
        cli(
            "identity", "issue", "--ca", str(ca), "--pubkey", pub, "--out", str(tmp_path / "node.crt")
        ).returncode
        == 0
    )
    fleet = f'\n[tcp_tls]\nport = 0\nca_file = "{ca / "ca.crt"}"\ncert_file = "{tmp_path / "node.crt"}"\n'
    node = start_node(tmp_path, extra_config=fleet)
    try:
        address = f"127.0.0.1:{node.tls_port}"
        # A client of the fleet: its own certificate from the same CA.
        client_state = tmp_path / "client"
        client_pub = json.loads(cli("identity", "show", "--state-dir", str(client_state), "--json").stdout)
        client_crt = tmp_path / "client.crt"
        assert (
            cli(
                "identity",
                "issue",
                "--ca",
                str(ca),
                "--pubkey",
                client_pub["public_key_path"],
                "--out",
                str(client_crt),
            ).returncode
            == 0
        )
        client_cfg = tmp_path / "client.toml"
        client_cfg.write_text(f'[tcp_tls]\nca_file = "{ca / "ca.crt"}"\ncert_file = "{client_crt}"\n')
        ok = cli("ping", address, "--config", str(client_cfg), "--state-dir", str(client_state), "--json")
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["peer_id"] == node.peer_id
        assert json.loads(ok.stdout)["trust"] == "fleet_ca"
        # A client without a fleet certificate (development mode) is refused with a typed reason.
        stranger = cli("ping", address, "--state-dir", str(tmp_path / "stranger"))
        assert stranger.returncode == 1
        assert "auth_failed (bad_certificate)" in stranger.stderr
    finally:
        node.kill()
