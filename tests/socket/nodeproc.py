"""Helpers to run the node as a real process, with a unix datagram socket standing in for systemd."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

NODE = [sys.executable, "-m", "node.cli"]


def cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NODE, *args], capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class NotifyListener:
    """What systemd would receive on NOTIFY_SOCKET."""

    path: Path
    sock: socket.socket
    messages: list[str] = field(default_factory=list)

    def wait_for(self, line: str, timeout: float = 20.0) -> list[str]:
        """Collect messages until one contains ``line``; returns all collected so far."""
        self.sock.settimeout(timeout)
        while not any(line in m.splitlines() for m in self.messages):
            self.messages.append(self.sock.recv(4096).decode())
        return self.messages

    def collect(self, seconds: float) -> list[str]:
        """Collect whatever arrives during ``seconds`` (a window for counting, not a timing check)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                break
        return self.messages


@dataclass
class RunningNode:
    proc: subprocess.Popen[str]
    runtime_dir: Path
    state_dir: Path
    peer_id: str
    udp_port: int

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return cli(*args)
