"""Fixtures that run the node as a real process (helpers in tests/support/nodeproc.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.nodeproc import NotifyListener, RunningNode, start_node


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifyListener]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        yield NotifyListener(path, sock)
    finally:
        sock.close()


@pytest.fixture
def running_node(tmp_path: Path, notify_socket: NotifyListener) -> Iterator[RunningNode]:
    node = start_node(tmp_path, notify_socket.path)
    try:
        yield node
    finally:
        node.kill()
