"""Peers, candidates and NAT profiles for the rendezvous tests."""

from __future__ import annotations

import ipaddress

from node.proto.natprobe.types import Behaviour, NatType, PortAllocation
from node.proto.punch.candidates import Candidate, CandidateKind
from node.proto.punch.plan import NatProfile


def peer(letter: str) -> str:
    return letter * 52


A, B, C = peer("a"), peer("b"), peer("c")
TOKEN = bytes(range(16))
HOST_A = (Candidate.of(CandidateKind.HOST, (ipaddress.IPv4Address("192.0.2.1"), 4000)),)
HOST_B = (
    Candidate.of(CandidateKind.HOST, (ipaddress.IPv6Address("2001:db8::2"), 5000)),
    Candidate.of(CandidateKind.SRFLX, (ipaddress.IPv4Address("198.51.100.2"), 6000)),
)
CONE = NatProfile(NatType.PORT_RESTRICTED)
SYMMETRIC = NatProfile(
    NatType.SYMMETRIC,
    Behaviour.ADDRESS_AND_PORT_DEPENDENT,
    Behaviour.ADDRESS_AND_PORT_DEPENDENT,
    PortAllocation.SEQUENTIAL,
    -2,
)


def token(n: int) -> bytes:
    return n.to_bytes(16, "big")
