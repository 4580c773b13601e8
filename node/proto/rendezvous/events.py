"""What a rendezvous client tells its driver (``RendezvousClient.receive`` and ``handle_timer``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from node.proto.punch.plan import NatProfile
from node.proto.rendezvous.errors import Refusal
from node.proto.rendezvous.messages import Accept, Candidates, Sync
from node.proto.vocabulary import PeerId

__all__ = ["Event", "Fire", "IntroduceRefused", "PunchAsA", "PunchAsB", "RegistrationRefused"]


@dataclass(frozen=True, slots=True)
class PunchAsA:
    """The target accepted: send ``sync`` to the introducer now, and start punching at ``fire_at``
    (half the measured round trip later, when the Sync reaches the target: DCUtR's timing)."""

    request: int
    peer: PeerId
    token: bytes
    candidates: Candidates
    nat: NatProfile
    fire_at: float
    sync: Sync
    rtt: float


@dataclass(frozen=True, slots=True)
class PunchAsB:
    """``peer`` asks for a punch: send ``accept`` to the introducer (or ``client.decline(token)``'s
    message instead), then wait for ``Fire``."""

    peer: PeerId
    token: bytes
    candidates: Candidates
    nat: NatProfile
    accept: Accept


@dataclass(frozen=True, slots=True)
class Fire:
    """The requester synced: start punching at ``at`` (now)."""

    token: bytes
    at: float
    peer: PeerId


@dataclass(frozen=True, slots=True)
class IntroduceRefused:
    request: int
    target: PeerId
    reason: Refusal


@dataclass(frozen=True, slots=True)
class RegistrationRefused:
    reason: Refusal


Event: TypeAlias = PunchAsA | PunchAsB | Fire | IntroduceRefused | RegistrationRefused
