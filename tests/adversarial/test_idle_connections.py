"""TCP-TLS: one address holding idle connections does not lock anyone else out.

The attack of issue 11: 150 TCP connections that never start TLS (or finish TLS and never send a
PROOF) held all 100 slots for the handshake timeout, so a legitimate ping failed, and refusals past
100 + 32 were silent closes. Now the connections that have not proven an identity have their own
share of the slots, at most 8 from one address, and every refusal is counted by its reason.

The node runs with ``handshake_timeout_s = 60`` here: a longer hold only makes the attack
stronger, and it keeps the attack in place for the whole case on a slow, shared machine (the
pending count is checked after the legitimate ping, so the ping happened while it was held).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from node.proto.link.frames import HEADER, FrameKind
from node.proto.link.stream_link import CloseReason
from node.proto.vocabulary import TransportReason
from node.transports.tcp_tls.link import TlsPeerError
from tests.adversarial.probes import NodeUnderAttack, legitimate_ping_from, open_fds, rss_kib
from tests.adversarial.tls_client import client_context
from tests.support.nodeproc import cli, start_node

pytestmark = pytest.mark.process

ATTACKERS = 150
PER_ADDRESS = 8  # tcp_tls.max_pending_per_address, default
FROM_ADDRESS = "too_many_pending_from_address"


@pytest.fixture
def held(tmp_path: Path) -> Iterator[NodeUnderAttack]:
    node = start_node(tmp_path, extra_config="[tcp_tls]\nport = 0\nhandshake_timeout_s = 60\n")
    try:
        yield NodeUnderAttack(node, tmp_path)
    finally:
        node.kill()


def tcp_status(attacked: NodeUnderAttack) -> dict[str, Any]:
    status = attacked.status()["tcp_tls"]
    assert isinstance(status, dict)
    return status


def wait_for_status(attacked: NodeUnderAttack, condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll ``status`` (30 s at most) until ``condition`` holds of its ``tcp_tls`` part."""
    deadline = time.monotonic() + 30
    while not condition(status := tcp_status(attacked)):
        assert time.monotonic() < deadline, f"status never got there: {status}"
        time.sleep(0.2)
    return status


