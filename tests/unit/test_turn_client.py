"""The sans-IO TURN client against the TURN server model, in virtual time."""

from __future__ import annotations

import ipaddress

import pytest

from node.proto import stun
from node.proto.stun.transaction import Timing
from node.proto.turn.client import AllocationState, TurnClient, TurnTiming, refresh_after
from node.proto.turn.credentials import Credentials
from node.proto.turn.errors import (
    TurnAuthError,
    TurnFailure,
    TurnRefusedError,
    TurnTryAlternate,
    TurnUnreachableError,
    TurnUsageError,
)
from node.proto.turn.events import (
    Allocated,
    AllocationFailed,
    AllocationLost,
    AllocationRefreshed,
    ChannelBound,
    Closed,
    DataReceived,
    PermissionFailed,
    PermissionInstalled,
)
from node.proto.turn.liveness import Liveness
from tests.fakes.turn_net import Net
from tests.fakes.turn_server import TurnServerModel

A = (ipaddress.IPv4Address("203.0.113.21"), 40001)
B = (ipaddress.IPv4Address("203.0.113.22"), 40002)
PEER = (ipaddress.IPv4Address("192.0.2.7"), 7000)
PEER2 = (ipaddress.IPv4Address("192.0.2.8"), 7000)
GOOD = Credentials("alice", "wonderland")


def allocated(
    *, server: TurnServerModel | None = None, stream: bool = False, **kwargs: object
) -> tuple[Net, TurnClient]:
    net = Net(server or TurnServerModel())
    client = net.add(A, TurnClient(GOOD, stream=stream, **kwargs))  # type: ignore[arg-type]
    client.allocate(net.now)
    net.advance(net.now)
    events = net.take_events(A)
    assert isinstance(events[0], Allocated), events
    return net, client


def test_allocate_answers_the_401_challenge_with_long_term_credentials() -> None:
    net, client = allocated()
    assert net.server.requests[stun.Method.ALLOCATE] == 2  # unauthenticated, then with the key
    assert client.state is AllocationState.ALLOCATED
    assert client.relayed is not None and client.relayed[0] == net.server.relay_ip
    assert client.mapped == A
    assert client.lifetime == 600


def test_wrong_password_is_an_auth_error_after_two_allocate_requests() -> None:
    net = Net(TurnServerModel())
    client = net.add(A, TurnClient(Credentials("alice", "wrong")))
    client.allocate(0.0)
    net.advance(0.0)
    (event,) = net.take_events(A)
    assert isinstance(event, AllocationFailed)
    assert isinstance(event.error, TurnAuthError) and event.error.reason is TurnFailure.AUTH
    assert net.server.requests[stun.Method.ALLOCATE] == 2
    assert client.state is AllocationState.FAILED


def test_stale_nonce_on_allocate_is_retried_with_the_new_nonce() -> None:
    server = TurnServerModel()
    net = Net(server)
    client = net.add(A, TurnClient(GOOD))
    client.allocate(0.0)
    # The challenge is answered, but the nonce changes before the credentialed request arrives.
    (first,) = client.datagrams_to_send(0.0)
    (challenge,) = server.receive(first, A, server.primary, 0.0)
    client.receive(challenge.data, 0.0)
    server.rotate_nonce()  # the nonce of the challenge goes stale before the next request
    net.advance(0.0)
    assert isinstance(net.take_events(A)[0], Allocated)
    assert client.counters.stale_nonces == 1
    assert server.requests[stun.Method.ALLOCATE] == 3


def test_300_try_alternate_names_the_alternate_server() -> None:
    server = TurnServerModel()
    alt = stun.AlternateServer(ipaddress.IPv4Address("203.0.113.11"), 3478)
    server.fail(stun.Method.ALLOCATE, 300, alt)
    net = Net(server)
    client = net.add(A, TurnClient(GOOD))
    client.allocate(0.0)
    net.advance(0.0)
    (event,) = net.take_events(A)
    assert isinstance(event, AllocationFailed) and isinstance(event.error, TurnTryAlternate)
    assert event.error.alternate == (alt.ip, alt.port)


@pytest.mark.parametrize("code", [437, 486, 508, 403])
def test_refusals_are_typed_with_their_code(code: int) -> None:
    server = TurnServerModel()
    server.fail(stun.Method.ALLOCATE, code)  # for the credentialed request, after the 401
    net = Net(server)
    client = net.add(A, TurnClient(GOOD))
    client.allocate(0.0)
    net.advance(0.0)
    (event,) = net.take_events(A)
    assert isinstance(event, AllocationFailed)
    assert isinstance(event.error, TurnRefusedError) and event.error.code == code


def test_a_silent_server_is_unreachable_after_the_rfc_schedule() -> None:
    server = TurnServerModel()
    server.silent = True
    net = Net(server)
    client = net.add(A, TurnClient(GOOD))
    client.allocate(0.0)
    net.advance(39.4)
    assert net.take_events(A) == []
    net.advance(39.5)
    (event,) = net.take_events(A)
    assert isinstance(event, AllocationFailed) and isinstance(event.error, TurnUnreachableError)
    assert len(net.to_server) == 7  # Rc = 7 sends (RFC 8489 §6.2.1)


