"""Rendezvous (issue 16): a stranger who proves an identity to an introducer node and then speaks
raw rendezvous frames (type byte 3 in DATA frames) never stops it, never grows it without bound,
never takes part in other peers' introductions, and every frame it does not use is counted in
``status``; members whose introducer misbehaves or dies get a typed failure, never a hang."""

from __future__ import annotations

import ipaddress
import itertools
import os
import signal
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from node.proto.identity import Identity, peer_id_of
from node.proto.link.frames import HEADER, FrameKind, encode
from node.proto.natprobe.types import NatType
from node.proto.punch.candidates import Candidate, CandidateKind
from node.proto.punch.plan import NatProfile
from node.proto.rendezvous import (
    MAX_CANDIDATES,
    TYPE_RENDEZVOUS,
    Accept,
    Accepted,
    Introduce,
    Introduced,
    Message,
    Refusal,
    Refused,
    Register,
    Registered,
    Sync,
    decode,
)
from node.proto.rendezvous import encode as encode_rendezvous
from node.security.keystore import load_or_create
from tests.adversarial.probes import NodeUnderAttack, rss_kib
from tests.adversarial.tls_client import RawTlsClient
from tests.support.app_cli import app, wait_for
from tests.support.nodeproc import NODE, RunningNode
from tests.support.rendezvous_nodes import (
    introducer_entry,
    link_state,
    rendezvous,
    start_introducer,
    start_member,
)

pytestmark = pytest.mark.process

NAT = NatProfile(NatType.UNKNOWN)
HOST = Candidate.of(CandidateKind.HOST, (ipaddress.ip_address("127.0.0.1"), 9))


def _token(n: int) -> bytes:
    return n.to_bytes(16, "big")


@dataclass
class RawMember:
    """A stranger on an introducer link: proves ``identity`` over TLS, then writes rendezvous
    payloads of its choosing in DATA frames and reads the rendezvous messages sent to it."""

    identity: Identity
    client: RawTlsClient
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _buffer: bytes = b""

    @classmethod
    def connect(cls, node: RunningNode, state: Path) -> RawMember:
        identity, _ = load_or_create(state)
        client = RawTlsClient.connect(node.tls_port or 0)
        client.send(client.proof(identity))
        member = cls(identity, client)
        kind, _ = member._frame(10.0)
        assert kind == FrameKind.ACCEPT, kind
        return member

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    def send(self, *payloads: bytes) -> None:
        self.client.send(b"".join(encode(FrameKind.DATA, p, next(self._ids), 2) for p in payloads))

    def say(self, *messages: Message) -> None:
        self.send(*(encode_rendezvous(m) for m in messages))

    def register(self) -> None:
        self.say(Register((HOST,), NAT))
        assert isinstance(self.next(), Registered)

    def next(self, timeout: float = 15.0) -> Message:
        """The next rendezvous message the node sends (other frames skipped)."""
        while True:
            kind, payload = self._frame(timeout)
            if kind == FrameKind.DATA and payload[:1] == bytes((TYPE_RENDEZVOUS,)):
                return decode(payload)

    def drain_messages(self, quiet: float = 2.0) -> list[Message]:
        """Every rendezvous message until the node has sent nothing for ``quiet`` seconds."""
        out: list[Message] = []
        while True:
            try:
                out.append(self.next(quiet))
            except TimeoutError:
                return out

    def _frame(self, timeout: float) -> tuple[int, bytes]:
        self.client.sock.settimeout(timeout)
        while True:
            if len(self._buffer) >= HEADER.size:
                length, kind, _, _ = HEADER.unpack_from(self._buffer)
                if len(self._buffer) >= HEADER.size + length:
                    payload = self._buffer[HEADER.size : HEADER.size + length]
                    self._buffer = self._buffer[HEADER.size + length :]
                    return kind, payload
            chunk = self.client.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the node closed the link")
            self._buffer += chunk

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def introducer(tmp_path: Path) -> Iterator[NodeUnderAttack]:
    node = start_introducer(tmp_path / "introducer")
    try:
        yield NodeUnderAttack(node, tmp_path)
    finally:
        node.kill()


def _served(attacked: NodeUnderAttack) -> dict[str, object]:
    served = attacked.status()["rendezvous"]["introducer"]
    assert isinstance(served, dict)
    return served


def _register_payload(count: int, kind: int = 1, cut: int = 0) -> bytes:
    """A Register of ``count`` IPv4 candidates of wire kind code ``kind``, less ``cut`` bytes."""
    candidate = bytes((kind, 4)) + bytes((127, 0, 0, 1)) + struct.pack(">HI", 9, 1)
    body = bytes((TYPE_RENDEZVOUS, 1, count)) + candidate * count + struct.pack(">BBBBBi", 7, 0, 0, 0, 0, 0)
    return body[: len(body) - cut]


