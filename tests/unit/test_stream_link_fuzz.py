"""The server's StreamLink core under hypothesis: hostile bytes cut anywhere, and the driver's calls
(decide, close, ping, send, timers) at any time between them, in memory and virtual time.

The driver's contract, as node/transports/tcp_tls/link.py uses the core on the server side:

- ``receive_data``, ``handle_timer``, ``close``, ``data_to_send``, ``next_event``: any time, never
  raise (peer bytes and time are never the driver's fault).
- ``accept``/``refuse`` once, after the driver has taken ``ProofReceived`` (``refuse`` also before,
  as the refusal of a client past the connection limit does in START): TAKEN, or LINK_CLOSED when
  the peer's bytes or the clock closed the core first. Whatever came in between, never an error.
- Any other decision is a driver bug: on a closed core a no-op (LINK_CLOSED); otherwise accept
  outside VERIFYING, and refuse on an open link, raise LinkUsageError and change nothing.
- ``send_ping``, ``send_data`` (up to max_message): on an open link; else LinkUsageError (the
  driver checks ``closed`` first).

Beside the contract, what the core sends is checked against the peer's bytes (read apart from the
core's decoder): whole frames, HELLO first, ACCEPT only for a decision taken, one CLOSE or REFUSE
at the end unless the peer closed, a PONG only for a PING of the peer's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.proto.link.frames import FrameErrorReason, FrameKind, encode
from node.proto.link.stream_link import (
    CloseReason,
    DataReceived,
    Decision,
    LinkClosed,
    LinkState,
    LinkTiming,
    LinkUsageError,
    PongReceived,
    ProofReceived,
    Role,
    StreamLink,
)
from tests.support.link_frames import CUTS, Piece, Proof, pieces, proof_payload, read_wire, render, split

MAX_MESSAGE = 1024
TIMING = LinkTiming(handshake_timeout=10.0, keepalive=60.0, dead_after=120.0)
_LIVE_BEFORE_OPEN = (LinkState.START, LinkState.AWAIT_PROOF, LinkState.VERIFYING)


def _sign(proof: Proof) -> bytes:
    """The core carries proofs and does not check them: any bytes of the right shape."""
    return encode(FrameKind.PROOF, proof_payload(proof.kind, proof.size, b"n" * 32, b"k" * 32, b"s" * 64))


@dataclass(frozen=True)
class Decide:
    accept: bool
    reason: CloseReason  # for a refusal


@dataclass(frozen=True)
class Close:
    reason: CloseReason


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Send:
    size: int


@dataclass(frozen=True)
class Wait:
    seconds: float  # then handle_timer


Action = Decide | Close | Ping | Send | Wait


@dataclass(frozen=True)
class Round:
    """One piece of the peer's bytes, then the driver's calls. ``then``: the decision on a proof
    the piece delivers, taken at once (as tls_link does, right after the read); None leaves it
    to a later call."""

    then: Decide | None
    actions: list[Action]


DECISIONS = st.builds(Decide, st.booleans(), st.sampled_from(CloseReason))
_CALM = st.one_of(  # what an open link lives through
    st.just(Ping()),
    st.builds(Send, st.sampled_from([0, 10, MAX_MESSAGE, MAX_MESSAGE + 1])),
    st.builds(Wait, st.floats(0, 2)),
)
_ENDING = st.one_of(  # what may end it (rarer, so that the peer's bytes have their say)
    DECISIONS,
    st.builds(Close, st.sampled_from(CloseReason)),
    st.builds(Wait, st.floats(0, 200)),
)
ROUNDS = st.lists(
    st.builds(
        Round,
        st.one_of(DECISIONS, DECISIONS, st.none()),
        st.lists(st.one_of(_CALM, _CALM, _CALM, _ENDING), max_size=2),
    ),
    max_size=12,
)


@dataclass
class Driver:
    """The server side of tls_link, reduced to its calls; checks each against the contract."""

    core: StreamLink
    refuse_at_once: bool  # the refusal path (no HELLO: the client is past the connection limit)
    now: float = 0.0
    proof_seen: bool = False
    decided: bool = False
    accepted: bool = False
    closed_event: LinkClosed | None = None
    closed_by: str = ""  # what the driver was doing when the core closed
    close_reason: CloseReason | None = None  # the driver's own reason, when it closed the core
    pings: dict[int, float] = field(default_factory=dict)  # PINGs sent, not answered: when
    out: bytes = b""

    def start(self) -> None:
        if self.refuse_at_once:
            assert self.core.refuse(CloseReason.TOO_MANY_CONNECTIONS) is Decision.TAKEN
            self.close_reason = CloseReason.TOO_MANY_CONNECTIONS
            self.decided = True
        else:
            self.core.send_hello(b"h" * 32)
        self._settle("driver")

    def feed(self, chunk: bytes, then: Decide | None) -> None:
        proof_seen = self.proof_seen
        self.core.receive_data(chunk, self.now)
        self._settle("peer")
        if then is not None and self.proof_seen and not proof_seen:
            self.decide(then)

    def decide(self, step: Decide) -> None:
        core = self.core
        state = core.state
        if self.proof_seen and not self.decided:
            # The protocol's own decision: whatever the peer sent since its proof, never an error.
            assert state in (LinkState.VERIFYING, LinkState.CLOSED), state
            decision = core.accept() if step.accept else core.refuse(step.reason)
            assert decision is (Decision.TAKEN if state is LinkState.VERIFYING else Decision.LINK_CLOSED)
            self.decided = True
            if decision is Decision.TAKEN:
                self.accepted = step.accept
                self.close_reason = None if step.accept else step.reason
            self._settle("driver")
            return
        # A driver bug (no proof yet, or a second decision): typed, and harmless.
        allowed = state is LinkState.CLOSED or (not step.accept and state in _LIVE_BEFORE_OPEN)
        if not allowed:
            with pytest.raises(LinkUsageError):
                core.accept() if step.accept else core.refuse(step.reason)
            assert core.state is state and not core.data_to_send()
            return
        decision = core.accept() if step.accept else core.refuse(step.reason)
        if state is LinkState.CLOSED:
            assert decision is Decision.LINK_CLOSED
        else:  # refused before the proof (a timeout the driver keeps, or the refusal path)
            assert decision is Decision.TAKEN and core.closed
            self.close_reason = step.reason
        self._settle("driver")

    def act(self, action: Action) -> None:
        if isinstance(action, Decide):
            self.decide(action)
        elif isinstance(action, Close):
            self.close(action.reason)
        elif isinstance(action, Ping):
            self.ping()
        elif isinstance(action, Send):
            self.send(action.size)
        else:
            self.wait(action.seconds)

    def close(self, reason: CloseReason) -> None:
        was_closed = self.core.closed
        self.core.close(reason)
        assert self.core.closed
        if not was_closed:
            self.close_reason = reason
        self._settle("driver")

    def ping(self) -> None:
        if self.core.state is not LinkState.OPEN:
            state = self.core.state
            with pytest.raises(LinkUsageError):
                self.core.send_ping(self.now)
            assert self.core.state is state
            return
        self.core.send_ping(self.now)
        self._settle("driver")

    def send(self, size: int) -> None:
        if self.core.state is not LinkState.OPEN or size > MAX_MESSAGE:
            state = self.core.state
            with pytest.raises(LinkUsageError):
                self.core.send_data(1, 0, b"x" * size)
            assert self.core.state is state
            return
        self.core.send_data(1, 0, b"x" * size)
        self._settle("driver")

    def wait(self, seconds: float) -> None:
        before = self.core.get_timer()
        self.now += seconds
        live_before_open = self.core.state in _LIVE_BEFORE_OPEN
        self.core.handle_timer(self.now)
        if live_before_open and before is not None and self.now >= before:
            assert self.core.closed  # the handshake's deadline passed
        self._settle("timer")

    def _settle(self, by: str) -> None:
        """Take what the core has (as the driver does after each call) and check it."""
        core = self.core
        out = core.data_to_send()
        self.out += out
        for frame in read_wire(out, MAX_MESSAGE).frames:  # ours, or the core's keepalive
            if frame.kind is FrameKind.PING:
                self.pings[frame.message_id] = self.now
        while (event := core.next_event()) is not None:
            assert self.closed_event is None, f"{event} after {self.closed_event}"
            if isinstance(event, ProofReceived):
                assert not self.proof_seen and not self.decided
                self.proof_seen = True
            elif isinstance(event, DataReceived):
                assert self.accepted and event.frames
                assert all(len(f.payload) <= MAX_MESSAGE for f in event.frames)
            elif isinstance(event, PongReceived):
                assert event.rtt == self.now - self.pings.pop(event.token)
            else:
                assert isinstance(event, LinkClosed), event
                self.closed_event, self.closed_by = event, by
        assert core.closed == (self.closed_event is not None)
        assert (core.get_timer() is None) == core.closed  # a live link always has a deadline


@settings(max_examples=500, deadline=None)
@given(
    wire_pieces=pieces(MAX_MESSAGE),
    first_alone=st.booleans(),
    cuts=CUTS,
    rounds=ROUNDS,
    last=DECISIONS,
    refuse_at_once=st.sampled_from([False] * 9 + [True]),
)
def test_hostile_bytes_and_any_driver_calls(
    *,
    wire_pieces: list[Piece],
    first_alone: bool,
    cuts: list[int],
    rounds: list[Round],
    last: Decide,
    refuse_at_once: bool,
) -> None:
    """Every piece of the peer's bytes is fed, each followed by the driver's calls of its round
    (rounds beyond the pieces: calls only); a proof still waiting at the end gets ``last``.
    ``first_alone``: the first frame (most often a proof) is a read of its own, so that the rest
    meets an open link more often than a merged read's protocol error."""
    first = render(wire_pieces[:1], _sign)
    wire = first + render(wire_pieces[1:], _sign)
    chunks = split(wire, [*cuts, len(first)] if first_alone else cuts)
    driver = Driver(StreamLink(Role.SERVER, MAX_MESSAGE, 0.0, TIMING), refuse_at_once)
    driver.start()
    for i in range(max(len(chunks), len(rounds))):
        round_ = rounds[i] if i < len(rounds) else Round(last, [])
        if i < len(chunks):
            driver.feed(chunks[i], round_.then)
        for action in round_.actions:
            driver.act(action)
    if driver.proof_seen and not driver.decided:
        driver.decide(last)
    _check_output(driver, wire)