def closed_by_node(sock: socket.socket) -> bool:
    """The node has closed ``sock`` (without sending anything); False while it holds it open."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def idle_connections(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]


def assert_bounded(attacked: NodeUnderAttack, rss_before: int, fds_before: int) -> None:
    # Held: PER_ADDRESS pending plus PER_ADDRESS refusals waiting for TLS; everything else closed.
    assert open_fds(attacked.pid) <= fds_before + 2 * PER_ADDRESS + 8
    grown_mib = (rss_kib(attacked.pid) - rss_before) / 1024
    assert grown_mib < 32, f"the node grew by {grown_mib:.1f} MiB under the attack"


def served_while_held(attacked: NodeUnderAttack, rss_before: int, fds_before: int) -> dict[str, Any]:
    """A peer from another address gets in while the attack holds; the node is alive, bounded."""
    assert legitimate_ping_from(attacked, "127.0.0.2") > 0
    status = tcp_status(attacked)
    assert status["pending"] == PER_ADDRESS  # still held: the ping came during the attack
    attacked.assert_alive()
    assert_bounded(attacked, rss_before, fds_before)
    return status


def after_the_attack(attacked: NodeUnderAttack) -> None:
    """Once the attacker lets go, its own address is served again."""
    wait_for_status(attacked, lambda s: s["pending"] == 0)
    attacked.assert_alive()
    assert attacked.legitimate_ping()["peer_id"] == attacked.node.peer_id


def warm(attacked: NodeUnderAttack) -> tuple[int, int]:
    """The node has served one peer (so it has run one of everything): (RSS KiB, open fds)."""
    assert legitimate_ping_from(attacked, "127.0.0.2") > 0
    return rss_kib(attacked.pid), open_fds(attacked.pid)


def test_150_idle_tcp_connections_from_one_address_leave_room_for_another(held: NodeUnderAttack) -> None:
    port = held.node.tls_port
    assert port is not None
    rss_before, fds_before = warm(held)
    attack = idle_connections(port, ATTACKERS)
    try:
        wait_for_status(held, lambda s: s["refusals"].get(FROM_ADDRESS) == ATTACKERS - PER_ADDRESS)
        # The address holds its pending share and its share of TLS refusals; the rest were closed
        # at once (a refusal inside TLS waits for a TLS handshake that never comes).
        closed = [sock for sock in attack if closed_by_node(sock)]
        assert len(closed) == ATTACKERS - 2 * PER_ADDRESS
        # A peer from another address gets in while the attack holds.
        assert legitimate_ping_from(held, "127.0.0.2") > 0
        # From the attacker's own address: refused, with a typed reason and a detail.
        with pytest.raises(TlsPeerError) as refused:
            legitimate_ping_from(held, "127.0.0.1")
        assert refused.value.reason in (TransportReason.TOO_MANY_CONNECTIONS, TransportReason.CONNECT_FAILED)
        assert refused.value.detail.rsplit(":", 1)[1].strip()
        # The attacker reconnects everything the node closed: more refusals, nothing more held.
        for sock in closed:
            sock.close()
        attack = [sock for sock in attack if sock not in closed] + idle_connections(port, len(closed))
        wait_for_status(
            held, lambda s: s["refusals"].get(FROM_ADDRESS) == 2 * ATTACKERS - 3 * PER_ADDRESS + 1
        )
        status = served_while_held(held, rss_before, fds_before)
        assert status["refused"] == sum(status["refusals"].values())
        assert set(status["refusals"]) == {FROM_ADDRESS}
    finally:
        for sock in attack:
            sock.close()
    after_the_attack(held)


def first_frame(sock: ssl.SSLSocket) -> tuple[FrameKind, bytes] | None:
    """The first frame the node sends after TLS, or None if it closed first."""
    data = b""
    try:
        while len(data) < HEADER.size or len(data) < HEADER.size + HEADER.unpack_from(data)[0]:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
    except (OSError, ssl.SSLError):
        return None
    length, kind, _, _ = HEADER.unpack_from(data)
    return FrameKind(kind), data[HEADER.size : HEADER.size + length]


def test_150_half_open_tls_connections_from_one_address_leave_room_for_another(
    held: NodeUnderAttack,
) -> None:
    """TLS done, then silence instead of a PROOF."""
    port = held.node.tls_port
    assert port is not None
    rss_before, fds_before = warm(held)
    attack: list[socket.socket] = []
    answers: list[tuple[FrameKind, bytes] | None] = []
    try:
        for _ in range(ATTACKERS):
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            attack.append(raw)
            try:
                tls = client_context().wrap_socket(raw)
            except (OSError, ssl.SSLError):
                answers.append(None)  # closed at once: the refusal budget was in use
                continue
            attack[-1] = tls
            answers.append(first_frame(tls))
        hello = [a for a in answers if a is not None and a[0] is FrameKind.HELLO]
        told = [a for a in answers if a is not None and a[0] is FrameKind.REFUSE]
        assert len(hello) == PER_ADDRESS  # the pending share of this address, silent from here on
        # Every other client that completed TLS was told why, typed; the rest were closed.
        assert told and set(told) == {(FrameKind.REFUSE, bytes([CloseReason.TOO_MANY_PENDING_FROM_ADDRESS]))}
        assert len(hello) + len(told) + answers.count(None) == ATTACKERS
        wait_for_status(held, lambda s: s["refusals"].get(FROM_ADDRESS) == ATTACKERS - PER_ADDRESS)
        served_while_held(held, rss_before, fds_before)
    finally:
        for sock in attack:
            sock.close()
    after_the_attack(held)


def test_the_ping_cli_from_the_attacked_address_says_why_it_failed(held: NodeUnderAttack) -> None:
    """What the operator saw: ``connect_failed: 127.0.0.1:36529:``, an empty reason."""
    port = held.node.tls_port
    assert port is not None
    attack = idle_connections(port, ATTACKERS)
    try:
        wait_for_status(held, lambda s: s["refusals"].get(FROM_ADDRESS) == ATTACKERS - PER_ADDRESS)
        done = cli("ping", f"127.0.0.1:{port}", "--state-dir", str(held.tmp_path / "cli-peer"))
        assert done.returncode == 1
        line = done.stderr.strip().splitlines()[-1]
        assert "connect_failed" in line or "too_many_connections" in line, line
        assert line.rsplit(":", 1)[1].strip(), line
    finally:
        for sock in attack:
            sock.close()
