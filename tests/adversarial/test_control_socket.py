"""The control socket of a running node: whatever a local client sends, or however many connect,
the node answers with a typed error or not at all, stays bounded, keeps answering the operator's
``status`` and stops quietly. Also the CLI's side: a reader that goes away ends it quietly."""

from __future__ import annotations

import json
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from node.paths import CONTROL_SOCKET_NAME
from node.services.control import CLIENT_TIMEOUT_S, MAX_CLIENTS, MAX_REQUEST_BYTES
from tests.adversarial.probes import NodeUnderAttack, open_fds
from tests.support.nodeproc import NODE, cli_into_closed_pipe, control_exchange

pytestmark = pytest.mark.process

FLOOD = 2000
FD_MARGIN = 8  # descriptors the node may open meanwhile for other work (a health ping, a log file)


def _path(attacked: NodeUnderAttack) -> Path:
    return attacked.node.runtime_dir / CONTROL_SOCKET_NAME


def _exchange(path: Path, payload: bytes, half_close: bool = True) -> dict[str, object]:
    reply = json.loads(control_exchange(path, payload, half_close, timeout=CLIENT_TIMEOUT_S * 3))
    assert isinstance(reply, dict)
    return reply


def _code(reply: dict[str, object]) -> object:
    error = reply["error"]
    assert isinstance(error, dict)
    assert error["message"]
    return error["code"]


def _connect(s: socket.socket, path: Path) -> None:
    """Connect, waiting (bounded) while the listen backlog is full: a unix socket says EAGAIN then."""
    for _ in range(1000):
        try:
            s.connect(str(path))
            return
        except BlockingIOError:
            time.sleep(0.01)
    raise AssertionError(f"the node never accepted a control client on {path}")


@contextmanager
def _idle_clients(path: Path, n: int, pid: int | None = None) -> Iterator[list[int]]:
    """``n`` clients that connect and say nothing; yields the node's open descriptors, sampled
    after every connect when ``pid`` is given."""
    clients: list[socket.socket] = []
    fds: list[int] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            clients.append(s)
            _connect(s, path)
            if pid is not None:
                fds.append(open_fds(pid))
        yield fds
    finally:
        for s in clients:
            s.close()


def _quiet(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert "level=error" not in stderr
    assert "Unhandled" not in stderr


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"[" * 60000 + b"\n", "bad_request"),
        (b"\x00\xff\x13\x37" * 1000 + b"\n", "bad_request"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "bad_request"),
        (b'{"command": "shutdown"}\n', "unknown_command"),
        (b"{" * (MAX_REQUEST_BYTES + 1), "request_too_large"),
    ],
    ids=["nested-brackets", "binary", "http", "unknown", "oversize"],
)
def test_a_bad_line_gets_a_typed_error_and_is_counted(
    attacked: NodeUnderAttack, payload: bytes, code: str
) -> None:
    assert _code(_exchange(_path(attacked), payload)) == code
    attacked.assert_alive()
    control = attacked.status()["control"]
    assert control["errors"] == {code: 1}
    assert control["faults"] == {}
    _quiet(attacked.node.stderr_path.read_text())


def test_half_a_line_then_silence_is_timed_out(attacked: NodeUnderAttack) -> None:
    assert _code(_exchange(_path(attacked), b'{"command": "sta', half_close=False)) == "timeout"
    assert attacked.status()["control"]["errors"] == {"timeout": 1}


def test_a_flood_of_idle_clients_holds_few_descriptors_and_status_still_answers(
    attacked: NodeUnderAttack,
) -> None:
    path = _path(attacked)
    before = open_fds(attacked.pid)
    with _idle_clients(path, FLOOD, attacked.pid) as fds:
        # Without a cap the node held one descriptor per client (2,000).
        assert max(fds) <= before + MAX_CLIENTS + FD_MARGIN
        # The operator, while they are all connected: told too_many_clients at first, the CLI
        # asks again until the idle clients' CLIENT_TIMEOUT_S frees a slot.
        during = attacked.status()["control"]
        assert during["refused"] >= FLOOD - MAX_CLIENTS
    after = attacked.status()["control"]
    assert after["faults"] == {}
    assert after["max_clients"] == MAX_CLIENTS
    attacked.assert_alive()
    assert attacked.legitimate_ping()["peer_id"] == attacked.node.peer_id
    _quiet(attacked.node.stderr_path.read_text())


def test_sigterm_with_clients_connected_stops_quietly(attacked: NodeUnderAttack) -> None:
    path = _path(attacked)
    with _idle_clients(path, MAX_CLIENTS - 2), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as half:
        half.connect(str(path))
        half.sendall(b'{"command"')
        # All of them held by the node (the status request is the last one of the cap).
        assert attacked.status()["control"]["clients"] == MAX_CLIENTS
        attacked.node.proc.send_signal(signal.SIGTERM)
        assert attacked.node.proc.wait(timeout=20) == 0
    _quiet(attacked.node.stderr_path.read_text())


def test_status_into_a_pipe_nobody_reads_ends_quietly(attacked: NodeUnderAttack) -> None:
    runtime = str(attacked.node.runtime_dir)
    shell = subprocess.run(
        f"{shlex.join(NODE)} status --json --runtime-dir {shlex.quote(runtime)} | true",
        shell=True,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert shell.returncode == 0
    assert shell.stderr == ""
    # The same without the race with `true`: the read end is gone before the CLI writes.
    # Exit 141 = 128 + SIGPIPE: what a shell reports for `yes | true`.
    for buffered in (False, True):
        done = cli_into_closed_pipe("status", "--json", "--runtime-dir", runtime, buffered=buffered)
        assert (done.returncode, done.stderr) == (141, "")
