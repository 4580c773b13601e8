"""TCP-TLS under hypothesis: a stranger's frames, valid or not, cut and merged across writes anywhere,
before and after its proof, over real TLS to the node as a process.

After every attack the node is alive, no connection reached its isolation wall (``tcp_tls.faults``
in ``status``: a fault there is a bug that was contained, and this test is here to surface it),
and a legitimate peer completes a handshake and a ping. What the stranger was answered is checked
against what any correct node must answer (``read_wire``, an oracle apart from the node's decoder);
where TLS records may merge into one read, only what holds for every merge is asserted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
import socket
import ssl
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

import pytest
import uvloop
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from node import paths
from node.cli import control_client
from node.proto.delivery.wire import DATA_HEADER
from node.proto.identity import Identity, verify
from node.proto.link.frames import FrameKind, encode
from node.proto.link.stream_link import NONCE_SIZE, CloseReason, proof_message
from node.proto.vocabulary import IpEndpoint
from node.security.keystore import load_or_create
from node.security.trust import TrustPolicy
from node.transports.tcp_tls.link import LinkSettings, TlsCredentials, dial
from tests.adversarial.tls_client import RawTlsClient
from tests.support.link_frames import (
    CUTS,
    PROOF_SIZE,
    Piece,
    Proof,
    ProofKind,
    WireView,
    pieces,
    proof_payload,
    read_wire,
    render,
    split,
)
from tests.support.nodeproc import RunningNode, cli, start_node
from tests.support.tlsnodes import new_node, ping_once, pinned_creds

pytestmark = pytest.mark.process

MAX_APP_MESSAGE = 1024  # small, so that DATA at and past the limit is cheap to send
# The link carries the coordinator's delivery header on top (node.services.frame_limit).
MAX_MESSAGE = MAX_APP_MESSAGE + DATA_HEADER
# Health pings every second: the node's own PINGs meet the stranger's frames on accepted links.
CONFIG = f"[transport]\nmax_message_bytes = {MAX_APP_MESSAGE}\nhealth_check_interval_s = 1.0\n"
SETTINGS = LinkSettings(connect_timeout=20.0, handshake_timeout=20.0)
WAIT_S = 20.0  # the bound on waiting for the node (its handshake timeout is 10 s)
# About 40 ms an example on a 2-core machine. A longer hunt: TLS_FUZZ_EXAMPLES=3000.
EXAMPLES = int(os.environ.get("TLS_FUZZ_EXAMPLES", "150"))
# Random unless given (printed, so that a failing run can be repeated; no example database: the
# node's state is not the database's to replay).
SEED = int(os.environ.get("TLS_FUZZ_SEED", random.randrange(1 << 32)))
_OPEN_KINDS = (FrameKind.DATA, FrameKind.PING, FrameKind.PONG)  # what an open link takes
_ENDS = (FrameKind.CLOSE, FrameKind.REFUSE)
_ACCEPT = encode(FrameKind.ACCEPT)


class Ending(Enum):
    KEEP = "keep"  # wait for what the node must do (close, or accept), then half-close
    HALF_CLOSE = "half_close"  # a TCP FIN (no TLS close_notify) right after the last write
    RESET = "reset"  # a TCP RST right after the last write; nothing read


class End(Enum):
    EOF = "eof"  # the node closed the connection
    RESET = "reset"  # ... with a reset (it closed with bytes of ours unread)
    OPEN = "open"  # still open when the wait ended
    MET = "met"  # what was waited for has arrived


@dataclass(frozen=True)
class Attack:
    pieces: list[Piece]
    cuts: list[int]
    delays: list[float]  # before each write, in turn
    ending: Ending
    proof_alone: bool  # a valid proof first: send it alone and wait for ACCEPT, then the rest


ATTACKS = st.builds(
    Attack,
    pieces(MAX_MESSAGE),
    CUTS,
    st.lists(st.one_of(st.just(0.0), st.floats(0.0, 0.05)), max_size=4),
    st.sampled_from(Ending),
    st.booleans(),
)


@dataclass(frozen=True)
class Outcome:
    view: WireView  # the stranger's bytes, as any receiver frames them
    valid_first: bool | None  # None: the first frame is no whole, well-formed PROOF
    node_closed: bool  # the node had to close by itself, and was waited for
    answer: bytes | None  # what the node sent after HELLO; None when the stranger reset
    end: End


@dataclass(frozen=True)
class Target:
    node: RunningNode
    stranger: Identity
    other: Identity  # a second key, for proofs that present one key and sign with another
    legit: TlsCredentials
    runner: asyncio.Runner
    seen: Counter[str]  # what the attacks reached, printed at the end

    def status(self) -> dict[str, Any]:
        """``status`` over the control socket, in-process (the CLI costs a Python start)."""
        socket_path = paths.resolve_dirs(None, self.node.runtime_dir).control_socket
        reply = control_client.request(socket_path, "status")
        tls = reply["tcp_tls"]
        assert isinstance(tls, dict)
        return tls


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One node for every example (development trust mode: any valid proof is admitted)."""
    tmp = tmp_path_factory.mktemp("tls-fuzz")
    node = start_node(tmp, extra_config=CONFIG)
    try:
        stranger, _ = load_or_create(tmp / "stranger")
        other, _ = load_or_create(tmp / "other")
        legit = pinned_creds(new_node(tmp, "legit"), frozenset())
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            yield Target(node, stranger, other, legit, runner, Counter())
    finally:
        node.kill()


