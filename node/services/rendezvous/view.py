"""``status --json``'s ``rendezvous``: whether this node introduces (and what its introducer
refused or dropped), its introducer links, and the traversals it ran."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from node.proto.rendezvous import IntroducerDrop, IntroducerStats, Refusal


class LinkState(enum.Enum):
    CONNECTING = "connecting"
    REGISTERED = "registered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class IntroducerView:
    uri: str
    state: LinkState
    peer_id: str | None
    detail: str | None  # why it failed last

    def to_json(self) -> dict[str, Any]:
        return {"uri": self.uri, "state": self.state.value, "peer_id": self.peer_id, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class TraversalCounts:
    attempts: int = 0
    direct: int = 0
    relay: int = 0
    failed: int = 0
    running: int = 0

    def to_json(self) -> dict[str, int]:
        return {
            "attempts": self.attempts,
            "direct": self.direct,
            "relay": self.relay,
            "failed": self.failed,
            "running": self.running,
        }


@dataclass(frozen=True, slots=True)
class IntroducerCounts:
    """The introducer's side (``[rendezvous] serve``): what it holds, refused and dropped."""

    registered_peers: int
    pending: int  # introductions awaiting an answer or a Sync
    introductions: int
    refusals: tuple[tuple[Refusal, int], ...]  # Refused sent, by reason
    drops: tuple[tuple[IntroducerDrop, int], ...]  # client messages not used, by reason

    @classmethod
    def of(cls, stats: IntroducerStats) -> IntroducerCounts:
        return cls(stats.registered_peers, stats.pending, stats.introductions, stats.refusals, stats.drops)

    def to_json(self) -> dict[str, Any]:
        return {
            "registered_peers": self.registered_peers,
            "pending": self.pending,
            "introductions": self.introductions,
            "refusals": {reason.name.lower(): n for reason, n in self.refusals},
            "drops": {reason.name.lower(): n for reason, n in self.drops},
        }


@dataclass(frozen=True, slots=True)
class RendezvousView:
    serve: bool
    registered_peers: int
    introducers: tuple[IntroducerView, ...]
    traversals: TraversalCounts
    dropped: int  # rendezvous frames not used (malformed, unexpected, over a bound)
    faults: dict[str, int]  # bugs contained at the service's wall, by exception type
    introducer: IntroducerCounts | None = None  # None unless this node serves

    def to_json(self) -> dict[str, Any]:
        return {
            "serve": self.serve,
            "registered_peers": self.registered_peers,
            "introducers": [i.to_json() for i in self.introducers],
            "traversals": self.traversals.to_json(),
            "dropped": self.dropped,
            "faults": dict(self.faults),
            "introducer": None if self.introducer is None else self.introducer.to_json(),
        }
