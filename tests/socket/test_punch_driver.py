"""The hole punch on real sockets on loopback: two UdpTransports punch (host candidates, and the
birthday technique with 256 sockets on one side), then run the secure session on the path that won.

Loopback has no NAT, so an ordinary pair would always win there. The birthday case makes the
ordinary pairs fail as a symmetric NAT does: each side's server-reflexive candidate is a bound
socket nobody reads (the mapping the STUN server saw, useless towards the peer), so only the
prober's random probes that hit one of the target's extra sockets can find a path. The prober's
seed is chosen so that its probes hit one (and spare the target's node port): deterministic, and
few probes, so stray checks to other ports of this shared machine stay rare.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.proto.identity import Identity
from node.proto.punch.agent import PunchSetup, PunchTiming
from node.proto.punch.candidates import Candidate, CandidateKind
from node.proto.punch.errors import PunchFailure
from node.proto.punch.guesses import birthday_ports
from node.proto.punch.plan import Plan, Role, Technique
from node.proto.punch.wire import MAGIC, Side
from node.proto.vocabulary import (
    Frame,
    IpEndpoint,
    MessageReceived,
    PeerConnected,
    TransportEvent,
    TransportReason,
)
from node.security.trust import SessionVerifier, TrustMode, TrustPolicy
from node.transports.base import TransportPeerError, TransportUsageError
from node.transports.punch.connect import punch_and_connect
from node.transports.punch.driver import PunchRun
from node.transports.udp.transport import MAX_ADOPTED, UdpTransport
from tests.support.tlsnodes import eventually

LOOP = ipaddress.IPv4Address("127.0.0.1")
TOKEN = bytes(range(16))
PUNCH = Plan(Technique.PUNCH, Role.PEER)
SHORT = PunchTiming(ta=0.01, attempts=1, rounds=2, final_wait=0.3)
PROBES = 32  # the prober's birthday probes (its seed is chosen so that one of them hits)


def _identity() -> Identity:
    return Identity.from_private_key(Ed25519PrivateKey.generate())


def _dev() -> SessionVerifier:
    return SessionVerifier(TrustPolicy(TrustMode.DEVELOPMENT))


def _host(t: UdpTransport) -> Candidate:
    assert t.local is not None
    return Candidate.of(CandidateKind.HOST, (LOOP, t.local.port))


def _setup(
    side: Side, me: Identity, plan: Plan, remote: tuple[Candidate, ...], fire_at: float, *, sockets: int = 1
) -> PunchSetup:
    return PunchSetup(side, TOKEN, me.peer_id.encode(), plan, remote, sockets, fire_at)


async def _next(events: AsyncIterator[TransportEvent], kind: type) -> TransportEvent:
    async with asyncio.timeout(10):
        async for event in events:
            if isinstance(event, kind):
                return event
    raise AssertionError("events ended")


async def _frames_cross(a: UdpTransport, b: UdpTransport, alice: Identity, bob: Identity) -> None:
    a_events, b_events = a.events(), b.events()
    await a.send(bob.peer_id, Frame(1, b"to bob"))
    got = await _next(b_events, MessageReceived)
    assert isinstance(got, MessageReceived) and got.peer == alice.peer_id and got.frame.payload == b"to bob"
    await b.send(alice.peer_id, Frame(2, b"to alice"))
    got = await _next(a_events, MessageReceived)
    assert isinstance(got, MessageReceived) and got.peer == bob.peer_id and got.frame.payload == b"to alice"


async def _fds() -> int:
    """Descriptors open now, after one transport came and went (the loop opens a few of its
    own on first use, and keeps them)."""
    async with UdpTransport(_identity(), _dev()):
        pass
    return len(os.listdir("/proc/self/fd"))


@contextmanager
def _black_hole() -> Iterator[int]:
    """A bound UDP port nobody reads: what reaches it is lost, and no ICMP error comes back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


