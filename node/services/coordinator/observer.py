"""What the coordinator reports as it happens, for the node's metrics (node.services.node_metrics
implements it): a Protocol, so the coordinator needs nothing of Prometheus, and tests may pass
their own. ``NO_OBSERVER`` is the default: the coordinator runs the same without one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from node.proto.coordinator import PeerView
from node.proto.vocabulary import TransportKind


class CoordinatorObserver(Protocol):
    def failover(self) -> None:
        """A peer's traffic moved from one path to another (ActivePathChanged with old and new)."""

    def path_rtt(self, kind: TransportKind, seconds: float) -> None:
        """A health check measured a path's round trip."""

    def message_sent(self, kind: TransportKind) -> None:
        """A message (a resend included) left on a path of ``kind``."""

    def message_received(self, kind: TransportKind) -> None:
        """A message reached the inbox; it last arrived on a path of ``kind``."""

    def paths(self, peers: Sequence[PeerView]) -> None:
        """Every ``coordinator.metric_update_interval_s``: each peer's paths (breakers)."""


class _NoObserver:
    def failover(self) -> None:
        pass

    def path_rtt(self, kind: TransportKind, seconds: float) -> None:
        pass

    def message_sent(self, kind: TransportKind) -> None:
        pass

    def message_received(self, kind: TransportKind) -> None:
        pass

    def paths(self, peers: Sequence[PeerView]) -> None:
        pass


NO_OBSERVER: CoordinatorObserver = _NoObserver()
