"""The TURN client's timer always makes progress: ``handle_timer(get_timer())`` acts on the
deadline it announced, so the deadline moves past ``now`` (node.proto.turn.liveness).

It did not: the liveness watch announced ``t + span`` and then checked ``now - t >= span``, which
floats can answer no at ``now == t + span`` (70.1 - 50.1 < 20.0); the timer stayed due at the same
instant and a driver in virtual time (tests/unit/test_turn_walk.py, hypothesis) spun forever."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from node.proto.turn.client import AllocationState, TurnClient
from node.proto.turn.credentials import Credentials
from node.proto.turn.events import Allocated, AllocationLost
from node.proto.turn.liveness import DEFAULT_LIVENESS, ServerWatch
from tests.fakes.turn_net import Net
from tests.fakes.turn_server import TurnServerModel

A = (ipaddress.IPv4Address("203.0.113.21"), 40001)


def test_the_walk_that_hung_settles_and_keeps_probing() -> None:
    # hypothesis's shrunk example from test_turn_walk: allocated at t = 30.1, the idle probe at
    # 50.1 is answered, and the next one is due at 50.1 + 20.0 = 70.1, where it stuck.
    net = Net(TurnServerModel())
    client = net.add(A, TurnClient(Credentials("alice", "wonderland")))
    client.receive(b'\xb0\x87t\x82w\x1aI"\x8c', net.now)
    net.advance(net.now + 0.1)
    net.advance(net.now + 30.0)
    client.allocate(net.now)
    net.pump()
    net.advance(net.now + 700.0)  # tests.fakes.turn_net.NetStuck here before the fix
    assert net.now == 730.1
    assert client.state is AllocationState.ALLOCATED
    events = net.take_events(A)
    assert any(isinstance(e, Allocated) for e in events)
    assert not any(isinstance(e, AllocationLost) for e in events)
    # An idle probe every 20 s, each answered, except where a refresh was heard instead.
    assert client.counters.probes >= 700.0 // DEFAULT_LIVENESS.idle_probe_s - 2


def test_the_idle_probe_is_due_at_its_own_deadline() -> None:
    watch = ServerWatch(DEFAULT_LIVENESS)
    watch.start(50.1)
    at = watch.deadline()
    assert at == 70.1
    assert watch.due(at)


def test_the_silence_check_is_due_at_its_own_deadline() -> None:
    watch = ServerWatch(DEFAULT_LIVENESS)
    watch.start(0.0)
    watch.sent(0.2)  # arms the check at 1.2
    watch.last_heard = 0.4  # an answer ...
    watch.sent(0.5)  # ... and a send after it: at 1.2, look again when the answer is 1 s old
    assert not watch.due(1.2)
    at = watch.deadline()
    assert at == 0.4 + DEFAULT_LIVENESS.server_silence_s  # 1.4, and 1.4 - 0.4 < 1.0 in floats
    assert watch.due(at)


times = st.integers(0, 20_000).map(lambda n: n / 10)  # tenths of a second, as in the walk


@given(heard=times, probe=times, sent=times, check=st.none() | times)
def test_a_watch_that_says_not_due_at_its_deadline_moves_it_later(
    heard: float, probe: float, sent: float, check: float | None
) -> None:
    watch = ServerWatch(DEFAULT_LIVENESS)
    watch.last_heard, watch.last_probe, watch.last_sent, watch.check_at = heard, probe, sent, check
    at = watch.deadline()
    if not watch.due(at):
        assert watch.deadline() > at
