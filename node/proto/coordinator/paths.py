"""Path identity: one way to reach one peer (kind, local address, remote endpoint as text)."""

from __future__ import annotations

import enum
from typing import NamedTuple

from node.proto.vocabulary import BleEndpoint, Endpoint, IpEndpoint, RelayEndpoint, TransportKind


def endpoint_text(endpoint: Endpoint) -> str:
    """``H:P`` for an IP endpoint, ``PEER via SERVER`` through a TURN relay, the device address
    for BLE: what ``peers --json`` shows as ``endpoint``."""
    if isinstance(endpoint, IpEndpoint):
        return str(endpoint)
    if isinstance(endpoint, RelayEndpoint):
        return f"{endpoint.peer} via {endpoint.server}"
    assert isinstance(endpoint, BleEndpoint)
    return endpoint.address


class PathKey(NamedTuple):
    """A tuple for the same reason as MessageId: it keys the per-message bookkeeping. Never
    order PathKeys as tuples (TransportKind is not ordered): ``sort_key`` is the order."""

    kind: TransportKind
    local: str | None  # the local address the path leaves from (None: any / not known)
    remote: str  # endpoint_text() of the remote endpoint

    @classmethod
    def of(cls, kind: TransportKind, local: str | None, remote: Endpoint) -> PathKey:
        return cls(kind, local, endpoint_text(remote))

    @property
    def relayed(self) -> bool:
        """A TURN path costs relay capacity and an extra hop; every other kind is direct."""
        return self.kind is TransportKind.TURN

    def sort_key(self) -> tuple[str, str, str]:
        """A total order for deterministic ties (TransportKind itself is not ordered)."""
        return (self.kind.value, self.local or "", self.remote)


class PathState(enum.Enum):
    """A path's role for its peer, as ``peers --json`` shows it."""

    ACTIVE = "active"  # the primary for normal-priority traffic
    STANDBY = "standby"  # in use (one of max_transports_per_peer), not the primary
    IDLE = "idle"  # known, beyond max_transports_per_peer
    FAILED = "failed"  # health FAILED


class DownReason(enum.Enum):
    """Why the service declared a path failed (cleared by the next proof of life)."""

    CONSENT_LOST = "consent_lost"  # RFC 7675 §5.1: no consent for 30 s
    DISCONNECTED = "disconnected"  # the transport reported the peer gone
    NO_ACKS = "no_acks"  # the delivery core saw acknowledgements stop
    STALLED = "stalled"  # a send waited on the path's backpressure and nothing drained
    LINK_DOWN = "link_down"  # the link monitor: carrier or address gone on the local side