@pytest.mark.timeout(180)
def test_any_frames_cut_anywhere_never_harm_the_node(target: Target) -> None:
    print(f"hypothesis seed {SEED} (TLS_FUZZ_SEED={SEED} repeats this run)")

    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None)
    @given(ATTACKS)
    def attack_then_check(attack: Attack) -> None:
        faults = target.status()["faults"]
        outcome = _attack(target, attack)
        if outcome.answer is not None:
            target.seen.update(_check_answer(outcome, outcome.answer))
        _check_node(target, faults)

    attack_then_check()
    print("reached:", ", ".join(f"{what} x{n}" for what, n in sorted(target.seen.items())))
    # What an operator sees, after all of it: no connection ended at the isolation wall.
    done = cli("status", "--json", "--runtime-dir", str(target.node.runtime_dir))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tcp_tls"]["faults"] == {}


def _attack(target: Target, attack: Attack) -> Outcome:
    """Run one attack; what the node answered (None when we reset) and how the connection ended."""
    assert target.node.tls_port is not None
    client = RawTlsClient.connect(target.node.tls_port)
    try:
        sign = _signer(client, target)
        first = attack.pieces[0]
        alone = attack.proof_alone and isinstance(first, Proof) and first.kind.verifies
        head = render(attack.pieces[:1], sign) if alone else b""
        rest = render(attack.pieces[1:] if alone else attack.pieces, sign)
        wire = head + rest
        view = read_wire(wire, MAX_MESSAGE)
        valid_first = _first_proof_verifies(view, client)
        must_close = _must_close(view, valid_first)
        writes = split(rest, attack.cuts)
        target.seen[f"first proof valid: {valid_first}"] += 1
        target.seen["proof accepted, then the rest" if alone else "proof and the rest as cut"] += 1
        target.seen[f"ending {attack.ending.value}"] += 1
        target.seen["several writes" if len(writes) > 1 else "one write"] += 1
        answer = b""
        if head:  # the proof alone; the rest once the node has accepted it (after the proof)
            client.send(head)
            answer, end = _receive(client.sock, lambda got: got.startswith(_ACCEPT))
            assert end is End.MET, f"a lone valid proof was not accepted: {answer!r}"
        for i, chunk in enumerate(writes):
            if attack.delays:
                time.sleep(attack.delays[i % len(attack.delays)])
            try:
                client.send(chunk)
            except OSError:  # the node closed on an earlier write: what it said is still there
                break
        if attack.ending is Ending.RESET:
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return Outcome(view, valid_first, False, None, End.RESET)
        if attack.ending is Ending.KEEP and must_close:
            more, end = _receive(client.sock, None)
            assert end is not End.OPEN, f"the node kept a connection that broke the protocol: {wire!r}"
            return Outcome(view, valid_first, True, answer + more, end)
        if attack.ending is Ending.KEEP and not head and _must_accept(view, valid_first):
            answer, end = _receive(client.sock, lambda got: got.startswith(_ACCEPT))
            assert end is End.MET, f"a lone valid proof was not accepted: {answer!r}"
        # A half-close (TCP FIN, no close_notify): the node must end the connection promptly.
        socket.socket.shutdown(client.sock, socket.SHUT_WR)  # not SSLSocket's: TLS reads go on
        more, end = _receive(client.sock, None)
        assert end is not End.OPEN, "the node kept a connection its peer had half-closed"
        return Outcome(view, valid_first, False, answer + more, end)
    finally:
        client.close()


