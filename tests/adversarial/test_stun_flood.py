"""UDP/STUN: a stranger floods the node's UDP port with garbage, other protocols' datagrams,
broken STUN and valid requests. The node stays up and bounded, keeps serving, counts every
datagram in ``status`` by what became of it, and never answers with more than 3x what it got
(a reflector: the source address of a datagram is not proven)."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from node.proto import stun
from tests.adversarial.probes import NodeUnderAttack, rss_kib, udp_drops
from tests.support.nodeproc import start_node

pytestmark = pytest.mark.process

FLOOD = 50_000  # datagrams at the least; more while `status` is being asked during the flood
CAP = 500_000
WINDOW = 64  # paced flood: datagrams in flight (well inside the node's default receive buffer)
LONGEST_SOFTWARE = "s" * 127  # RFC 8489 §14.14: fewer than 128 characters; 8.6x a 20-byte Binding
COOKIE = b"\x21\x12\xa4\x42"


@pytest.fixture
def attacked(tmp_path: Path) -> Iterator[NodeUnderAttack]:
    """The node with the longest SOFTWARE its config allows (the line lands in its [node] table)."""
    node = start_node(tmp_path, extra_config=f'software = "{LONGEST_SOFTWARE}"\n')
    try:
        yield NodeUnderAttack(node, tmp_path)
    finally:
        node.kill()


def _header(mtype: int, length: int, tid: bytes) -> bytes:
    return struct.pack("!HH", mtype, length) + COOKIE + tid


def _attrs(*attributes: tuple[int, bytes]) -> bytes:
    return b"".join(struct.pack("!HH", t, len(v)) + v + bytes(-len(v) % 4) for t, v in attributes)


def _message(mtype: int, tid: bytes, body: bytes = b"") -> bytes:
    return _header(mtype, len(body), tid) + body


def _bad_fingerprint(tid: bytes) -> bytes:
    good = bytearray(
        stun.encode(stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, tid, (stun.Software("x"),)))
    )
    good[-1] ^= 0xFF
    return bytes(good)


# Each kind: what the node must count it as, and how to make one (from a seeded generator and a
# transaction id).
KINDS: dict[str, tuple[str, Callable[[random.Random, bytes], bytes]]] = {
    "garbage": ("not_stun", lambda r, _t: bytes([r.randrange(0x40, 0x100)]) + r.randbytes(r.randrange(120))),
    "session-like": ("not_stun", lambda r, _t: b"\x01\x00\x00\x00" + r.randbytes(r.randrange(16, 96))),
    "short-stun": ("not_stun", lambda r, t: _header(0x0001, 0, t)[: r.randrange(20)]),
    "length-past-end": ("malformed", lambda _r, t: _header(0x0001, 8, t)),
    "length-not-aligned": ("malformed", lambda _r, t: _header(0x0001, 3, t) + b"abc"),
    "attribute-past-end": ("malformed", lambda _r, t: _header(0x0001, 4, t) + struct.pack("!HH", 0x7F01, 40)),
    "bad-fingerprint": ("malformed", lambda _r, t: _bad_fingerprint(t)),
    "bad-xor-address": ("malformed", lambda _r, t: _message(0x0101, t, _attrs((0x0020, b"\x00\x07\x00")))),
    "binding-indication": ("ignored", lambda _r, t: _message(0x0011, t)),
    "binding-success": ("ignored", lambda _r, t: _message(0x0101, t)),
    "minimal-binding": ("answered", lambda _r, t: _message(0x0001, t)),
    "binding-with-fingerprint": (
        "answered",
        lambda _r, t: stun.encode(stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, t)),
    ),
    "one-unknown": ("rejected", lambda _r, t: _message(0x0001, t, _attrs((0x7F01, b"")))),
    "repeated-unknowns": (
        "rejected",
        lambda r, t: _message(
            0x0001, t, _attrs(*((r.choice((0x7F01, 0x7F02, 0x0030)), b"") for _ in range(60)))
        ),
    ),
    "allocate": ("rejected", lambda _r, t: _message(0x0003, t)),
}


class _Attacker:
    """One socket: sends datagrams, reads every answer it can, and checks each against its request."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.rng = random.Random(11)
        self.requests: dict[bytes, tuple[int, int]] = {}  # tid -> (request size, datagram number)
        self.sent: Counter[str] = Counter()
        self.total = 0
        self.answers = 0
        self.done = 0  # the node has handled every datagram up to this number (it answers in order)
        self.oversized: list[tuple[int, int]] = []  # (request size, answer size) above 3x

    def send_next(self) -> None:
        kind = KINDS_IN_TURN[self.total % len(KINDS_IN_TURN)]
        expected, make = KINDS[kind]
        tid = self.rng.randbytes(12)
        data = make(self.rng, tid)
        self.total += 1
        if expected in ("answered", "rejected"):
            self.requests[tid] = (len(data), self.total)
        self.sock.sendto(data, ("127.0.0.1", self.port))
        self.sent[expected] += 1

    def receive(self, timeout: float | None) -> bool:
        """Read one answer (None: only if one is there already); False when none came."""
        self.sock.settimeout(timeout)
        try:
            answer = self.sock.recv(65535)
        except (BlockingIOError, TimeoutError):
            return False
        size, number = self.requests[answer[8:20]]  # an answer to a request never sent fails here
        self.answers += 1
        self.done = max(self.done, number)
        if len(answer) > 3 * size:
            self.oversized.append((size, len(answer)))
        return True

    def drain(self) -> None:
        while self.receive(0):
            pass


