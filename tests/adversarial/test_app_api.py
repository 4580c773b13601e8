"""The application API's control commands attacked on a running node: sends that cannot succeed
(an unknown peer, a message over the limit, a peer that never acknowledges) fail with their typed
reason; garbage and huge requests to connect/send/listen/peers are typed errors that leave the
small request cap of every other command intact; a listen client that never reads loses its
stream, not the node's memory or its inbox."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from node.paths import CONTROL_SOCKET_NAME
from node.security import keystore
from node.services.control import MAX_REQUEST_BYTES
from node.services.daemon import SEND_REQUEST_BYTES
from node.services.udp import UdpService
from tests.adversarial.probes import NodeUnderAttack, rss_kib
from tests.socket.coordinator_nodes import BASE
from tests.support.app_cli import Listener, app, connect, wait_for
from tests.support.nodeproc import RunningNode, control_exchange, start_node

pytestmark = pytest.mark.process

UNKNOWN_PEER = "a" * 52  # well formed, and no node has it


def _path(node: RunningNode) -> Path:
    return node.runtime_dir / CONTROL_SOCKET_NAME


def _error(node: RunningNode, line: bytes) -> dict[str, Any]:
    reply = json.loads(control_exchange(_path(node), line))
    error: dict[str, Any] = reply["error"]
    return error


def test_send_to_an_unknown_peer_fails_with_unknown_peer(attacked: NodeUnderAttack) -> None:
    done = app(attacked.node, "send", UNKNOWN_PEER, "hello")
    assert done.returncode == 1 and b"(unknown_peer)" in done.stderr
    assert done.stdout == b""
    line = json.dumps({"command": "send", "args": {"peer_id": UNKNOWN_PEER, "count": 3}}).encode()
    error = _error(attacked.node, line + b"\n")
    assert error["code"] == "command_failed" and error["reason"] == "unknown_peer"
    attacked.assert_alive()
    assert attacked.status()["coordinator"]["peers"] == []  # nothing kept for a peer that is not there


def test_a_message_over_the_limit_is_too_large(attacked: NodeUnderAttack) -> None:
    node = attacked.node
    for args, data in (
        (("-",), b"x" * ((1 << 20) + 1)),  # fits the request line, not the node's limit
        (("-",), b"x" * (3 << 20)),  # does not even fit send's request line
        (("--count", "2", "--size", str(2 << 20)), None),  # refused before it is made
    ):
        done = app(node, "send", UNKNOWN_PEER, *args, input_bytes=data)
        assert done.returncode == 1, done.stderr
        assert b"(too_large)" in done.stderr
    attacked.assert_alive()
    assert attacked.status()["control"]["errors"] == {"command_failed": 2, "request_too_large": 1}


@pytest.mark.parametrize(
    ("command", "args", "words"),
    [
        ("send", {"peer_id": "nope", "count": 1}, "'peer_id' must be a peer id"),
        ("send", {"peer_id": UNKNOWN_PEER, "messages_b64": ["***"]}, "'messages_b64[0]' is not base64"),
        ("send", {"peer_id": UNKNOWN_PEER, "messages_b64": ["eA=="], "count": 1}, "not both"),
        ("send", {"peer_id": UNKNOWN_PEER}, "'messages_b64' or 'count' must be given"),
        ("send", {"peer_id": UNKNOWN_PEER, "count": 0}, "'count' must be between"),
        ("send", {"peer_id": UNKNOWN_PEER, "count": 1, "size": -1}, "'size' must be between"),
        ("send", {"peer_id": UNKNOWN_PEER, "count": 1, "priority": "urgent"}, "'priority' must be one of"),
        (
            "send",
            {"peer_id": UNKNOWN_PEER, "count": 1, "reliable": "yes"},
            "'reliable' must be true or false",
        ),
        ("send", {"peer_id": UNKNOWN_PEER, "messages_b64": ["eA=="] * 2000}, "at most 1024"),
        ("connect", {"peer_id": UNKNOWN_PEER, "uris": ["http://x:1"]}, "'uris[0]' is not a peer address"),
        ("connect", {"peer_id": UNKNOWN_PEER, "timeout_s": -1}, "'timeout_s' must be above 0"),
        ("connect", {"peer_id": UNKNOWN_PEER, "uris": "udp://127.0.0.1:1"}, "'uris' must be a list"),
        ("listen", {"follow": True}, "is not known"),
        ("peers", [], "'args' must be a JSON object"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 12 else None,
)
def test_garbage_arguments_are_bad_requests(
    attacked: NodeUnderAttack, command: str, args: object, words: str
) -> None:
    line = json.dumps({"command": command, "args": args}).encode() + b"\n"
    error = _error(attacked.node, line)
    assert error["code"] == "bad_request" and words in error["message"], error
    assert "reason" not in error
    attacked.assert_alive()
    assert attacked.status()["control"]["errors"] == {"bad_request": 1}


def test_huge_requests_are_refused_and_only_send_may_be_long(attacked: NodeUnderAttack) -> None:
    node = attacked.node
    before = rss_kib(attacked.pid)
    filler = "A" * (MAX_REQUEST_BYTES + 1024)
    cases = [
        # Over send's own cap.
        (
            b'{"command": "send", "args": {"messages_b64": ["' + b"A" * SEND_REQUEST_BYTES + b'"]}}\n',
            "request_too_large",
        ),
        # Other commands keep the small cap, named first or not.
        (json.dumps({"command": "peers", "args": {"x": filler}}).encode() + b"\n", "request_too_large"),
        (json.dumps({"command": "listen", "args": {"x": filler}}).encode() + b"\n", "request_too_large"),
        (
            json.dumps({"command": "connect", "args": {"uris": [filler]}}).encode() + b"\n",
            "request_too_large",
        ),
        # send's long line only when it says so first.
        (
            json.dumps({"args": {"messages_b64": [filler]}, "command": "send"}).encode() + b"\n",
            "request_too_large",
        ),
        # Long, named first, and not JSON after all.
        (b'{"command": "send", "args": ' + b"[" * (1 << 20) + b"\n", "bad_request"),
    ]
    for line, code in cases:
        assert _error(node, line)["code"] == code
    attacked.assert_alive()
    assert attacked.status()["control"]["errors"] == {"request_too_large": 5, "bad_request": 1}
    assert rss_kib(attacked.pid) < before + 64 * 1024  # a few request buffers, freed


def test_a_listen_client_that_never_reads_loses_its_stream(attacked: NodeUnderAttack, tmp_path: Path) -> None:
    node = attacked.node
    (tmp_path / "peer").mkdir()
    peer = start_node(tmp_path / "peer")
    try:
        connect(peer, node, "udp")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(_path(node)))
        try:
            s.sendall(b'{"command": "listen"}\n')  # and never read
            wait_for(lambda: attacked.status()["control"]["streams"] == 1, "the listen stream is open")
            # ~1.2 MB: far more than the socket's buffer, well within the inbox (16 MiB).
            done = app(peer, "send", node.peer_id, "--count", "40", "--size", "30000")
            assert done.returncode == 0, done.stderr
            wait_for(lambda: attacked.status()["control"]["streams_slow"] == 1, "the stream is closed", 60)
            assert attacked.status()["control"]["streams"] == 0
        finally:
            s.close()
        attacked.assert_alive()
        # The node is unharmed: the next listener gets what is still in the inbox.
        listener = Listener.start(node)
        try:
            assert listener.next()["type"] in ("message", "peer")
            assert listener.stop() == 0
        finally:
            listener.proc.kill()
    finally:
        peer.kill()


async def test_a_peer_that_never_acknowledges_fails_the_send(tmp_path: Path) -> None:
    quick = "[transport]\nretries = 2\nretry_backoff_s = 0.1\nfailover_timeout_s = 1.0\n"
    (tmp_path / "node").mkdir()
    node = start_node(tmp_path / "node", extra_config=quick)
    try:
        identity, _ = keystore.load_or_create(tmp_path / "mute")
        # A real UDP transport whose sessions answer handshakes; nothing reads what arrives.
        async with UdpService(BASE, identity) as mute:
            uri = f"udp://{mute.local}"
            done = await asyncio.to_thread(app, node, "connect", identity.peer_id, uri, "--timeout", "30")
            assert done.returncode == 0, done.stderr
            done = await asyncio.to_thread(app, node, "send", identity.peer_id, "hello?")
            assert done.returncode == 1 and b"(delivery_failed)" in done.stderr, done.stderr
        status = await asyncio.to_thread(
            lambda: json.loads(app(node, "status", "--json").stdout)["coordinator"]["messages"]
        )
        assert status["failed"] == 1 and status["resent"] >= 2
        assert node.proc.poll() is None
    finally:
        node.kill()
