"""``[trust]`` through the real CLI and daemon: the node and ``ping`` admit peers by it, the old
``[tcp_tls]`` trust keys still work with one warning line, and a conflict is exit 2 in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.socket.test_config_exit_codes import _one_line_exit_2, _run
from tests.support.nodeproc import cli, start_node

pytestmark = pytest.mark.process

PEER = "a" * 52
OTHER = "b" * 52


def _peer_id(state: Path) -> str:
    shown = cli("identity", "show", "--state-dir", str(state), "--json")
    assert shown.returncode == 0, shown.stderr
    peer_id: str = json.loads(shown.stdout)["peer_id"]
    return peer_id


def test_a_conflict_between_trust_and_tcp_tls_is_exit_2_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(f'[trust]\npinned_peer_ids = ["{PEER}"]\n[tcp_tls]\npinned_peer_ids = ["{OTHER}"]\n')
    for result in (cli("config", "check", str(config)), _run(tmp_path, config)):
        _one_line_exit_2(result, "trust.pinned_peer_ids")
        assert "tcp_tls.pinned_peer_ids" in result.stderr


def test_old_keys_pass_the_check_with_one_warning_and_show_under_trust(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(f'[tcp_tls]\nport = 0\npinned_peer_ids = ["{PEER}"]\n')
    check = cli("config", "check", str(config))
    assert check.returncode == 0, check.stderr
    assert check.stdout == f"{config}: ok\n"
    assert check.stderr.count("\n") == 1 and "level=warning" in check.stderr
    assert "tcp_tls.pinned_peer_ids: deprecated" in check.stderr
    shown = cli("config", "show", "--config", str(config)).stdout
    assert f'pinned_peer_ids = ["{PEER}"]' in shown[shown.index("[trust]") : shown.index("[tcp_tls]")]
    assert "pinned_peer_ids" not in shown[shown.index("[tcp_tls]") :]
    doc = json.loads(cli("config", "show", "--config", str(config), "--json").stdout)
    assert doc["trust"]["pinned_peer_ids"] == [PEER] and "pinned_peer_ids" not in doc["tcp_tls"]


def test_node_and_ping_admit_peers_by_trust(tmp_path: Path) -> None:
    client_state = tmp_path / "client"
    client_id = _peer_id(client_state)
    node = start_node(
        tmp_path, extra_config=f'[trust]\npinned_peer_ids = ["{client_id}"]\nallow_development = false\n'
    )
    try:
        status = json.loads(cli("status", "--json", "--runtime-dir", str(node.runtime_dir)).stdout)
        assert status["tcp_tls"]["trust"] == "pinned, 1 pinned"
        address = f"127.0.0.1:{node.tls_port}"
        client_cfg = tmp_path / "client.toml"
        client_cfg.write_text(f'[trust]\npinned_peer_ids = ["{node.peer_id}"]\n')
        ok = cli("ping", address, "--config", str(client_cfg), "--state-dir", str(client_state), "--json")
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["peer_id"] == node.peer_id
        assert json.loads(ok.stdout)["trust"] == "pinned"
        # The client's own pins decide on its side: the node is not pinned there.
        elsewhere = tmp_path / "elsewhere.toml"
        elsewhere.write_text(f'[trust]\npinned_peer_ids = ["{OTHER}"]\n')
        refused = cli("ping", address, "--config", str(elsewhere), "--state-dir", str(client_state))
        assert refused.returncode == 1 and "not_pinned" in refused.stderr, refused.stderr
        # A peer the node has not pinned is refused by the node.
        stranger = cli("ping", address, "--state-dir", str(tmp_path / "stranger"))
        assert stranger.returncode == 1 and "auth_failed (not_pinned)" in stranger.stderr, stranger.stderr
    finally:
        node.kill()
