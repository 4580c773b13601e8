"""Driving a running node's application API through the CLI: ``connect``/``send``/``peers`` as
subprocesses, and ``listen`` as a process whose JSON lines a thread collects."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.nodeproc import NODE, RunningNode, cli


def app(
    node: RunningNode, *args: str, input_bytes: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``bitcraps-node ARGS --runtime-dir <node's>`` (bytes in and out, for stdin messages)."""
    return subprocess.run(
        [*NODE, *args, "--runtime-dir", str(node.runtime_dir)],
        input=input_bytes,
        capture_output=True,
        timeout=120,
        check=False,
    )


def app_json(node: RunningNode, *args: str, input_bytes: bytes | None = None) -> dict[str, Any]:
    done = app(node, *args, "--json", input_bytes=input_bytes)
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def connect(a: RunningNode, b: RunningNode, scheme: str) -> dict[str, Any]:
    port = b.udp_port if scheme == "udp" else b.tls_port
    return app_json(a, "connect", b.peer_id, f"{scheme}://127.0.0.1:{port}", "--timeout", "30")


def peers(node: RunningNode) -> list[dict[str, Any]]:
    done = cli("peers", "--json", "--runtime-dir", str(node.runtime_dir))
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)["peers"]
    return rows


def wait_for(condition: Any, what: str, seconds: float = 30.0) -> Any:
    """Poll ``condition()`` until truthy (a hang fails; nothing is timed)."""
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)
    return value


@dataclass
class Listener:
    """``bitcraps-node listen --json`` on a node; its lines as dicts in ``lines``."""

    proc: subprocess.Popen[bytes]
    lines: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)

    @classmethod
    def start(cls, node: RunningNode) -> Listener:
        proc = subprocess.Popen(
            [*NODE, "listen", "--json", "--runtime-dir", str(node.runtime_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        listener = cls(proc)
        threading.Thread(target=listener._read, daemon=True).start()
        # Listening once the node counts the stream (a message sent now reaches it).
        wait_for(lambda: _streams(node) >= 1, "the listen stream is open")
        return listener

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def next(self, seconds: float = 30.0) -> dict[str, Any]:
        return self.lines.get(timeout=seconds)

    def messages_until(self, last: bytes) -> list[dict[str, Any]]:
        """Every message line up to (without) the one whose data is ``last``."""
        import base64

        out = []
        while True:
            item = self.next()
            if item["type"] != "message":
                continue
            if base64.b64decode(item["data_b64"]) == last:
                return out
            out.append(item)

    def stop(self) -> int:
        """SIGTERM, as an operator would; the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return code


def _streams(node: RunningNode) -> int:
    done = cli("status", "--json", "--runtime-dir", str(node.runtime_dir))
    assert done.returncode == 0, done.stderr
    streams: int = json.loads(done.stdout)["control"]["streams"]
    return streams