def _signer(client: RawTlsClient, target: Target) -> Callable[[Proof], bytes]:
    def sign(proof: Proof) -> bytes:
        client_nonce = os.urandom(NONCE_SIZE)
        cert = client.server_cert_der
        if proof.kind is ProofKind.OTHER_SESSION:
            cert = cert[::-1]
        server_nonce = os.urandom(NONCE_SIZE) if proof.kind is ProofKind.STALE_NONCE else client.server_nonce
        signer = target.other if proof.kind is ProofKind.WRONG_KEY else target.stranger
        signature = TrustPolicy.make_proof(signer, cert, server_nonce, client_nonce)
        payload = proof_payload(proof.kind, proof.size, client_nonce, target.stranger.public_key, signature)
        return encode(FrameKind.PROOF, payload)

    return sign


def _first_proof_verifies(view: WireView, client: RawTlsClient) -> bool | None:
    """None unless the wire's first frame is a whole, well-formed PROOF; else whether it verifies."""
    if (
        not view.frames
        or view.frames[0].kind is not FrameKind.PROOF
        or len(view.frames[0].payload) < PROOF_SIZE
    ):
        return None
    payload = view.frames[0].payload
    nonce, key, signature = payload[:NONCE_SIZE], payload[NONCE_SIZE : 2 * NONCE_SIZE], payload[64:PROOF_SIZE]
    return verify(key, signature, proof_message(client.server_cert_der, client.server_nonce, nonce))


def _must_close(view: WireView, valid_first: bool | None) -> bool:
    """However the writes merge into reads, the node closes the connection by itself: the stream
    breaks, or some whole frame is one that no state the node can be in takes."""
    if not view.frames:
        return view.broken
    if not valid_first:
        return True  # not a proof (protocol error), or a proof that does not verify (refused)
    return view.broken or any(f.kind not in _OPEN_KINDS for f in view.frames[1:])


def _must_accept(view: WireView, valid_first: bool | None) -> bool:
    """A valid proof and no whole frame after it (a partial one is only buffered)."""
    return bool(valid_first) and len(view.frames) == 1 and not view.broken


def _receive(sock: ssl.SSLSocket, until: Callable[[bytes], bool] | None) -> tuple[bytes, End]:
    """Read until the node closes, ``until`` holds, or WAIT_S passes."""
    got = b""
    deadline = time.monotonic() + WAIT_S
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except OSError:  # a reset: the node closed with bytes of ours unread
            return got, End.RESET
        if not chunk:
            return got, End.EOF
        got += chunk
        if until is not None and until(got):
            return got, End.MET
    return got, End.OPEN