MALFORMED = {
    "17 candidates": _register_payload(MAX_CANDIDATES + 1),
    "255 candidates": _register_payload(255),
    "candidate list cut short": _register_payload(3, cut=12),
    "candidate kind 0": _register_payload(1, kind=0),
    "candidate kind 9": _register_payload(1, kind=9),
    "oversized": _register_payload(16) + bytes(200),
    "garbage after type 3": bytes((TYPE_RENDEZVOUS,)) + os.urandom(64),
    "unknown subtype": bytes((TYPE_RENDEZVOUS, 200)) + bytes(20),
    "type byte alone": bytes((TYPE_RENDEZVOUS,)),
    "trailing bytes": encode_rendezvous(Sync(_token(1))) + b"x",
    "forged introduce candidates": encode_rendezvous(Introduce(1, "a" * 52, _token(2), (HOST,), NAT)).replace(
        bytes((1, 1, 4)), bytes((1, 7, 4)), 1
    ),
}


def test_malformed_rendezvous_frames_are_dropped_and_counted(introducer: NodeUnderAttack) -> None:
    stranger = RawMember.connect(introducer.node, introducer.tmp_path / "stranger")
    stranger.send(*MALFORMED.values())
    # Counted one each; nothing registered; the link still serves a well-formed Register.
    wait_for(lambda: introducer.status()["rendezvous"]["dropped"] == len(MALFORMED), "every frame counted")
    assert _served(introducer)["registered_peers"] == 0
    stranger.register()
    assert _served(introducer)["registered_peers"] == 1
    stranger.close()
    introducer.assert_alive()
    assert introducer.legitimate_ping()["peer_id"] == introducer.node.peer_id


def test_an_introduce_flood_for_unknown_peers_is_rate_limited(introducer: NodeUnderAttack) -> None:
    stranger = RawMember.connect(introducer.node, introducer.tmp_path / "stranger")
    stranger.register()
    before = rss_kib(introducer.pid)
    flood = 20_000
    for start in range(0, flood, 1000):
        stranger.say(
            *(
                Introduce(n + 1, peer_id_of(os.urandom(32)), _token(n), (HOST,), NAT)
                for n in range(start, start + 1000)
            )
        )

    def refusals() -> dict[str, int]:
        counted = _served(introducer)["refusals"]
        assert isinstance(counted, dict)
        return counted

    counted = wait_for(
        lambda: (c := refusals()) and sum(c.values()) == flood and c, "every Introduce refused"
    )
    assert (
        set(counted) == {"unknown_peer", "too_many_requests"} and counted["too_many_requests"] > flood * 0.9
    )
    served = _served(introducer)
    assert served["pending"] == 0 and served["introductions"] == 0
    # Each refusal reached the stranger, or was dropped (counted) when more were queued than the
    # outbox holds.
    answers = stranger.drain_messages()
    assert {type(m) for m in answers} == {Refused}
    assert len(answers) + introducer.status()["rendezvous"]["dropped"] == flood
    grown = rss_kib(introducer.pid) - before
    print(f"\nRSS {before} KiB, +{grown} KiB under {flood} Introduce; {counted}; {len(answers)} answered")
    assert grown < 16 * 1024
    stranger.close()
    introducer.assert_alive()
    assert introducer.legitimate_ping()["peer_id"] == introducer.node.peer_id


def test_an_introduce_naming_the_requester_itself_is_refused(introducer: NodeUnderAttack) -> None:
    stranger = RawMember.connect(introducer.node, introducer.tmp_path / "stranger")
    stranger.register()
    stranger.say(Introduce(7, stranger.peer_id, _token(7), (HOST,), NAT))
    assert stranger.next() == Refused(7, Refusal.SELF)
    served = _served(introducer)
    assert served["refusals"] == {"self": 1} and served["introductions"] == 0, served
    stranger.close()
    introducer.assert_alive()