KINDS_IN_TURN = list(KINDS)


def _counted(status: dict[str, Any]) -> int:
    return sum(status["stun"].values()) + sum(status["udp"]["faults"].values())


def _settled(attacked: NodeUnderAttack, attacker: _Attacker) -> tuple[dict[str, Any], int]:
    """Status once every datagram sent is either counted by the node or dropped by the kernel."""
    deadline = time.monotonic() + 120
    while True:
        status, drops = attacked.status(), udp_drops(attacked.pid, attacker.port)
        if _counted(status) + drops >= attacker.total:
            assert _counted(status) + drops == attacker.total
            return status, drops
        assert time.monotonic() < deadline, f"{_counted(status)} counted, {drops} dropped of {attacker.total}"
        attacker.drain()
        time.sleep(0.2)


def _fresh_status(attacked: NodeUnderAttack) -> None:
    status = attacked.status()
    assert status["stun"] == {"answered": 0, "rejected": 0, "not_stun": 0, "malformed": 0, "ignored": 0}
    assert status["udp"] == {
        "trust": status["tcp_tls"]["trust"],  # one trust policy for every transport
        "sessions": 0,
        "handshakes": 0,
        "cookies_sent": 0,
        "malformed": 0,
        "reassembly_drops": 0,
        "punch_unknown": 0,
        "faults": {},
    }


def test_open_flood_is_accounted_bounded_and_never_amplified(attacked: NodeUnderAttack) -> None:
    """As fast as one socket sends: the kernel drops what the node cannot take, and says so."""
    _fresh_status(attacked)
    rss_before = rss_kib(attacked.pid)
    attacker = _Attacker(attacked.node.udp_port)
    during: list[dict[str, Any]] = []
    asker = threading.Thread(target=lambda: during.append(attacked.status()))
    asker.start()
    try:
        while (attacker.total < FLOOD or asker.is_alive()) and attacker.total < CAP:
            attacker.send_next()
            if attacker.total % 256 == 0:
                attacker.drain()
    finally:
        asker.join(timeout=60)
    assert during and during[0]["peer_id"] == attacked.node.peer_id  # status answered mid-flood

    after, drops = _settled(attacked, attacker)
    assert after["udp"]["faults"] == {}
    for outcome, sent in attacker.sent.items():
        assert 0 < after["stun"][outcome] <= sent, outcome
    while attacker.answers < after["stun"]["answered"] + after["stun"]["rejected"]:
        if not attacker.receive(1):
            break  # the attacker's own buffer overflowed: those answers are lost, not oversized
    attacker.sock.close()
    assert attacker.answers > 0
    assert attacker.oversized == []

    attacked.assert_alive()
    growth = rss_kib(attacked.pid) - rss_before
    assert growth < 16 * 1024, f"RSS grew {growth} KiB over a flood of {attacker.total} datagrams"
    assert attacked.legitimate_ping()["peer_id"] == attacked.node.peer_id
    _legitimate_binding(attacked.node.udp_port)
    print(
        f"open flood: {attacker.total} sent, {drops} dropped by the kernel, {attacker.answers} answers, "
        f"RSS +{growth} KiB"
    )


def test_every_datagram_is_counted_by_its_outcome(attacked: NodeUnderAttack) -> None:
    """A flood paced by the node's own answers (at most WINDOW datagrams in flight, so its receive
    buffer never overflows): status counts each outcome exactly as sent."""
    _fresh_status(attacked)
    attacker = _Attacker(attacked.node.udp_port)
    while attacker.total < FLOOD:
        while attacker.total - attacker.done >= WINDOW:
            assert attacker.receive(30), f"no answer after datagram {attacker.done} of {attacker.total}"
        attacker.send_next()
    after, drops = _settled(attacked, attacker)
    attacker.sock.close()
    assert drops == 0
    assert after["stun"] == dict(attacker.sent)
    assert after["udp"]["faults"] == {}
    assert attacker.oversized == []
    attacked.assert_alive()
    _legitimate_binding(attacked.node.udp_port)


def _legitimate_binding(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.settimeout(5)
        peer.bind(("127.0.0.1", 0))
        request = stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, stun.new_transaction_id())
        peer.sendto(stun.encode(request), ("127.0.0.1", port))
        answer = stun.decode(peer.recv(2048))
        own_port = peer.getsockname()[1]
    mapped = answer.find(stun.XorMappedAddress)
    assert answer.transaction_id == request.transaction_id
    assert mapped is not None and mapped.port == own_port
