"""Fixtures that run the node as a real process (helpers in nodeproc.py)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.socket.nodeproc import NODE, NotifyListener, RunningNode


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
    config = tmp_path / "node.toml"
    config.write_text('[node]\nlisten_address = "127.0.0.1"\nudp_port = 0\n')
    state, runtime = tmp_path / "state", tmp_path / "run"
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_socket.path), WATCHDOG_USEC="200000")
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [*NODE, "run", "--config", str(config), "--state-dir", str(state), "--runtime-dir", str(runtime)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.fullmatch(r"peer_id=([a-z2-7]{52}) listen=udp://127\.0\.0\.1:(\d+)\n", first)
        assert match, (
            f"unexpected first stdout line {first!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
        )
        yield RunningNode(proc, runtime, state, match.group(1), int(match.group(2)))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
