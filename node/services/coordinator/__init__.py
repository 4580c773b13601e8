"""The coordinator service (issue 15): every transport's events, the choice of path for every
message (node.proto.coordinator), exactly-once delivery (node.proto.delivery), the inbox and the
in-process application API (``NodeApi``).

service.py drives the cores; carriers.py adapts each transport; paths.py names a peer's path per
transport; outbound.py is one peer's sending half; inbox.py and peer_events.py hand out what
arrives; dialing.py resolves and backs off; api.py is the application's view; status.py is
``status --json``'s ``coordinator``.
"""

from node.services.coordinator.api import NodeApi
from node.services.coordinator.errors import ApiError, ApiReason, ApiUsageError, PeerUnreachableError
from node.services.coordinator.observer import CoordinatorObserver
from node.services.coordinator.records import (
    Connected,
    InboundMessage,
    PathMethod,
    PeerEvent,
    PeerState,
    Sent,
    Traversal,
    TraversalOutcome,
)
from node.services.coordinator.service import CoordinatorService
from node.services.coordinator.status import CoordinatorView

__all__ = [
    "ApiError",
    "ApiReason",
    "ApiUsageError",
    "Connected",
    "CoordinatorObserver",
    "CoordinatorService",
    "CoordinatorView",
    "InboundMessage",
    "NodeApi",
    "PathMethod",
    "PeerEvent",
    "PeerState",
    "PeerUnreachableError",
    "Sent",
    "Traversal",
    "TraversalOutcome",
]
