"""hypothesis walks the TURN client's state table against the server model: any sequence of
commands, time jumps, garbage and server faults (stale nonces, restarts, silence) leaves it in a
state the table allows, with events that agree with it; misuse is a typed local error and
nothing else ever raises."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from node.proto.turn.client import TRANSITIONS, AllocationState, TurnClient
from node.proto.turn.credentials import Credentials
from node.proto.turn.errors import TurnUsageError
from node.proto.turn.events import Allocated, AllocationFailed, AllocationLost, Closed
from tests.fakes.turn_net import Net
from tests.fakes.turn_server import TurnServerModel

A = (ipaddress.IPv4Address("203.0.113.21"), 40001)
PEERS = [(ipaddress.IPv4Address("192.0.2.7"), 7000 + i) for i in range(3)]
REACHABLE = {s for s, _ in TRANSITIONS} | set(TRANSITIONS.values())

# A hang here must end the run, not stall it: pytest-timeout's default signal method raises
# pytest's Failed inside the test, which hypothesis catches as one more failing example and goes
# on shrinking (into the same hang, with the one-shot alarm spent). The thread method dumps every
# stack and exits the process. Net bounds its own loops (NetStuck); this is the backstop, and
# hypothesis's ``deadline`` is no help: it is checked only after an example returns.
pytestmark = pytest.mark.timeout(60, method="thread")


class TurnWalk(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.net = Net(TurnServerModel())
        self.net.echo_peers.update(PEERS)
        self.client = self.net.add(A, TurnClient(Credentials("alice", "wonderland")))

    def _try(self, command: str, *args: object) -> None:
        before = self.client.state
        try:
            getattr(self.client, command)(*args, self.net.now)
        except TurnUsageError:
            assert before is not AllocationState.ALLOCATED or command == "allocate"
        self.net.pump()

    @rule()
    def allocate(self) -> None:
        self._try("allocate")

    @rule(peer=st.sampled_from(PEERS), size=st.integers(0, 300))
    def send(self, peer: tuple[ipaddress.IPv4Address, int], size: int) -> None:
        self._try("send", peer, b"x" * size)

    @rule(peer=st.sampled_from(PEERS))
    def open_peer(self, peer: tuple[ipaddress.IPv4Address, int]) -> None:
        self._try("open_peer", peer)

    @rule()
    def refresh(self) -> None:
        self._try("refresh")

    @rule()
    def close(self) -> None:
        self._try("close")

    @rule()
    def connection_lost(self) -> None:
        self._try("connection_lost")

    @rule(seconds=st.sampled_from([0.1, 1.0, 30.0, 250.0, 700.0]))
    def wait(self, seconds: float) -> None:
        self.net.advance(self.net.now + seconds)

    @rule()
    def stale_nonce(self) -> None:
        self.net.server.rotate_nonce()

    @rule()
    def server_restart(self) -> None:
        self.net.server.forget_everything()

    @rule(silent=st.booleans())
    def server_silent(self, silent: bool) -> None:
        self.net.server.silent = silent

    @rule(data=st.binary(max_size=64))
    def garbage(self, data: bytes) -> None:
        self.client.receive(data, self.net.now)

    @invariant()
    def state_is_in_the_table(self) -> None:
        assert self.client.state in REACHABLE

    @invariant()
    def events_match_the_state(self) -> None:
        for event in self.net.take_events(A):
            if isinstance(event, Allocated):
                assert self.client.relayed == event.relayed
            elif isinstance(event, AllocationFailed | AllocationLost):
                assert self.client.state in (AllocationState.FAILED, AllocationState.CLOSED)
            elif isinstance(event, Closed):
                assert self.client.state is AllocationState.CLOSED


TurnWalk.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_turn_walk = TurnWalk.TestCase
