"""The rendezvous codec: round trips, strict decoding (any bytes: a message or
RendezvousWireError), each malformed case by its reason, and encoding refusing what cannot travel."""

from __future__ import annotations

import contextlib
import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.proto.natprobe.types import Behaviour, NatType, PortAllocation
from node.proto.punch.candidates import Candidate, CandidateKind
from node.proto.punch.plan import NatProfile
from node.proto.rendezvous import (
    MAX_CANDIDATES,
    MAX_MESSAGE,
    TYPE_RENDEZVOUS,
    Accept,
    Accepted,
    Decline,
    Introduce,
    Introduced,
    Message,
    Refusal,
    Refused,
    Register,
    Registered,
    RendezvousMisuse,
    RendezvousUsageError,
    RendezvousWireError,
    Sync,
    Synced,
    WireProblem,
    decode,
    encode,
)
from tests.unit.rendezvous.harness import CONE, HOST_A, HOST_B, SYMMETRIC, TOKEN, A, B

U32 = st.integers(0, 2**32 - 1)
PEERS = st.text("abcdefghijklmnopqrstuvwxyz234567", min_size=52, max_size=52)
TOKENS = st.binary(min_size=16, max_size=16)
IPS = st.one_of(
    st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
    st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
)
CANDIDATE = st.builds(Candidate, st.sampled_from(CandidateKind), st.tuples(IPS, st.integers(1, 65535)), U32)
CANDIDATES = st.lists(CANDIDATE, max_size=MAX_CANDIDATES).map(tuple)


def optional(values: type) -> st.SearchStrategy[object]:
    return st.one_of(st.none(), st.sampled_from(values))


NATS = st.builds(
    NatProfile,
    st.sampled_from(NatType),
    optional(Behaviour),
    optional(Behaviour),
    optional(PortAllocation),
    st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
)
MESSAGES: st.SearchStrategy[Message] = st.one_of(
    st.builds(Register, CANDIDATES, NATS),
    st.builds(Registered, U32),
    st.builds(Introduce, U32, PEERS, TOKENS, CANDIDATES, NATS),
    st.builds(Introduced, PEERS, TOKENS, CANDIDATES, NATS),
    st.builds(Accept, TOKENS, CANDIDATES, NATS),
    st.builds(Decline, TOKENS, st.sampled_from(Refusal)),
    st.builds(Accepted, U32, TOKENS, CANDIDATES, NATS),
    st.builds(Refused, U32, st.sampled_from(Refusal)),
    st.builds(Sync, TOKENS),
    st.builds(Synced, TOKENS),
)


@given(MESSAGES)
def test_round_trip(message: Message) -> None:
    raw = encode(message)
    assert raw[0] == TYPE_RENDEZVOUS
    assert len(raw) <= MAX_MESSAGE
    assert decode(raw) == message


@given(st.binary(max_size=600))
def test_any_bytes_decode_or_raise_wire_error(raw: bytes) -> None:
    with contextlib.suppress(RendezvousWireError):
        decode(raw)


