"""The control socket's arguments and streams attacked on a running node (``watch_status``, a
stream with arguments): hostile arguments are typed errors, a client that never reads loses its
stream (not the node's memory), clients that vanish mid-stream leave nothing behind, and streams
never take every slot from ``status``."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from node.paths import CONTROL_SOCKET_NAME
from node.services.control import MAX_REQUEST_BYTES, MAX_STREAMS
from tests.adversarial.probes import NodeUnderAttack, rss_kib
from tests.support.nodeproc import control_exchange

pytestmark = pytest.mark.process


def _path(attacked: NodeUnderAttack) -> Path:
    return attacked.node.runtime_dir / CONTROL_SOCKET_NAME


def _stream_client(path: Path, args: dict[str, Any]) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(str(path))
    s.sendall(json.dumps({"command": "watch_status", "args": args}).encode() + b"\n")
    return s


def _wait_for(attacked: NodeUnderAttack, condition: Any, seconds: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        control: dict[str, Any] = attacked.status()["control"]
        if condition(control):
            return control
        assert time.monotonic() < deadline, control
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ('{"interval_s": "fast"}', "'interval_s' must be a number"),
        ('{"interval_s": 0}', "'interval_s' must be between"),
        ('{"interval_s": 1e999}', "'interval_s' must be a finite number"),
        ('{"count": 1.5}', "'count' must be an integer"),
        ('{"' + "k" * 60000 + '": 1}', "is not known"),
        ('{"interval_s": ' + "[" * 500 + "]" * 500 + "}", "'interval_s' must be a number"),
        ("[" * 10 + "]" * 10, "'args' must be a JSON object"),
    ],
    ids=["string", "zero", "infinite", "fraction", "huge-name", "nested", "array"],
)
def test_hostile_arguments_are_bad_requests(attacked: NodeUnderAttack, args: str, words: str) -> None:
    line = b'{"command": "watch_status", "args": ' + args.encode() + b"}\n"
    assert len(line) <= MAX_REQUEST_BYTES
    reply = json.loads(control_exchange(_path(attacked), line))
    assert reply["error"]["code"] == "bad_request" and words in reply["error"]["message"]
    assert len(reply["error"]["message"]) < 400  # the argument is named, not echoed whole
    attacked.assert_alive()
    assert attacked.status()["control"]["errors"] == {"bad_request": 1}


def test_a_stream_is_read_line_by_line_and_ends_after_count(attacked: NodeUnderAttack) -> None:
    out = control_exchange(
        _path(attacked),
        b'{"command": "watch_status", "args": {"interval_s": 0.05, "count": 3}}\n',
        half_close=False,
    )
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 3 and all(line["peer_id"] == attacked.node.peer_id for line in lines)
    assert lines[0]["uptime_s"] < lines[2]["uptime_s"]


def test_a_client_that_never_reads_loses_its_stream(attacked: NodeUnderAttack) -> None:
    before = rss_kib(attacked.pid)
    s = _stream_client(_path(attacked), {"interval_s": 0.02})  # ~3 KiB a line, never read
    try:
        control = _wait_for(attacked, lambda c: c["streams_slow"] == 1, seconds=60)
        assert control["streams"] == 0
    finally:
        s.close()
    attacked.assert_alive()
    assert rss_kib(attacked.pid) < before + 16 * 1024  # a kernel buffer's worth, not a queue


def test_clients_vanishing_mid_stream_leave_nothing_behind(attacked: NodeUnderAttack) -> None:
    path = _path(attacked)
    for _ in range(3):
        clients = [_stream_client(path, {"interval_s": 3600}) for _ in range(MAX_STREAMS)]
        for s in clients:
            assert json.loads(s.makefile("rb").readline())["peer_id"] == attacked.node.peer_id
        # One more stream is refused; status still answers (streams hold half the slots at most).
        extra = control_exchange(path, b'{"command": "watch_status"}\n', half_close=False)
        assert json.loads(extra)["error"]["code"] == "too_many_streams"
        assert _wait_for(attacked, lambda c: c["streams"] == MAX_STREAMS)["faults"] == {}
        for s in clients:
            s.close()  # while the node waits an hour for the next line
        _wait_for(attacked, lambda c: c["streams"] == 0 and c["clients"] == 1)
    attacked.assert_alive()
    assert attacked.status()["control"]["errors"] == {"too_many_streams": 3}
