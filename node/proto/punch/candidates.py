"""Candidates (RFC 8445 §5.1.1) and their priorities (§5.1.2, §6.1.2.3).

A punch checks from a local socket (its base, §5.1.1.3: a server-reflexive candidate is checked
from its base, so local candidates reduce to socket indices) to each remote candidate. Relayed
candidates are listed so the exchange carries them, but are never checked here: the relay is the
path already in use while the punch runs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from node.proto.natprobe.types import Endpoint


class CandidateKind(enum.Enum):
    HOST = "host"
    SRFLX = "srflx"
    PRFLX = "prflx"
    RELAY = "relay"


# RFC 8445 §5.1.2.2 recommended type preferences.
TYPE_PREFERENCE = {
    CandidateKind.HOST: 126,
    CandidateKind.PRFLX: 110,
    CandidateKind.SRFLX: 100,
    CandidateKind.RELAY: 0,
}


def priority(kind: CandidateKind, local_preference: int = 65535, component: int = 1) -> int:
    """RFC 8445 §5.1.2.1: (2^24)*type + (2^8)*local preference + (256 - component)."""
    return (TYPE_PREFERENCE[kind] << 24) + (local_preference << 8) + (256 - component)


@dataclass(frozen=True, slots=True)
class Candidate:
    kind: CandidateKind
    address: Endpoint
    priority: int

    @classmethod
    def of(cls, kind: CandidateKind, address: Endpoint, local_preference: int = 65535) -> Candidate:
        return cls(kind, address, priority(kind, local_preference))

    @property
    def checkable(self) -> bool:
        return self.kind is not CandidateKind.RELAY


def pair_priority(controlling: int, controlled: int) -> int:
    """RFC 8445 §6.1.2.3: both ends compute the same number for a pair, so both check in the same
    order (the simultaneous open needs that)."""
    low, high = min(controlling, controlled), max(controlling, controlled)
    return (low << 32) + 2 * high + (1 if controlling > controlled else 0)


def ordered(remote: tuple[Candidate, ...], local_priority: int, controlling: bool) -> tuple[Candidate, ...]:
    """The checkable remote candidates, highest pair priority first, each address once."""
    seen: set[Endpoint] = set()
    out: list[Candidate] = []

    def key(c: Candidate) -> int:
        g, d = (local_priority, c.priority) if controlling else (c.priority, local_priority)
        return pair_priority(g, d)

    for candidate in sorted((c for c in remote if c.checkable), key=key, reverse=True):
        if candidate.address not in seen:
            seen.add(candidate.address)
            out.append(candidate)
    return tuple(out)
