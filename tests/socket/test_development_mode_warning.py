"""Development-mode trust is announced on every transport that admits peers, not only TCP-TLS:
one warning per transport at start (TCP-TLS, UDP, TURN), and each one's ``status`` shows it."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.proto.identity import Identity
from tests.support.nodeproc import RunningNode, cli, start_node

WARNING = "trust: development mode, INSECURE: any peer id is accepted"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _turn_config(extra: str = "") -> str:
    # A TURN server nobody answers on: the TURN service is built (and warns) and keeps retrying.
    return (
        f'[turn]\nservers = ["turn:127.0.0.1:{_free_udp_port()}"]\nusername = "u"\npassword = "p"\n'
        "[breaker]\nrecovery_timeout_s = 0.1\n" + extra
    )


def _status(node: RunningNode) -> dict[str, Any]:
    result = cli("status", "--json", "--runtime-dir", str(node.runtime_dir))
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def _warned_transports(node: RunningNode) -> list[str]:
    # A log line: level=warning logger=... msg='UDP trust: development mode, ...'
    lines = node.stderr_path.read_text().splitlines()
    return sorted(line.split("msg='")[1].split()[0] for line in lines if WARNING in line)


def _wait_for_turn_attempts(node: RunningNode, attempts: int) -> None:
    deadline = time.monotonic() + 30.0
    while _status(node)["turn"]["failed_attempts"] < attempts:
        assert time.monotonic() < deadline, "the TURN keeper never retried"
        time.sleep(0.1)


def test_development_mode_warns_once_per_transport_and_shows_in_status(tmp_path: Path) -> None:
    node = start_node(tmp_path, extra_config=_turn_config())
    try:
        status = _status(node)
        for transport in ("tcp_tls", "udp", "turn"):
            assert "development" in status[transport]["trust"], transport
            assert "INSECURE" in status[transport]["trust"], transport
        # The TURN keeper builds its transport again after each failed attempt: still one warning.
        _wait_for_turn_attempts(node, 3)
        assert _warned_transports(node) == ["TCP-TLS", "TURN", "UDP"]
    finally:
        node.kill()


def test_pinned_trust_does_not_warn(tmp_path: Path) -> None:
    pinned = Identity.from_private_key(Ed25519PrivateKey.generate()).peer_id
    node = start_node(tmp_path, extra_config=_turn_config(f'[trust]\npinned_peer_ids = ["{pinned}"]\n'))
    try:
        status = _status(node)
        for transport in ("tcp_tls", "udp", "turn"):
            assert status[transport]["trust"] == "pinned, 1 pinned", transport
        _wait_for_turn_attempts(node, 1)
        assert _warned_transports(node) == []
    finally:
        node.kill()
