"""Hole-punching checks from a stranger: the node's UDP port flooded with datagrams that carry the
punch magic (random tokens, cut short, oversized). No punch of the node waits for them, so each is
dropped and counted under ``udp.punch_unknown`` (and under ``stun.not_stun``, as every datagram on
the port is), never answered (a check answered to a forged source would make the node a
reflector), and the node keeps serving."""

from __future__ import annotations

import random
import socket
import time
from typing import Any

import pytest

from node.proto.punch import wire
from tests.adversarial.probes import NodeUnderAttack, open_fds, rss_kib, udp_drops

pytestmark = pytest.mark.process

FLOOD = 20_000
WINDOW = 200  # sent before a short pause: a paced flood, mostly inside the receive buffer


def _datagram(rng: random.Random, i: int) -> bytes:
    shape = i % 4
    if shape == 0:  # a well-formed request with a random token
        check = wire.Check(wire.Kind.REQUEST, wire.Side.A, rng.randbytes(16), rng.getrandbits(64), b"x" * 52)
        return wire.encode(check)
    if shape == 1:  # cut anywhere inside the header
        return wire.MAGIC + rng.randbytes(rng.randrange(0, 26))
    if shape == 2:  # far beyond the largest check
        return wire.MAGIC + rng.randbytes(rng.randrange(1000, 9000))
    return wire.MAGIC + bytes([rng.randrange(256), rng.randrange(256)]) + rng.randbytes(100)


def _settled(attacked: NodeUnderAttack, port: int, sent: int) -> dict[str, Any]:
    """Status once every datagram is counted by the node or dropped by its kernel."""
    deadline = time.monotonic() + 60
    while True:
        status = attacked.status()
        counted = status["udp"]["punch_unknown"] + udp_drops(attacked.pid, port)
        if counted >= sent:
            assert counted == sent
            return status
        assert time.monotonic() < deadline, f"{counted} of {sent} counted"
        time.sleep(0.2)


def test_a_flood_of_punch_checks_is_counted_never_answered(attacked: NodeUnderAttack) -> None:
    port = attacked.node.udp_port
    assert port is not None
    fds, rss = open_fds(attacked.pid), rss_kib(attacked.pid)
    rng = random.Random(5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
        attacker.bind(("127.0.0.1", 0))
        for i in range(FLOOD):
            attacker.sendto(_datagram(rng, i), ("127.0.0.1", port))
            if i % WINDOW == WINDOW - 1:
                time.sleep(0.002)
        status = _settled(attacked, port, FLOOD)
        attacker.setblocking(False)
        with pytest.raises(BlockingIOError):
            attacker.recv(65535)  # not one answer
    assert status["udp"]["punch_unknown"] > FLOOD // 2
    assert status["stun"]["not_stun"] == status["udp"]["punch_unknown"]
    assert status["stun"]["answered"] == 0 and status["udp"]["malformed"] == 0
    assert status["udp"]["faults"] == {}
    attacked.assert_alive()
    attacked.legitimate_ping()
    assert open_fds(attacked.pid) <= fds + 4
    print(f"rss {rss} -> {rss_kib(attacked.pid)} KiB, {status['udp']['punch_unknown']} counted of {FLOOD}")