def _check_answer(outcome: Outcome, answer: bytes) -> list[str]:
    """What every correct node answers, for every way the stranger's writes merge into reads;
    returns the answer's shape (for the tally of what the attacks reached)."""
    view, valid_first, end = outcome.view, outcome.valid_first, outcome.end
    got = read_wire(answer, MAX_MESSAGE)
    assert not got.broken, answer
    if end is End.EOF:
        assert got.tail == b"", answer  # whole frames (a reset may cut the last one)
    kinds = [f.kind for f in got.frames]
    assert set(kinds) <= {FrameKind.ACCEPT, FrameKind.REFUSE, FrameKind.CLOSE, FrameKind.PING, FrameKind.PONG}
    # ACCEPT: once, first, and only for a whole proof that verifies at the start of the stream.
    if FrameKind.ACCEPT in kinds:
        assert kinds.index(FrameKind.ACCEPT) == 0 and kinds.count(FrameKind.ACCEPT) == 1, kinds
        assert valid_first is True, kinds
    elif kinds:
        assert kinds[0] in _ENDS, kinds  # no PING or PONG on a link that was never accepted
    if FrameKind.REFUSE in kinds:
        assert valid_first is False, kinds
        assert got.frames[0].payload == bytes([CloseReason.BAD_PROOF]), got.frames
    # One ending (CLOSE or REFUSE) at most, and nothing after it.
    ends = [i for i, kind in enumerate(kinds) if kind in _ENDS]
    assert len(ends) <= 1 and (not ends or ends[0] == len(kinds) - 1), kinds
    for frame in got.frames:
        if frame.kind is FrameKind.CLOSE:
            reason = CloseReason(frame.payload[0])
            assert reason in (CloseReason.PROTOCOL_ERROR, CloseReason.MESSAGE_TOO_LARGE, CloseReason.TIMEOUT)
            if reason is CloseReason.MESSAGE_TOO_LARGE:
                assert view.oversized, "MESSAGE_TOO_LARGE without an oversized header"
    # A PONG answers one of the stranger's PINGs (its token), each once at most.
    pings = Counter(f.message_id for f in view.frames if f.kind is FrameKind.PING)
    pongs = Counter(f.message_id for f in got.frames if f.kind is FrameKind.PONG)
    assert pongs <= pings, (pongs, pings)
    # The node closed by itself: it said why, unless the stranger's own CLOSE was what it met.
    if outcome.node_closed and end is End.EOF:
        said_why = bool(kinds) and kinds[-1] in _ENDS
        assert said_why or any(f.kind is FrameKind.CLOSE for f in view.frames), kinds
    return [f"answer {' '.join(k.name for k in dict.fromkeys(kinds)) or 'empty'}", f"end {end.value}"]


def _check_node(target: Target, faults_before: dict[str, int]) -> None:
    """Alive; the attack's connection ended without a fault; a legitimate peer is served."""
    node = target.node
    code = node.proc.poll()
    assert code is None, f"the node exited with {code}: {node.stderr_path.read_text()[-4000:]}"
    # Done with the attack's connection (a fault is counted before the slot is given back), so a
    # fault is pinned on the attack that caused it and hypothesis can shrink that attack.
    deadline = time.monotonic() + WAIT_S
    while (status := target.status())["connections"] and time.monotonic() < deadline:
        time.sleep(0.005)
    assert status["connections"] == 0, "the attack's connection outlived it"
    assert status["faults"] == faults_before, node.stderr_path.read_text()[-4000:]
    rtt = target.runner.run(_legitimate_ping(node, target.legit))
    assert rtt > 0


async def _legitimate_ping(node: RunningNode, creds: TlsCredentials) -> float:
    assert node.tls_port is not None
    endpoint = IpEndpoint(ipaddress.ip_address("127.0.0.1"), node.tls_port)
    async with asyncio.timeout(WAIT_S):
        link = await dial(endpoint, node.peer_id, creds, SETTINGS)
        return await ping_once(link)
