"""The virtual NAT's mapping timeout (RFC 4787 §4.3): refreshed by outbound packets only,
never by default."""

from __future__ import annotations

import ipaddress

from tests.fakes.vnat import Allocation, Filtering, Mapping, VirtualNat

IP = ipaddress.IPv4Address
HOST = (IP("198.18.1.2"), 5000)
PEER = (IP("203.0.113.40"), 7000)
WAN = IP("203.0.113.21")


def test_a_mapping_expires_after_the_timeout_without_outbound_traffic() -> None:
    nat = VirtualNat(WAN, timeout=30.0)
    out = nat.outbound(HOST, PEER, now=0.0)
    assert out is not None
    assert nat.inbound(PEER, out, now=29.0) == HOST  # inbound does not refresh it
    assert nat.inbound(PEER, out, now=31.0) is None
    assert nat.mappings == 0


def test_outbound_traffic_keeps_a_mapping_and_a_new_one_after_expiry_may_differ() -> None:
    nat = VirtualNat(
        WAN,
        Mapping.ADDRESS_AND_PORT_DEPENDENT,
        Filtering.ADDRESS_AND_PORT_DEPENDENT,
        Allocation.SEQUENTIAL,
        timeout=30.0,
    )
    first = nat.outbound(HOST, PEER, now=0.0)
    assert nat.outbound(HOST, PEER, now=25.0) == first
    assert nat.inbound(PEER, first, now=50.0) == HOST  # type: ignore[arg-type]
    later = nat.outbound(HOST, PEER, now=60.0)
    assert later is not None and later != first  # the old mapping is gone, a new port is handed out


def test_without_a_timeout_mappings_never_expire() -> None:
    nat = VirtualNat(WAN)
    out = nat.outbound(HOST, PEER)
    assert out is not None and nat.inbound(PEER, out, now=1e9) == HOST
