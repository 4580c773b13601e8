"""The application API through the CLI between two node processes on loopback: connect by peer id
over udp:// and tls://, send generated messages and a largest message, listen receives each
exactly once, peers shows both paths."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.proto.delivery.wire import DATA_HEADER
from tests.support.app_cli import Listener, app, app_json, connect, peers, wait_for
from tests.support.nodeproc import RunningNode, start_node

pytestmark = pytest.mark.process

# The largest message under the default transport.max_message_bytes (1 MiB) less the delivery header.
LARGEST = (1 << 20) - DATA_HEADER
END = b"end of the run"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RunningNode, RunningNode]]:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    a = start_node(tmp_path / "a")
    try:
        b = start_node(tmp_path / "b")
        try:
            yield a, b
        finally:
            b.kill()
    finally:
        a.kill()


def test_connect_by_peer_id_over_udp_and_tls_and_peers_shows_both(
    pair: tuple[RunningNode, RunningNode],
) -> None:
    a, b = pair
    over_udp = connect(a, b, "udp")
    assert over_udp["peer_id"] == b.peer_id
    assert over_udp["path"] == {"kind": "udp", "endpoint": f"127.0.0.1:{b.udp_port}"}
    assert over_udp["path"] in over_udp["paths"] and over_udp["elapsed_ms"] >= 0
    # Dialled at an address given: a direct path, found as a host address; no punch ran.
    assert (over_udp["direct"], over_udp["method"], over_udp["time_to_direct_ms"]) == (True, "host", None)
    assert over_udp["time_to_first_ms"] is not None and over_udp["time_to_first_ms"] >= 0
    # Answers once a path works (udp's already does); the tls path comes up behind it.
    assert connect(a, b, "tls")["peer_id"] == b.peer_id

    def both() -> list[dict[str, object]] | None:
        rows = [row for row in peers(a) if row["peer_id"] == b.peer_id]
        return rows if rows and len(rows[0]["paths"]) == 2 else None

    (row,) = wait_for(both, "a sees both paths to b")
    assert {(p["kind"], p["endpoint"]) for p in row["paths"]} == {
        ("udp", f"127.0.0.1:{b.udp_port}"),
        ("tcp_tls", f"127.0.0.1:{b.tls_port}"),
    }
    assert row["active"]["kind"] in ("udp", "tcp_tls")
    assert row["traversal"] is None  # never introduced
    for path in row["paths"]:
        assert set(path) == {"kind", "endpoint", "state", "health", "score", "rtt_ms", "loss", "breaker"}
        assert path["breaker"] == "closed" and path["state"] in ("active", "standby")
        assert path["health"] in ("optimal", "good", "degraded", "critical")
    text = app(a, "peers")
    assert text.returncode == 0 and b.peer_id in text.stdout.decode()


def test_generated_messages_are_acknowledged_and_listened_to_exactly_once(
    pair: tuple[RunningNode, RunningNode],
) -> None:
    a, b = pair
    connect(a, b, "udp")
    listener = Listener.start(b)
    try:
        result = app_json(a, "send", b.peer_id, "--count", "200", "--size", "300", "--priority", "high")
        assert result["peer_id"] == b.peer_id
        assert result["sent"] == result["acknowledged"] == 200
        assert sum(result["paths"].values()) == 200 and set(result["paths"]) <= {"udp", "tcp_tls"}
        # The last message, same class: in order, so everything before it has arrived by then.
        assert app(a, "send", b.peer_id, "--priority", "high", END.decode()).returncode == 0
        received = listener.messages_until(END)
        assert listener.stop() == 0
    finally:
        listener.proc.kill()
    payloads = [base64.b64decode(m["data_b64"]) for m in received]
    indices = [int.from_bytes(p[:8], "big") for p in payloads]
    assert sorted(indices) == list(range(200))  # each exactly once
    assert all(len(p) == 300 for p in payloads)
    assert len({m["message_id"] for m in received}) == 200
    assert {(m["peer_id"], m["priority"]) for m in received} == {(a.peer_id, "high")}
    assert {m["path"] for m in received} <= {"udp", "tcp_tls"}


def test_a_largest_message_from_stdin_arrives_intact(pair: tuple[RunningNode, RunningNode]) -> None:
    a, b = pair
    connect(a, b, "tls")
    listener = Listener.start(b)
    try:
        data = os.urandom(LARGEST)
        result = app_json(a, "send", b.peer_id, "-", input_bytes=data)
        assert result["acknowledged"] == 1
        item = listener.next()
        while item["type"] != "message":
            item = listener.next()
        assert base64.b64decode(item["data_b64"]) == data
        assert item["peer_id"] == a.peer_id
        assert listener.stop() == 0
    finally:
        listener.proc.kill()


def test_listen_reports_a_peer_connecting(pair: tuple[RunningNode, RunningNode]) -> None:
    a, b = pair
    listener = Listener.start(b)
    try:
        connect(a, b, "udp")
        item = listener.next()
        assert item == {
            "type": "peer",
            "peer_id": a.peer_id,
            "state": "connected",
            "path": {"kind": "udp", "endpoint": item["path"]["endpoint"]},
        }
        assert listener.stop() == 0
    finally:
        listener.proc.kill()


def test_disconnect_closes_every_path_and_connect_brings_them_back(
    pair: tuple[RunningNode, RunningNode],
) -> None:
    a, b = pair
    connect(a, b, "udp")
    connect(a, b, "tls")
    wait_for(
        lambda: [r for r in peers(a) if r["peer_id"] == b.peer_id and len(r["paths"]) == 2] or None,
        "a sees both paths to b",
    )
    closed = app_json(a, "disconnect", b.peer_id)
    assert closed == {"peer_id": b.peer_id, "closed": ["udp", "tcp_tls"]}
    wait_for(
        lambda: not [r for r in peers(a) if r["peer_id"] == b.peer_id and r["paths"]] or None,
        "b's paths gone from a",
    )
    assert app_json(a, "disconnect", b.peer_id)["closed"] == []  # nothing left to close
    assert connect(a, b, "udp")["path"]["kind"] == "udp"