@given(MESSAGES, st.data())
def test_mutated_messages_decode_or_raise_wire_error(message: Message, data: st.DataObject) -> None:
    raw = bytearray(encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    with contextlib.suppress(RendezvousWireError):
        decode(bytes(raw[:cut]) + data.draw(st.binary(max_size=8)))


def test_the_largest_message_fits_max_message() -> None:
    six = Candidate(CandidateKind.RELAY, (ipaddress.IPv6Address("2001:db8::1"), 1), 2**32 - 1)
    raw = encode(Introduce(2**32 - 1, A, TOKEN, (six,) * MAX_CANDIDATES, SYMMETRIC))
    assert len(raw) == 468 <= MAX_MESSAGE < 4096


def reason_of(raw: bytes) -> WireProblem:
    with pytest.raises(RendezvousWireError) as caught:
        decode(raw)
    return caught.value.reason


REGISTER = encode(Register(HOST_A, CONE))  # 3 1 | count | kind fam addr(4) port prio | nat(9)
SYNC = encode(Sync(TOKEN))
INTRODUCED = encode(Introduced(A, TOKEN, (), CONE))


def test_malformed_cases_each_raise_their_reason() -> None:
    assert reason_of(b"") is WireProblem.TRUNCATED
    assert reason_of(bytes([TYPE_RENDEZVOUS])) is WireProblem.TRUNCATED
    assert reason_of(SYNC[:-1]) is WireProblem.TRUNCATED
    assert reason_of(SYNC + b"\x00") is WireProblem.TRAILING_BYTES
    assert reason_of(bytes([1]) + SYNC[1:]) is WireProblem.NOT_RENDEZVOUS  # delivery's DATA
    assert reason_of(bytes([TYPE_RENDEZVOUS, 0]) + TOKEN) is WireProblem.UNKNOWN_SUBTYPE
    assert reason_of(bytes([TYPE_RENDEZVOUS, 11]) + TOKEN) is WireProblem.UNKNOWN_SUBTYPE
    assert reason_of(bytes(MAX_MESSAGE + 1)) is WireProblem.TOO_LARGE
    # A peer id with an upper-case letter, and one with a byte outside ASCII.
    assert reason_of(INTRODUCED[:2] + b"A" + INTRODUCED[3:]) is WireProblem.BAD_PEER_ID
    assert reason_of(INTRODUCED[:2] + b"\xff" + INTRODUCED[3:]) is WireProblem.BAD_PEER_ID
    assert reason_of(INTRODUCED[:2] + b"1" + INTRODUCED[3:]) is WireProblem.BAD_PEER_ID


def test_candidate_lists_are_checked() -> None:
    forged = bytes([TYPE_RENDEZVOUS, 1, MAX_CANDIDATES + 1]) + REGISTER[3:]
    assert reason_of(forged) is WireProblem.TOO_MANY_CANDIDATES
    # The count says 1, the message ends inside its candidate (no NAT follows either).
    assert reason_of(REGISTER[:10]) is WireProblem.TRUNCATED
    for at, value in ((3, 0), (3, 5), (4, 5), (4, 0)):  # kind code 0 and 5, family 5 and 0
        raw = bytearray(REGISTER)
        raw[at] = value
        assert reason_of(bytes(raw)) is WireProblem.BAD_CANDIDATE
    port0 = bytearray(REGISTER)
    port0[9:11] = b"\x00\x00"
    assert reason_of(bytes(port0)) is WireProblem.BAD_CANDIDATE


def test_nat_and_refusal_codes_are_checked() -> None:
    nat_at = len(REGISTER) - 9
    for offset, value in ((0, 0), (0, 8), (1, 4), (2, 4), (3, 4), (4, 2)):
        raw = bytearray(REGISTER)
        raw[nat_at + offset] = value
        assert reason_of(bytes(raw)) is WireProblem.BAD_ENUM, (offset, value)
    no_delta_but_bytes = REGISTER[:-4] + struct.pack(">i", 7)  # has_delta 0 with a delta
    assert reason_of(no_delta_but_bytes) is WireProblem.BAD_ENUM
    refused = encode(Refused(1, Refusal.SELF))
    for code in (0, 10, 255):
        assert reason_of(refused[:-1] + bytes([code])) is WireProblem.BAD_ENUM


def test_none_fields_and_deltas_round_trip() -> None:
    for nat in (CONE, SYMMETRIC, NatProfile(NatType.UNKNOWN, port_delta=0)):
        assert decode(encode(Accept(TOKEN, HOST_B, nat))) == Accept(TOKEN, HOST_B, nat)


@pytest.mark.parametrize(
    "message",
    [
        Register(HOST_A * (MAX_CANDIDATES + 1), CONE),
        Introduce(1, "not a peer id", TOKEN, (), CONE),
        Introduce(1, B, b"short", (), CONE),
        Refused(2**32, Refusal.SELF),
        Registered(-1),
        Accept(TOKEN, (Candidate(CandidateKind.HOST, (ipaddress.IPv4Address("192.0.2.1"), 0), 1),), CONE),
        Accept(TOKEN, (Candidate(CandidateKind.HOST, (ipaddress.IPv4Address("192.0.2.1"), 1), -1),), CONE),
        Accept(TOKEN, (), NatProfile(NatType.UNKNOWN, port_delta=2**31)),
    ],
)
def test_encode_refuses_what_the_wire_cannot_carry(message: Message) -> None:
    with pytest.raises(RendezvousUsageError) as caught:
        encode(message)
    assert caught.value.reason is RendezvousMisuse.CANNOT_ENCODE
