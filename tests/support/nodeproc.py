"""Helpers to run the node as a real process, with a unix datagram socket standing in for systemd."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

NODE = [sys.executable, "-m", "node.cli"]


def cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NODE, *args], capture_output=True, text=True, timeout=timeout, check=False)


class NotifyListener:
    """What systemd would receive on NOTIFY_SOCKET, read as it arrives.

    A thread drains the socket all the time, as systemd does: a unix datagram socket queues only
    ``net.unix.max_dgram_qlen`` messages (10 by default), and the node drops a notification rather
    than block its loop on a full one (node.services.systemd), so a test that read only when it
    waited lost STOPPING=1 behind the watchdog's pings on a slow, loaded machine."""

    def __init__(self, path: Path, sock: socket.socket) -> None:
        self.path = path
        self.sock = sock
        self.messages: list[str] = []
        self._arrived = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="notify-listener", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:  # the fixture closed the socket
                return
            with self._arrived:
                self.messages.append(data.decode())
                self._arrived.notify_all()

    def wait_for(self, line: str, timeout: float = 20.0) -> list[str]:
        """Until a message contains ``line``; all collected so far. TimeoutError after ``timeout``."""
        with self._arrived:
            if not self._arrived.wait_for(
                lambda: any(line in m.splitlines() for m in self.messages), timeout=timeout
            ):
                raise TimeoutError(f"no {line!r} within {timeout:g} s; last: {self.messages[-3:]}")
            return list(self.messages)

    def collect(self, seconds: float) -> list[str]:
        """Let messages arrive for ``seconds`` (a window for counting, not a timing check)."""
        time.sleep(seconds)
        with self._arrived:
            return list(self.messages)


@dataclass
class RunningNode:
    proc: subprocess.Popen[str]
    runtime_dir: Path
    state_dir: Path
    stderr_path: Path
    peer_id: str
    udp_port: int
    tls_port: int | None = None  # None when [tcp_tls] enabled = false

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_node(
    tmp_path: Path, notify_path: Path | None = None, extra_config: str = "", env: dict[str, str] | None = None
) -> RunningNode:
    """Start `bitcraps-node run` on loopback with a free UDP port; returns once it printed its id.
    ``extra_config`` is TOML appended to the config (other sections); ``env`` adds variables
    (e.g. DBUS_SYSTEM_BUS_ADDRESS of a fake BlueZ's bus)."""
    config = tmp_path / "node.toml"
    if "[tcp_tls]" not in extra_config:
        extra_config += "\n[tcp_tls]\nport = 0\n"  # a free port: tests run nodes side by side
    if "[metrics]" not in extra_config:
        extra_config += '\n[metrics]\nlisten = ""\n'  # off: nodes side by side would share its port
    config.write_text('[node]\nlisten_address = "127.0.0.1"\nudp_port = 0\n' + extra_config)
    state, runtime = tmp_path / "state", tmp_path / "run"
    env = dict(os.environ, WATCHDOG_USEC="200000", **(env or {}))
    env.pop("WATCHDOG_PID", None)
    env.pop("NOTIFY_SOCKET", None)
    if notify_path is not None:
        env["NOTIFY_SOCKET"] = str(notify_path)
    stderr_path = tmp_path / f"node-{time.monotonic_ns()}.stderr"
    # stderr to a file, not a pipe nobody drains: a chatty node must never block on its logs.
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            [*NODE, "run", "--config", str(config), "--state-dir", str(state), "--runtime-dir", str(runtime)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    match = re.fullmatch(
        r"peer_id=([a-z2-7]{52}) listen=udp://127\.0\.0\.1:(\d+)(?:,tls://127\.0\.0\.1:(\d+))?\n", first
    )
    if not match:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(f"unexpected first stdout line {first!r}; stderr: {stderr_path.read_text()}")
    tls_port = int(match.group(3)) if match.group(3) else None
    return RunningNode(proc, runtime, state, stderr_path, match.group(1), int(match.group(2)), tls_port)


def control_exchange(path: Path, payload: bytes, half_close: bool = True, timeout: float = 15.0) -> bytes:
    """One raw control-socket client: send ``payload`` (then end its side unless ``half_close`` is
    False), and return all the node sends back before it closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        if payload:
            s.sendall(payload)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def cli_into_closed_pipe(
    *args: str, buffered: bool = False, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with stdout a pipe whose reader has gone away (``| true`` without the race).
    ``buffered``: without PYTHONUNBUFFERED, as under systemd or a plain shell, the broken pipe
    shows at the flush, not at the write."""
    env = dict(os.environ)
    if buffered:
        env.pop("PYTHONUNBUFFERED", None)
    proc = subprocess.Popen(
        [*NODE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _, stderr = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
