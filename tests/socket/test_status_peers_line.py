"""systemd's STATUS= line follows the node's peers: once a peer connects, the running node sends
a new STATUS= naming it and its active path."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.app_cli import connect
from tests.support.nodeproc import NotifyListener, start_node

pytestmark = pytest.mark.process


def test_status_line_names_a_connected_peer_and_its_active_path(
    tmp_path: Path, notify_socket: NotifyListener
) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    a = start_node(tmp_path / "a", notify_socket.path)
    try:
        notify_socket.wait_for("READY=1")
        b = start_node(tmp_path / "b")
        try:
            connect(a, b, "udp")
            wanted = f"{b.peer_id[:8]} udp 127.0.0.1:{b.udp_port}"
            deadline = time.monotonic() + 30  # a hang fails; nothing is timed
            while not any(
                line.startswith("STATUS=") and "1 peers, 1 with an active path" in line and wanted in line
                for message in notify_socket.messages
                for line in message.splitlines()
            ):
                assert time.monotonic() < deadline, notify_socket.messages[-5:]
                notify_socket.collect(0.5)
        finally:
            b.kill()
    finally:
        a.kill()