def test_two_hour_allocation_with_traffic_every_minute_loses_nothing() -> None:
    net, client = allocated()
    net.echo_peers.add(PEER)
    received: list[bytes] = []
    for minute in range(120):
        net.advance(minute * 60.0)
        client.send(PEER, f"m{minute}".encode(), net.now)
        net.pump()
        received += [e.data for e in net.take_events(A) if isinstance(e, DataReceived)]
    net.advance(7200.0)
    received += [e.data for e in net.take_events(A) if isinstance(e, DataReceived)]
    assert [d for _, d in net.inbox[PEER]] == [f"m{i}".encode() for i in range(120)]
    assert received == [f"m{i}".encode() for i in range(120)]
    assert not net.server.dropped
    assert client.state is AllocationState.ALLOCATED
    # Allocation refreshed every 540 s, the channel (and its permission) every 240 s.
    assert client.counters.refreshes == 7200 // 540
    assert client.counters.channel_requests == 1 + 7200 // 240
    assert client.counters.sent_channel_data == 119 and client.counters.sent_indications == 1


def test_an_idle_peer_loses_its_permission_and_gets_it_back_when_used_again() -> None:
    net, client = allocated()
    net.echo_peers.add(PEER)
    client.send(PEER, b"first", net.now)
    net.advance(1.0)
    permissions_before = client.counters.permission_requests + client.counters.channel_requests
    # Ten idle minutes, the allocation kept alive by its own refreshes.
    net.advance(601.0)
    assert client.counters.refreshes >= 1
    idle_renewals = client.counters.permission_requests + client.counters.channel_requests
    assert idle_renewals - permissions_before <= 1  # at most the refresh before it went idle
    client.send(PEER, b"again", net.now)
    net.advance(602.0)
    renewals = client.counters.permission_requests + client.counters.channel_requests
    assert renewals == idle_renewals + 1  # the permission (and channel) re-created
    assert [d for _, d in net.inbox[PEER]] == [b"first", b"again"]
    assert not net.server.dropped


def test_stale_nonce_in_the_middle_of_a_refresh() -> None:
    net, client = allocated(liveness=Liveness(idle_probe_s=1000.0))  # only the refresh asks
    net.advance(refresh_after(600) - 1)
    net.server.rotate_nonce()
    net.advance(refresh_after(600))
    events = net.take_events(A)
    assert [type(e) for e in events] == [AllocationRefreshed]
    assert client.counters.stale_nonces == 1
    assert net.server.requests[stun.Method.REFRESH] == 2
    net.advance(3 * 600)  # and it keeps going
    assert client.state is AllocationState.ALLOCATED
    assert net.server.allocations[A].expires > net.now


def test_send_indications_until_the_channel_is_bound_then_channel_data() -> None:
    net, client = allocated()
    net.echo_peers.add(PEER)
    client.send(PEER, b"queued", net.now)  # waits for the permission
    (request,) = client.datagrams_to_send(net.now)
    assert stun.decode(request).method is stun.Method.CREATE_PERMISSION
    net.send_to_server(A, request)
    net.advance(net.now)
    kinds = [type(e) for e in net.take_events(A)]
    assert PermissionInstalled in kinds and ChannelBound in kinds
    client.send(PEER, b"on the channel", net.now)
    net.pump()
    assert client.counters.sent_indications == 1 and client.counters.sent_channel_data == 1
    counters = client.counters
    assert counters.received_indications + counters.received_channel_data == 2
    assert [d for _, d in net.inbox[PEER]] == [b"queued", b"on the channel"]
    assert client.channel_of(PEER) == 0x4000


def test_data_indications_come_in_while_no_channel_is_bound() -> None:
    net, client = allocated(use_channels=False)
    net.echo_peers.add(PEER)
    for i in range(3):
        client.send(PEER, bytes([i]), net.now)
    net.advance(net.now + 1)
    data = [e for e in net.take_events(A) if isinstance(e, DataReceived)]
    assert [(e.peer, e.data, e.channel) for e in data] == [(PEER, bytes([i]), None) for i in range(3)]
    assert client.counters.received_indications == 3 and client.counters.sent_indications == 3


def test_two_clients_talk_through_their_relays() -> None:
    server = TurnServerModel()
    net = Net(server)
    a = net.add(A, TurnClient(GOOD))
    b = net.add(B, TurnClient(GOOD))
    a.allocate(0.0)
    b.allocate(0.0)
    net.advance(0.0)
    assert a.relayed is not None and b.relayed is not None
    net.take_events(A)
    net.take_events(B)
    b.open_peer(a.relayed, 0.0)  # B lets A's relay in before A sends
    net.advance(0.5)
    for i in range(100):
        a.send(b.relayed, i.to_bytes(2, "big"), net.now)
    net.advance(1.0)
    got = [e.data for e in net.take_events(B) if isinstance(e, DataReceived)]
    assert got == [i.to_bytes(2, "big") for i in range(100)]