def test_answers_for_introductions_that_are_not_the_senders_are_dropped(introducer: NodeUnderAttack) -> None:
    """Only an introduction's target may Accept it, only its requester may Sync it; tokens of no
    introduction are nobody's. Each such message is dropped and counted by reason; the rightful
    answers still go through."""
    one = RawMember.connect(introducer.node, introducer.tmp_path / "one")
    two = RawMember.connect(introducer.node, introducer.tmp_path / "two")
    one.register()
    two.register()
    token = _token(42)
    one.say(Introduce(1, two.peer_id, token, (HOST,), NAT))
    introduced = two.next()
    assert isinstance(introduced, Introduced) and introduced.source == one.peer_id
    one.say(Accept(token, (HOST,), NAT))  # the requester accepting its own introduction
    two.say(Sync(token))  # the target syncing what it did not ask for
    one.say(Sync(token))  # the requester, before any accept
    two.say(Accept(_token(99), (HOST,), NAT), Sync(_token(98)))  # tokens of no introduction
    two.say(Registered(5))  # a message only an introducer sends (not an introducer's drop)

    def drops() -> dict[str, int] | None:
        counted = _served(introducer)["drops"]
        assert isinstance(counted, dict)
        return counted if sum(counted.values()) == 5 else None

    assert wait_for(drops, "five drops counted") == {"wrong_peer": 2, "out_of_order": 1, "unknown_token": 2}
    wait_for(lambda: introducer.status()["rendezvous"]["dropped"] == 1, "the Registered counted")
    two.say(Accept(token, (HOST,), NAT))
    assert one.next() == Accepted(1, token, (HOST,), NAT)
    for member in (one, two):
        member.close()
    introducer.assert_alive()
    assert introducer.legitimate_ping()["peer_id"] == introducer.node.peer_id


def test_a_target_that_never_answers_ends_in_a_typed_failure(introducer: NodeUnderAttack) -> None:
    """A stranger registers and then never answers its Introduced: the requester (a node) gets a
    typed failure within its --timeout, and the introducer refuses the introduction as timed out
    after its pending lifetime."""
    silent = RawMember.connect(introducer.node, introducer.tmp_path / "silent")
    silent.register()
    member = start_member(introducer.tmp_path / "member", introducer_entry(introducer.node))
    try:
        link_state(member, "registered")
        done = app(member, "connect", silent.peer_id, "--timeout", "8")
        assert done.returncode == 1
        why = done.stderr.decode()
        assert "connect_failed" in why and "no answer in time" in why, why
        assert isinstance(silent.next(), Introduced)

        def timed_out() -> int:
            refusals = _served(introducer)["refusals"]
            assert isinstance(refusals, dict)
            return int(refusals.get("timed_out", 0))

        wait_for(timed_out, "the introducer timed the introduction out")
        assert rendezvous(member)["traversals"]["attempts"] == 0
    finally:
        member.kill()
    silent.close()
    introducer.assert_alive()


# Four node processes and a dozen CLI runs, each a Python start-up: about 30 s on a usual machine,
# 75 s on a slow one (the 60 s default killed it in CI). A hang guard, not a timing check.
@pytest.mark.timeout(180)
def test_an_introducer_killed_mid_exchange_fails_connects_cleanly_until_it_is_back(tmp_path: Path) -> None:
    started: list[RunningNode] = []
    try:
        introducer = start_introducer(tmp_path / "introducer")
        started.append(introducer)
        a = start_member(tmp_path / "a", introducer_entry(introducer))
        b = start_member(tmp_path / "b", introducer_entry(introducer))
        started += [a, b]
        for member in (a, b):
            link_state(member, "registered")
        # A connect under way (the introducer does not know this peer, so it is asked again)
        # when the introducer dies: it ends with a typed failure, not at the node's whim.
        asking = subprocess.Popen(
            [*NODE, "connect", "a" * 52, "--timeout", "10", "--runtime-dir", str(a.runtime_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        wait_for(lambda: rendezvous(introducer)["introducer"]["refusals"], "the exchange is under way")
        introducer.proc.send_signal(signal.SIGKILL)
        introducer.proc.wait(timeout=10)
        _, stderr = asking.communicate(timeout=30)
        assert asking.returncode == 1 and b"connect_failed" in stderr and b"rendezvous" in stderr, stderr
        for member in (a, b):
            wait_for(lambda m=member: rendezvous(m)["introducers"][0]["state"] != "registered", "link lost")
        done = app(a, "connect", b.peer_id, "--timeout", "3")
        assert done.returncode == 1
        assert b"no introducer link is registered" in done.stderr, done.stderr

        # Back on the same state directory (identity) and port: the members register again and
        # connect by id works.
        assert introducer.tls_port is not None
        again = start_introducer(tmp_path / "introducer", tls_port=introducer.tls_port)
        started.append(again)
        assert again.peer_id == introducer.peer_id
        for member in (a, b):
            link_state(member, "registered", seconds=60)
        done = app(a, "connect", b.peer_id, "--timeout", "20", "--json")
        assert done.returncode == 0, done.stderr
        for node in (a, b, again):
            assert node.proc.poll() is None
        assert rendezvous(again)["registered_peers"] == 2
    finally:
        for node in started:
            node.kill()
