"""What the coordinator reports to its driver (the asyncio service): frozen data only."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from node.proto.breaker import BreakerState
from node.proto.coordinator.health import Health
from node.proto.coordinator.paths import PathKey, PathState
from node.proto.vocabulary import DisconnectReason, PeerId, Priority


class ChangeReason(enum.Enum):
    FIRST = "first"  # the peer had no active path
    REMOVED = "removed"  # the active path was removed (or fell out of use)
    FAILED = "failed"  # the active path failed: breaker open, consent lost, link down
    CRITICAL = "critical"  # the active path is critical and a healthier one exists
    PREDICTED = "predicted"  # the active path is projected to be critical within the horizon
    BETTER = "better"  # another path scored >= 10 % higher for the hold time
    DIRECT_UPGRADE = "direct_upgrade"  # a proven direct path replaced a relayed one after the hold


class Outcome(enum.Enum):
    ACKED = "acked"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class ActivePathChanged:
    """Traffic of ``priorities`` to ``peer`` moved from ``old`` to ``new`` (None: no path)."""

    peer: PeerId
    priorities: frozenset[Priority]
    old: PathKey | None
    new: PathKey | None
    reason: ChangeReason


@dataclass(frozen=True, slots=True)
class PathHealthChanged:
    peer: PeerId
    path: PathKey
    old: Health
    new: Health
    # What it was judged on (for the log): the measured class (``new`` is the worse of it and
    # the projection), the loss over the window, and how long something sent has waited
    # against the path's RTO.
    measured: Health = Health.OPTIMAL
    loss: float | None = None
    silent_s: float = 0.0
    rto_s: float = 0.0
    in_flight: int = 0


@dataclass(frozen=True, slots=True)
class TrialDue:
    """A breaker of ``path`` half-opened: one send or health check on it decides (a success
    closes the breaker, a loss re-opens it)."""

    peer: PeerId
    path: PathKey


@dataclass(frozen=True, slots=True)
class PathRemoved:
    peer: PeerId
    path: PathKey
    reason: DisconnectReason


CoordinatorEvent: TypeAlias = ActivePathChanged | PathHealthChanged | TrialDue | PathRemoved


@dataclass(frozen=True, slots=True)
class Choice:
    """Where to send one message: ``primary``, and for multipath priorities a second copy on
    ``extra`` (the receiver deduplicates)."""

    primary: PathKey
    extra: PathKey | None = None


@dataclass(frozen=True, slots=True)
class PathView:
    """One row of ``peers --json``'s ``paths``."""

    kind: str
    local: str | None
    endpoint: str
    state: PathState
    health: Health
    score: float  # at NORMAL priority
    rtt_ms: float | None
    loss: float | None
    breaker: BreakerState


@dataclass(frozen=True, slots=True)
class PeerView:
    peer: PeerId
    active: PathKey | None  # NORMAL priority's primary
    paths: tuple[PathView, ...]
