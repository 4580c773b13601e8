"""The TCP-TLS slot accounting on its own: the pending share, the per-source cap, refusals."""

from __future__ import annotations

import ipaddress

import pytest

from node.os_errors import os_reason
from node.proto.link.stream_link import CloseReason
from node.transports.tcp_tls.slots import InboundSlot, Refusal, SlotLimits, Slots, Source, source_of

A = source_of(ipaddress.ip_address("127.0.0.1"))
B = source_of(ipaddress.ip_address("127.0.0.2"))
C = source_of(ipaddress.ip_address("127.0.0.3"))


def admitted(slots: Slots, source: Source) -> InboundSlot:
    slot = slots.admit(source)
    assert isinstance(slot, InboundSlot), slot
    return slot


def test_one_source_holds_only_its_share_and_another_still_gets_in() -> None:
    slots = Slots(SlotLimits(max_connections=100, max_pending=32, max_pending_per_address=8))
    held = [slots.admit(A) for _ in range(150)]
    assert sum(isinstance(s, InboundSlot) for s in held) == 8
    assert held[8:] == [Refusal.TOO_MANY_PENDING_FROM_ADDRESS] * 142
    assert isinstance(slots.admit(B), InboundSlot)
    assert (slots.in_use, slots.pending) == (9, 9)


def test_the_pending_share_is_bounded_across_sources() -> None:
    slots = Slots(SlotLimits(max_connections=10, max_pending=3, max_pending_per_address=2))
    for source in (A, A, B):
        admitted(slots, source)
    assert slots.admit(C) is Refusal.TOO_MANY_PENDING
    assert slots.admit(A) is Refusal.TOO_MANY_PENDING_FROM_ADDRESS  # the more specific reason


def test_a_proven_peer_leaves_the_pending_share_and_is_not_capped_per_source() -> None:
    slots = Slots(SlotLimits(max_connections=6, max_pending=2, max_pending_per_address=1))
    for _ in range(6):  # six players behind one NAT, one handshake at a time
        admitted(slots, A).proven()
    assert (slots.in_use, slots.pending, slots.pending_from(A)) == (6, 0, 0)
    assert slots.admit(B) is Refusal.TOO_MANY_CONNECTIONS  # the total still bounds everyone
    assert not slots.take_outbound()


def test_release_gives_back_the_slot_and_the_pending_place_once() -> None:
    slots = Slots(SlotLimits(max_connections=2, max_pending=2, max_pending_per_address=1))
    slot = admitted(slots, A)
    assert slots.admit(A) is Refusal.TOO_MANY_PENDING_FROM_ADDRESS
    slot.release()
    slot.release()  # a second release (an error path after the finally) changes nothing
    assert (slots.in_use, slots.pending, slots.pending_from(A)) == (0, 0, 0)
    proven = admitted(slots, A)
    proven.proven()
    proven.proven()
    assert slots.pending == 0 and slots.in_use == 1
    proven.release()
    assert slots.in_use == 0


def test_outbound_dials_take_the_total_never_the_pending_share() -> None:
    slots = Slots(SlotLimits(max_connections=2, max_pending=1, max_pending_per_address=1))
    assert slots.take_outbound()
    assert slots.pending == 0
    admitted(slots, A)
    assert slots.admit(B) is Refusal.TOO_MANY_CONNECTIONS
    slots.release_outbound()
    assert slots.admit(B) is Refusal.TOO_MANY_PENDING


def test_refusals_told_inside_tls_are_bounded_in_total_and_per_source() -> None:
    slots = Slots(SlotLimits(max_pending_per_address=2, max_refusing=3))
    a1, a2 = slots.take_refusal(A), slots.take_refusal(A)
    assert a1 is not None and a2 is not None
    assert slots.take_refusal(A) is None  # this source's share of refusals is in use
    b1 = slots.take_refusal(B)
    assert b1 is not None
    assert slots.take_refusal(C) is None  # all refusals are in use
    a1.release()
    a1.release()
    assert slots.refusing == 2
    assert slots.take_refusal(C) is not None


@pytest.mark.parametrize(
    ("address", "same_as", "other"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1", "127.0.0.2"),  # IPv4 on a dual-stack listener
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff::7", "2001:db8:1:3::1"),  # one /64 is one source
    ],
)
def test_a_source_is_an_ipv4_address_or_an_ipv6_slash_64(address: str, same_as: str, other: str) -> None:
    source = source_of(ipaddress.ip_address(address))
    assert source == source_of(ipaddress.ip_address(same_as))
    assert source != source_of(ipaddress.ip_address(other))


def test_every_refusal_has_its_own_reason_on_the_wire() -> None:
    wire = {refusal.wire for refusal in Refusal}
    assert len(wire) == len(Refusal)
    assert Refusal.TOO_MANY_CONNECTIONS.wire is CloseReason.TOO_MANY_CONNECTIONS


@pytest.mark.parametrize(
    "exc", [ConnectionResetError(), ConnectionAbortedError(), BrokenPipeError(), TimeoutError(), OSError()]
)
def test_an_os_error_without_text_still_says_what_happened(exc: OSError) -> None:
    assert os_reason(exc).strip()


def test_an_os_error_with_text_keeps_it() -> None:
    assert os_reason(ConnectionRefusedError(111, "Connection refused")) == "Connection refused (ECONNREFUSED)"
