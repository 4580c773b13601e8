"""Two node processes, one with the other in ``[peers] static``: they connect by themselves and
``status --json`` shows each peer under ``coordinator`` with an active path."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.nodeproc import RunningNode, cli, start_node

pytestmark = pytest.mark.process


def _coordinator(node: RunningNode) -> dict[str, Any]:
    result = cli("status", "--json", "--runtime-dir", str(node.runtime_dir))
    assert result.returncode == 0, result.stderr
    coordinator: dict[str, Any] = json.loads(result.stdout)["coordinator"]
    return coordinator


def _wait_for_peer(node: RunningNode, peer: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30  # a hang fails; nothing is timed
    while True:
        status = _coordinator(node)
        rows = [row for row in status["peers"] if row["peer_id"] == peer and row["active"] is not None]
        if rows:
            return rows[0]
        assert time.monotonic() < deadline, f"no active path to {peer}: {status}"
        time.sleep(0.2)


def test_static_peers_connect_by_themselves(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    b = start_node(tmp_path / "b")
    try:
        assert _coordinator(b)["peers"] == []
        extra = f'[peers]\nstatic = ["{b.peer_id}@udp://127.0.0.1:{b.udp_port}", "{b.peer_id}@tls://127.0.0.1:{b.tls_port}"]\n'
        a = start_node(tmp_path / "a", extra_config=extra)
        try:
            seen_by_a = _wait_for_peer(a, b.peer_id)
            assert seen_by_a["active"]["kind"] in ("udp", "tcp_tls")
            seen_by_b = _wait_for_peer(b, a.peer_id)  # the inbound side: paths from events
            assert seen_by_b["active"]["endpoint"].startswith("127.0.0.1:")
            status = _coordinator(a)
            assert status["messages"]["failed"] == 0 and status["malformed"] == 0
        finally:
            a.kill()
    finally:
        b.kill()
