"""The TURN client notices a server that fell silent (node.proto.turn.liveness), in virtual time
against the TURN server model: silence while sending, or a long idle spell, starts a short probe;
no answer loses the allocation, an answer changes nothing."""

from __future__ import annotations

import pytest

from node.proto import stun
from node.proto.turn.client import AllocationState, TurnClient
from node.proto.turn.errors import TurnUnreachableError, TurnUsageError
from node.proto.turn.events import AllocationLost, ChannelBound, TurnEvent
from node.proto.turn.liveness import Liveness
from tests.fakes.turn_net import Net
from tests.unit.test_turn_client import PEER, A, allocated

LIVE = Liveness()  # the defaults: 1 s of silence, 3 probes 0.5 s apart, an idle probe every 20 s
VERDICT = LIVE.probe_tries * LIVE.probe_interval_s  # a probe's own time to fail


def bound(net: Net, client: TurnClient) -> None:
    client.open_peer(PEER, net.now)
    net.advance(net.now)
    assert any(isinstance(e, ChannelBound) for e in net.take_events(A))


def lost_at(net: Net, until: float, step: float, send: bool) -> tuple[float, TurnEvent] | None:
    """Advance in ``step``s (sending to PEER at each one when ``send``) up to ``until``: the time
    and event of the first AllocationLost, or None."""
    t = net.now
    while t < until:
        t = round(t + step, 6)
        net.advance(t)
        client = net.clients[A]
        if send and client.state is AllocationState.ALLOCATED:
            client.send(PEER, b"x", net.now)
            net.pump()
        for event in net.take_events(A):
            if isinstance(event, AllocationLost):
                return net.now, event
    return None


@pytest.mark.parametrize("stream", [False, True], ids=["udp", "stream"])
def test_silence_while_sending_probes_and_loses_the_allocation(stream: bool) -> None:
    net, client = allocated(stream=stream)
    bound(net, client)
    net.server.silent = True  # SIGKILLed behind a router: no answer, no ICMP
    start = net.now
    hit = lost_at(net, start + 60.0, 0.05, send=True)
    assert hit is not None, "a dead server went unnoticed for a minute of sending"
    at, event = hit
    assert isinstance(event, AllocationLost) and isinstance(event.error, TurnUnreachableError)
    # Found after the silence plus the probe's own verdict, not at the next refresh (540 s).
    assert start + LIVE.server_silence_s <= at <= start + LIVE.server_silence_s + VERDICT + 0.1
    assert client.counters.probes == 1
    assert client.state is AllocationState.FAILED
    refreshes = [
        d for _, d in net.to_server if stun.is_stun(d) and stun.decode(d).method is stun.Method.REFRESH
    ]
    assert len(refreshes) == (1 if stream else LIVE.probe_tries)  # streams retransmit themselves


def test_a_probe_answered_in_time_changes_nothing() -> None:
    # The peer never answers (a sink), so every send is unanswered data: the server is asked
    # again and again, answers every time, and the allocation stays.
    net, client = allocated()
    bound(net, client)
    assert lost_at(net, net.now + 60.0, 0.05, send=True) is None
    assert client.counters.probes >= 60.0 // (LIVE.server_silence_s + LIVE.probe_interval_s)
    assert client.state is AllocationState.ALLOCATED
    assert client.counters.refreshes == 0  # probes do not move the refresh schedule
    assert not net.server.dropped


def test_an_idle_allocation_is_probed_and_a_dead_server_found() -> None:
    net, client = allocated()
    start = net.now
    net.advance(start + LIVE.idle_probe_s + 1.0)
    assert client.counters.probes == 1 and net.take_events(A) == []
    net.server.silent = True
    hit = lost_at(net, start + 10 * LIVE.idle_probe_s, 1.0, send=False)
    assert hit is not None
    at, event = hit
    assert isinstance(event, AllocationLost) and isinstance(event.error, TurnUnreachableError)
    assert at <= start + 2 * LIVE.idle_probe_s + VERDICT + 1.0


def test_steady_two_way_traffic_never_probes() -> None:
    net, client = allocated()
    net.echo_peers.add(PEER)  # every datagram comes back through the server
    bound(net, client)
    assert lost_at(net, net.now + 120.0, 0.05, send=True) is None
    assert client.counters.probes == 0
    assert client.state is AllocationState.ALLOCATED


def test_a_server_that_answers_late_but_within_the_probe_keeps_the_allocation() -> None:
    net, client = allocated()
    bound(net, client)
    net.server.silent = True
    start = net.now + 0.1
    net.advance(start)
    client.send(PEER, b"x", net.now)
    net.advance(start + LIVE.server_silence_s + LIVE.probe_interval_s)  # the probe's 2nd send is out
    assert client.counters.probes == 1
    net.server.silent = False  # it comes back: the third send is answered
    net.advance(start + 30.0)
    assert client.state is AllocationState.ALLOCATED
    assert not [e for e in net.take_events(A) if isinstance(e, AllocationLost)]


def test_a_probe_can_be_asked_for_and_the_settings_are_checked() -> None:
    net, client = allocated()
    client.probe(net.now)
    client.probe(net.now)  # one at a time
    net.advance(net.now + 1.0)
    assert client.counters.probes == 1 and client.state is AllocationState.ALLOCATED
    for bad in (
        {"server_silence_s": 0.0},
        {"probe_interval_s": float("nan")},
        {"idle_probe_s": float("inf")},
        {"probe_tries": 0},
    ):
        with pytest.raises(TurnUsageError):
            Liveness(**bad)
