"""The /metrics port attacked on a running node: garbage, a huge head, other methods and paths,
silence and a flood of idle connections get a typed HTTP answer or a close, are counted in status,
and never stop the node or its metrics."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.services.metrics import MAX_CLIENTS, MAX_HEAD_BYTES, REQUEST_TIMEOUT_S
from tests.adversarial.probes import NodeUnderAttack, open_fds
from tests.support.nodeproc import cli, start_node

pytestmark = pytest.mark.process


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[tuple[NodeUnderAttack, tuple[str, int]]]:
    node = start_node(tmp_path, extra_config='[metrics]\nlisten = "127.0.0.1:0"\n')
    try:
        attacked = NodeUnderAttack(node, tmp_path)
        host, port = attacked.status()["metrics"]["listen"].rsplit(":", 1)
        yield attacked, (host, int(port))
    finally:
        node.kill()


def _exchange(address: tuple[str, int], payload: bytes, timeout: float = 15.0) -> bytes:
    with socket.create_connection(address, timeout=timeout) as s:
        if payload:
            # The node may answer and close before taking all of it.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                s.sendall(payload)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


def _status_line(reply: bytes) -> str:
    return reply.split(b"\r\n", 1)[0].decode()


def _metrics(attacked: NodeUnderAttack) -> dict[str, Any]:
    doc: dict[str, Any] = attacked.status()["metrics"]
    return doc


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100 + b"\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
        ),
        (b"GET /metrics\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (b"GET /../../etc/passwd HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", "HTTP/1.1 405 Method Not Allowed"),
        (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n", "HTTP/1.1 431"),
        (b"GET /metrics HTTP/1.1\r\n" + b"X-Flood: y\r\n" * 200_000, "HTTP/1.1 431"),
    ],
    ids=["tls-hello", "http-0.9", "root", "traversal", "post", "huge-header", "endless-headers"],
)
def test_garbage_gets_a_typed_answer_and_is_counted(
    scraped: tuple[NodeUnderAttack, tuple[str, int]], payload: bytes, status: str
) -> None:
    attacked, address = scraped
    reply = _exchange(address, payload)
    assert _status_line(reply).startswith(status)
    assert b"Connection: close" in reply
    code = status.split()[1]
    metrics = _metrics(attacked)
    assert metrics["responses"] == {code: 1} and metrics["faults"] == {}
    ok = _exchange(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _status_line(ok) == "HTTP/1.1 200 OK" and b"bitcraps_failovers_total" in ok
    attacked.assert_alive()


def test_silence_is_timed_out(scraped: tuple[NodeUnderAttack, tuple[str, int]]) -> None:
    attacked, address = scraped
    reply = _exchange(address, b"GET /metr", timeout=REQUEST_TIMEOUT_S + 10)
    assert _status_line(reply) == "HTTP/1.1 408 Request Timeout"
    assert _metrics(attacked)["responses"] == {"408": 1}


def test_idle_connections_are_capped_and_scrapes_go_on_afterwards(
    scraped: tuple[NodeUnderAttack, tuple[str, int]],
) -> None:
    attacked, address = scraped
    before = open_fds(attacked.pid)
    idle = [socket.create_connection(address, timeout=10) for _ in range(200)]
    try:
        time.sleep(0.5)  # a window for the node to accept them (not a timing assertion)
        assert open_fds(attacked.pid) <= before + MAX_CLIENTS + 8
        assert attacked.status()["metrics"]["faults"] == {}  # status answers meanwhile
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 30
    while _status_line(_exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n")) != "HTTP/1.1 200 OK":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    attacked.assert_alive()


def test_status_json_shows_metrics(scraped: tuple[NodeUnderAttack, tuple[str, int]]) -> None:
    attacked, address = scraped
    done = cli("status", "--json", "--runtime-dir", str(attacked.node.runtime_dir))
    assert json.loads(done.stdout)["metrics"]["listen"] == f"{address[0]}:{address[1]}"