async def test_host_candidates_punch_then_both_sides_prove_the_session() -> None:
    alice, bob = _identity(), _identity()
    async with UdpTransport(alice, _dev()) as a, UdpTransport(bob, _dev()) as b:
        fire = asyncio.get_running_loop().time() + 0.05
        async with asyncio.TaskGroup() as group:
            run_a = group.create_task(
                punch_and_connect(
                    a, _setup(Side.A, alice, PUNCH, (_host(b),), fire), bob.peer_id, timing=SHORT
                )
            )
            run_b = group.create_task(
                punch_and_connect(
                    b, _setup(Side.B, bob, PUNCH, (_host(a),), fire), alice.peer_id, timing=SHORT
                )
            )
        result_a, result_b = run_a.result(), run_b.result()
        assert result_a.failure is None and result_b.failure is None
        assert result_a.remote == b.local and result_b.remote == a.local
        assert not result_a.socket_adopted and not result_b.socket_adopted
        assert a.peers() == (bob.peer_id,) and b.peers() == (alice.peer_id,)
        await _frames_cross(a, b, alice, bob)


async def test_birthday_session_runs_over_the_targets_adopted_socket() -> None:
    alice, bob = _identity(), _identity()
    with _black_hole() as hole_a, _black_hole() as hole_b:
        async with (
            UdpTransport(alice, _dev()) as a,
            UdpTransport(bob, _dev()) as b,
            AsyncExitStack() as stack,
        ):
            assert a.local is not None and b.local is not None
            loop = asyncio.get_running_loop()
            fire = loop.time() + 0.3
            # B, the hard side: 256 sockets; A's server-reflexive address as B learned it (useless).
            b_setup = _setup(
                Side.B,
                bob,
                Plan(Technique.BIRTHDAY, Role.TARGET),
                (Candidate.of(CandidateKind.SRFLX, (LOOP, hole_a)),),
                fire,
                sockets=256,
            )
            run_b = await stack.enter_async_context(PunchRun(b, b_setup, alice.peer_id))
            extra = set(run_b.extra_ports().values())
            assert len(extra) == 255 and b.local.port not in extra
            seed = next(
                s
                for s in range(100_000)
                if (probes := set(birthday_ports(random.Random(s), PROBES))) & extra
                and b.local.port not in probes
            )
            a_setup = _setup(
                Side.A,
                alice,
                Plan(Technique.BIRTHDAY, Role.PROBER),
                (Candidate.of(CandidateKind.SRFLX, (LOOP, hole_b)),),
                fire,
            )
            a_events = a.events()
            result_a = await punch_and_connect(
                a, a_setup, bob.peer_id, rng=random.Random(seed), timing=PunchTiming(birthday_probes=PROBES)
            )
            result_b = await run_b.outcome()
            await b.wait_session(alice.peer_id, result_b.remote)

            # A's session with B ends on one of B's extra sockets, not on B's node port.
            assert result_a.remote is not None and result_a.remote.port in extra
            connected = await _next(a_events, PeerConnected)
            assert isinstance(connected, PeerConnected) and connected.endpoint == result_a.remote
            assert result_b.socket_adopted and result_b.remote == a.local
            assert result_b.nominated is not None and result_b.nominated.socket > 0
            assert b.metrics().adopted == 1 and run_b.extra_ports() == {}  # the other 254 closed
            await _frames_cross(a, b, alice, bob)

            # The session over it ends (B closes it; its consent timeout would do the same):
            # B closes the adopted socket.
            await b.disconnect(alice.peer_id)
            assert b.metrics().adopted == 0


async def test_a_nomination_from_another_peer_id_is_refused() -> None:
    alice, bob, carol = _identity(), _identity(), _identity()
    async with UdpTransport(alice, _dev()) as a, UdpTransport(bob, _dev()) as b:
        fire = asyncio.get_running_loop().time() + 0.05
        async with (
            PunchRun(
                a, _setup(Side.A, alice, PUNCH, (_host(b),), fire), carol.peer_id, timing=SHORT
            ) as run_a,
            PunchRun(b, _setup(Side.B, bob, PUNCH, (_host(a),), fire), alice.peer_id, timing=SHORT) as run_b,
        ):
            result_a = await run_a.outcome()
            await run_b.outcome()
        assert result_a.failure is PunchFailure.WRONG_PEER and result_a.nominated is None
        assert a.peers() == ()


