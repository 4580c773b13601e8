"""What ``status --json`` shows under ``coordinator``: peers and their active paths, message
counts, failovers, the inbox depth and malformed delivery frames."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.proto.coordinator import PathKey


@dataclass(slots=True)
class Counters:
    """Running totals, kept by the service (a view copies them)."""

    sent: int = 0  # messages handed to a transport the first time (reliable and unreliable)
    received: int = 0  # messages put in the inbox
    acknowledged: int = 0
    resent: int = 0  # retransmissions of reliable messages (timeouts, failovers, probes)
    failed: int = 0  # reliable messages given up on
    failovers: int = 0  # a peer's traffic moved from one path to another
    malformed: int = 0  # delivery frames from authenticated peers that could not be used
    no_path: int = 0  # transmissions that found no usable path (reliable ones wait for a resend)
    stalled: int = 0  # sends whose path took nothing for the stall bound (the path was failed)


@dataclass(frozen=True, slots=True)
class PeerRow:
    peer: str
    active: PathKey | None
    paths: int


@dataclass(frozen=True, slots=True)
class CoordinatorView:
    peers: tuple[PeerRow, ...]
    counters: Counters  # a copy
    inbox: int

    def to_json(self) -> dict[str, Any]:
        c = self.counters
        return {
            "peers": [
                {
                    "peer_id": row.peer,
                    "active": None
                    if row.active is None
                    else {"kind": row.active.kind.value, "endpoint": row.active.remote},
                    "paths": row.paths,
                }
                for row in self.peers
            ],
            "messages": {
                "sent": c.sent,
                "received": c.received,
                "acknowledged": c.acknowledged,
                "resent": c.resent,
                "failed": c.failed,
            },
            "failovers": c.failovers,
            "stalled_sends": c.stalled,
            "inbox": self.inbox,
            "malformed": c.malformed,
        }