def test_close_releases_the_allocation_with_lifetime_zero() -> None:
    net, client = allocated()
    client.close(net.now)
    net.advance(net.now + 1)
    assert [type(e) for e in net.take_events(A)] == [Closed]
    assert client.state is AllocationState.CLOSED
    assert A not in net.server.allocations
    assert net.server.requests[stun.Method.REFRESH] == 1


def test_responses_with_a_wrong_integrity_are_dropped() -> None:
    server = TurnServerModel()
    server.forge_integrity = True
    net = Net(server)
    client = net.add(A, TurnClient(GOOD))
    client.allocate(0.0)
    net.advance(40.0)
    (event,) = net.take_events(A)
    assert isinstance(event, AllocationFailed) and isinstance(event.error, TurnUnreachableError)
    assert client.counters.dropped_integrity == 7  # every answer to every retransmission


def test_an_unsigned_success_is_dropped() -> None:
    server = TurnServerModel()
    server.sign_responses = False
    net = Net(server)
    client = net.add(A, TurnClient(GOOD, timing=Timing(rto=0.1, rc=2, rm=2)))
    client.allocate(0.0)
    net.advance(1.0)
    (event,) = net.take_events(A)
    assert isinstance(event, AllocationFailed)
    assert client.counters.dropped_integrity == 2


def test_a_refresh_answered_437_loses_the_allocation() -> None:
    net, client = allocated()
    net.server.forget_everything()  # a server restart: the nonce changes, allocations are gone
    client.refresh(net.now)
    net.advance(net.now)
    (event,) = net.take_events(A)
    assert isinstance(event, AllocationLost) and event.error.code == 437
    assert client.counters.stale_nonces == 1


def test_an_unanswered_permission_loses_the_allocation() -> None:
    net, client = allocated()
    net.server.silent = True
    client.send(PEER, b"x", net.now)
    net.advance(net.now + 40)
    (event,) = net.take_events(A)
    assert isinstance(event, AllocationLost) and isinstance(event.error, TurnUnreachableError)


def test_a_refused_permission_drops_the_queue_and_says_so() -> None:
    net, client = allocated()
    net.server.fail(stun.Method.CREATE_PERMISSION, 403)
    client.send(PEER, b"x", net.now)
    client.send(PEER, b"y", net.now)
    net.advance(net.now)
    (event,) = net.take_events(A)
    assert isinstance(event, PermissionFailed) and event.peer == PEER
    assert client.counters.dropped_refused_peer == 2
    assert client.state is AllocationState.ALLOCATED


def test_a_refused_channel_keeps_the_peer_on_send_indications() -> None:
    net, client = allocated()
    net.echo_peers.add(PEER)
    net.server.fail(stun.Method.CHANNEL_BIND, 400)
    client.send(PEER, b"a", net.now)
    net.advance(net.now + 1)
    for _ in range(3):
        client.send(PEER, b"b", net.now)
    net.advance(net.now + 1)
    assert client.counters.sent_channel_data == 0 and client.counters.sent_indications == 4
    assert len(net.inbox[PEER]) == 4


def test_queue_is_bounded_while_the_permission_is_pending() -> None:
    net, client = allocated(max_queued_per_peer=3)
    for _ in range(5):
        client.send(PEER, b"x", net.now)
    assert client.counters.dropped_queue_full == 2


def test_misuse_is_a_local_error() -> None:
    client = TurnClient(GOOD)
    with pytest.raises(TurnUsageError):
        client.send(PEER, b"x", 0.0)
    client.allocate(0.0)
    with pytest.raises(TurnUsageError):
        client.allocate(0.0)
    with pytest.raises(TurnUsageError):
        TurnTiming(permission_lifetime=0)


def test_stream_mode_frames_and_pads_channel_data() -> None:
    net = Net(TurnServerModel())
    net.chunk = 1  # the server's bytes arrive one at a time
    client = net.add(A, TurnClient(GOOD, stream=True))
    client.allocate(0.0)
    net.advance(0.0)
    assert isinstance(net.take_events(A)[0], Allocated)
    net.echo_peers.add(PEER)
    client.send(PEER, b"abc", 0.0)
    net.advance(0.0)
    client.send(PEER, b"abcde", 0.0)
    sent = client.datagrams_to_send(0.0)
    assert sent == [stun.encode_channel_data(0x4000, b"abcde", pad=True)] and len(sent[0]) % 4 == 0
    net.send_to_server(A, sent[0])
    net.pump()
    data = [e.data for e in net.take_events(A) if isinstance(e, DataReceived)]
    assert data == [b"abc", b"abcde"]


def test_stream_framing_loss_loses_the_allocation() -> None:
    _, client = allocated(stream=True)
    client.receive(b"\xff" * 8, 1.0)
    assert client.state is AllocationState.FAILED
    assert isinstance(client.next_event(), AllocationLost)


def test_refresh_after_keeps_a_margin() -> None:
    assert refresh_after(600) == 540
    assert refresh_after(300) == 240
    assert refresh_after(10) == 5