async def test_a_peer_that_lies_in_its_checks_fails_the_handshake() -> None:
    """The check payload is only a claim: B says it is carol, the handshake proves it is not."""
    alice, bob, carol = _identity(), _identity(), _identity()
    async with UdpTransport(alice, _dev()) as a, UdpTransport(bob, _dev()) as b:
        fire = asyncio.get_running_loop().time() + 0.05
        liar = _setup(Side.B, carol, PUNCH, (_host(a),), fire)  # carol's id, bob's key
        async with PunchRun(b, liar, alice.peer_id, timing=SHORT):
            with pytest.raises(TransportPeerError) as caught:
                await punch_and_connect(
                    a, _setup(Side.A, alice, PUNCH, (_host(b),), fire), carol.peer_id, timing=SHORT
                )
        assert caught.value.reason is TransportReason.PEER_MISMATCH


async def test_a_peer_that_never_answers_fails_with_no_answer() -> None:
    alice = _identity()
    with _black_hole() as hole:
        async with UdpTransport(alice, _dev()) as a:
            fire = asyncio.get_running_loop().time()
            silent = (Candidate.of(CandidateKind.HOST, (LOOP, hole)),)
            result = await punch_and_connect(
                a, _setup(Side.A, alice, PUNCH, silent, fire), _identity().peer_id, timing=SHORT
            )
        assert result.failure is PunchFailure.NO_ANSWER and result.nominated is None
        assert result.stats.requests_sent == SHORT.rounds


async def test_leaving_early_cancels_the_run_and_closes_its_sockets() -> None:
    alice = _identity()
    fds = await _fds()
    async with UdpTransport(alice, _dev()) as a:
        fds_open = len(os.listdir("/proc/self/fd"))
        target = _setup(
            Side.B,
            alice,
            Plan(Technique.BIRTHDAY, Role.TARGET),
            (Candidate.of(CandidateKind.SRFLX, (LOOP, 9)),),
            asyncio.get_running_loop().time() + 60,
            sockets=256,
        )
        async with PunchRun(a, target, _identity().peer_id) as run:
            assert len(run.extra_ports()) == 255
        assert len(os.listdir("/proc/self/fd")) == fds_open
        with pytest.raises(TransportUsageError):
            await run.outcome()
    assert len(os.listdir("/proc/self/fd")) == fds


async def test_punch_datagrams_of_no_punch_are_counted_and_never_answered() -> None:
    alice = _identity()
    async with UdpTransport(alice, _dev()) as a:
        assert a.local is not None
        stun_before = a.responder.counters.copy()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.bind(("127.0.0.1", 0))
            sender.setblocking(False)
            strays = [MAGIC, MAGIC + os.urandom(40), MAGIC + bytes(2) + TOKEN, MAGIC + os.urandom(1400)]
            for data in strays:
                sender.sendto(data, ("127.0.0.1", a.local.port))
            await eventually(lambda: a.metrics().punch_unknown == len(strays))
            assert a.metrics().punch_datagrams == len(strays)
            assert a.responder.counters == stun_before  # never the STUN responder's
            with pytest.raises(BlockingIOError):
                sender.recv(2048)


async def test_adopt_is_bounded_and_closing_the_transport_closes_adopted_sockets() -> None:
    alice = _identity()
    fds = await _fds()
    async with UdpTransport(alice, _dev()) as a:
        opened: list[socket.socket] = []
        for i in range(MAX_ADOPTED):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            opened.append(sock)
            assert a.adopt(sock, IpEndpoint(LOOP, 20000 + i)) == i + 1
        assert a.metrics().adopted == MAX_ADOPTED
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as extra:
            with pytest.raises(TransportUsageError) as caught:
                a.adopt(extra, IpEndpoint(LOOP, 30000))
            assert caught.value.reason is TransportReason.TOO_MANY_CONNECTIONS
            assert a.release(IpEndpoint(LOOP, 20000)) and opened[0].fileno() == -1
            with pytest.raises(TransportUsageError) as caught:
                a.adopt(extra, IpEndpoint(LOOP, 20001))  # one socket per remote address
            assert caught.value.reason is TransportReason.TOO_MANY_CONNECTIONS
        assert len(os.listdir("/proc/self/fd")) > fds
    assert all(sock.fileno() == -1 for sock in opened)
    assert len(os.listdir("/proc/self/fd")) == fds