def _check_output(driver: Driver, wire: bytes) -> None:
    """What the core sent, against the peer's bytes and the driver's calls."""
    sent = read_wire(driver.out, MAX_MESSAGE)
    assert not sent.broken and sent.tail == b""  # whole frames, each within its kind's limit
    kinds = [f.kind for f in sent.frames]
    if driver.refuse_at_once:
        assert sent.frames[0].kind is FrameKind.REFUSE
        assert sent.frames[0].payload == bytes([CloseReason.TOO_MANY_CONNECTIONS])
    else:
        assert kinds[0] is FrameKind.HELLO and kinds.count(FrameKind.HELLO) == 1
    assert kinds.count(FrameKind.ACCEPT) == int(driver.accepted)
    if driver.accepted:
        assert kinds[1] is FrameKind.ACCEPT
    # A PONG answers a PING of the peer's, each at most once.
    peer_pings = Counter(
        f.message_id for f in read_wire(wire, MAX_MESSAGE).frames if f.kind is FrameKind.PING
    )
    pongs = Counter(f.message_id for f in sent.frames if f.kind is FrameKind.PONG)
    assert pongs <= peer_pings
    # One ending at most, last; none when the peer's CLOSE ended the link, else it says why.
    ends = [f for f in sent.frames if f.kind in (FrameKind.CLOSE, FrameKind.REFUSE)]
    assert len(ends) <= 1 and (not ends or sent.frames[-1] is ends[0])
    closed = driver.closed_event
    if closed is None:
        assert not ends
        return
    if closed.by_peer:
        assert not ends and closed.frame_error is None and driver.closed_by == "peer"
        return
    assert ends and ends[0].payload == bytes([closed.reason])
    if driver.closed_by == "driver":
        assert closed.reason is driver.close_reason
    elif driver.closed_by == "timer":
        assert closed.reason is CloseReason.TIMEOUT
    else:  # the peer broke the protocol
        assert closed.reason in (CloseReason.PROTOCOL_ERROR, CloseReason.MESSAGE_TOO_LARGE)
        if closed.reason is CloseReason.MESSAGE_TOO_LARGE:
            assert closed.frame_error is FrameErrorReason.TOO_LARGE and read_wire(wire, MAX_MESSAGE).oversized
