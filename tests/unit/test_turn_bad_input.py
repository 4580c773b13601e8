"""A malicious or broken TURN server never crashes the client: typed errors or counted drops."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from node.proto import stun
from node.proto.turn.client import AllocationState, TurnClient
from node.proto.turn.credentials import Credentials
from node.proto.turn.errors import TurnProtocolError
from node.proto.turn.events import Allocated, AllocationFailed
from tests.fakes.turn_net import Net
from tests.fakes.turn_server import TurnServerModel

A = (ipaddress.IPv4Address("203.0.113.21"), 40001)
PEER = (ipaddress.IPv4Address("192.0.2.7"), 7000)
GOOD = Credentials("alice", "wonderland")
REALM = "model.test"
KEY = stun.long_term_key("alice", REALM, "wonderland")


def challenged(*, stream: bool = False) -> tuple[TurnClient, bytes]:
    """A client whose credentialed Allocate is outstanding; returns it and that request's id."""
    client = TurnClient(GOOD, stream=stream)
    client.allocate(0.0)
    (first,) = client.datagrams_to_send(0.0)
    tid = stun.decode(first).transaction_id
    challenge = stun.Message(
        stun.Method.ALLOCATE,
        stun.MessageClass.ERROR,
        tid,
        (stun.ErrorCodeAttr(401, "Unauthorized"), stun.Realm(REALM), stun.Nonce("n")),
    )
    client.receive(stun.encode(challenge), 0.0)
    (second,) = client.datagrams_to_send(0.0)
    return client, stun.decode(second).transaction_id


def allocated(*, stream: bool = False) -> TurnClient:
    net = Net(TurnServerModel())
    client = net.add(A, TurnClient(GOOD, stream=stream))
    client.allocate(0.0)
    net.advance(0.0)
    assert isinstance(client.next_event() or net.take_events(A)[0], Allocated)
    return client


def clients_in_every_state() -> list[TurnClient]:
    idle = TurnClient(GOOD)
    allocating, _ = challenged()
    ready = allocated()
    closing = allocated()
    closing.close(0.0)
    streaming = allocated(stream=True)
    return [idle, allocating, ready, closing, streaming]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=6))
def test_random_bytes_never_raise_in_any_state(chunks: list[bytes]) -> None:
    for client in clients_in_every_state():
        for chunk in chunks:
            client.receive(chunk, 1.0)
        client.handle_timer(2.0)
        client.datagrams_to_send(2.0)
        while client.next_event() is not None:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_random_attribute_bodies_in_a_signed_success_never_raise(body: bytes) -> None:
    client, tid = challenged()
    body = body + b"\x00" * (-len(body) & 3)
    raw = struct.pack("!HHI12s", 0x0103, len(body), stun.MAGIC_COOKIE, tid) + body
    client.receive(raw, 0.0)
    client.handle_timer(100.0)
    while client.next_event() is not None:
        pass
    assert client.state in (AllocationState.ALLOCATING, AllocationState.FAILED, AllocationState.ALLOCATED)


def test_an_attribute_longer_than_its_message_is_a_counted_drop() -> None:
    client, tid = challenged()
    raw = struct.pack("!HHI12sHH", 0x0103, 4, stun.MAGIC_COOKIE, tid, 0x0016, 0xFFF0)
    client.receive(raw, 0.0)
    assert client.counters.dropped_malformed == 1
    assert client.state is AllocationState.ALLOCATING


def test_a_success_with_an_unknown_comprehension_required_attribute_fails_the_allocation() -> None:
    client, tid = challenged()
    reply = stun.Message(
        stun.Method.ALLOCATE,
        stun.MessageClass.SUCCESS,
        tid,
        (
            stun.XorRelayedAddress(ipaddress.IPv4Address("198.51.100.1"), 50000),
            stun.Lifetime(600),
            stun.UnknownAttribute(0x7F01, b"????"),
        ),
    )
    client.receive(stun.encode(reply, key=KEY), 0.0)
    event = client.next_event()
    assert isinstance(event, AllocationFailed) and isinstance(event.error, TurnProtocolError)


def test_a_success_without_a_relayed_address_is_a_protocol_error() -> None:
    client, tid = challenged()
    reply = stun.Message(stun.Method.ALLOCATE, stun.MessageClass.SUCCESS, tid, (stun.Lifetime(600),))
    client.receive(stun.encode(reply, key=KEY), 0.0)
    event = client.next_event()
    assert isinstance(event, AllocationFailed) and isinstance(event.error, TurnProtocolError)


def test_a_success_signed_with_another_key_is_dropped() -> None:
    client, tid = challenged()
    reply = stun.Message(
        stun.Method.ALLOCATE,
        stun.MessageClass.SUCCESS,
        tid,
        (stun.XorRelayedAddress(ipaddress.IPv4Address("198.51.100.1"), 50000), stun.Lifetime(600)),
    )
    client.receive(stun.encode(reply, key=b"k" * 16), 0.0)
    assert client.counters.dropped_integrity == 1 and client.next_event() is None


def test_a_401_without_realm_is_a_protocol_error() -> None:
    client = TurnClient(GOOD)
    client.allocate(0.0)
    tid = stun.decode(client.datagrams_to_send(0.0)[0]).transaction_id
    reply = stun.Message(stun.Method.ALLOCATE, stun.MessageClass.ERROR, tid, (stun.ErrorCodeAttr(401, "x"),))
    client.receive(stun.encode(reply), 0.0)
    event = client.next_event()
    assert isinstance(event, AllocationFailed) and isinstance(event.error, TurnProtocolError)


def test_responses_to_nothing_and_requests_from_the_server_are_dropped() -> None:
    client, _ = challenged()
    other = stun.Message(stun.Method.ALLOCATE, stun.MessageClass.SUCCESS, b"\x09" * 12)
    client.receive(stun.encode(other), 0.0)
    request = stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, b"\x08" * 12)
    client.receive(stun.encode(request), 0.0)
    assert client.counters.dropped_unmatched == 2


def test_channel_data_for_an_unbound_channel_is_dropped() -> None:
    client = allocated()
    client.receive(stun.encode_channel_data(0x4ABC, b"sneaky"), 1.0)
    client.receive(b"\x40\x00\xff\xff", 1.0)  # length beyond the datagram
    assert client.counters.dropped_unknown_channel == 1
    assert client.counters.dropped_malformed == 1
    assert client.next_event() is None


def test_a_data_indication_without_data_is_dropped() -> None:
    client = allocated()
    indication = stun.Message(
        stun.Method.DATA,
        stun.MessageClass.INDICATION,
        b"\x01" * 12,
        (stun.XorPeerAddress(PEER[0], PEER[1]),),
    )
    client.receive(stun.encode(indication), 1.0)
    assert client.counters.dropped_malformed == 1 and client.next_event() is None


def test_an_oversized_stream_frame_breaks_only_this_connection() -> None:
    client = allocated(stream=True)
    client.receive(b"\x40\x00\xff\xff" + b"\x00" * 200_000, 1.0)  # past the 128 KiB cap
    assert client.state is AllocationState.FAILED
