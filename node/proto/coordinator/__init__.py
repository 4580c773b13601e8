"""The coordinator's sans-IO core: per peer, the paths and their scores, and per message the
path(s) to send on (issue 15). The formula is in ``scoring``, the health classes in ``health``,
the switching rules in ``hysteresis``, the decision-matrix prior in ``prior``; ``table`` ties
them together behind ``Coordinator``. No sockets, asyncio or clock: every call takes ``now``.
"""

from node.proto.coordinator.errors import CoordinatorError, CoordinatorReason
from node.proto.coordinator.events import (
    ActivePathChanged,
    ChangeReason,
    Choice,
    CoordinatorEvent,
    Outcome,
    PathHealthChanged,
    PathRemoved,
    PathView,
    PeerView,
    TrialDue,
)
from node.proto.coordinator.health import Health
from node.proto.coordinator.paths import DownReason, PathKey, PathState, endpoint_text
from node.proto.coordinator.settings import CoordinatorSettings
from node.proto.coordinator.table import TICK_INTERVAL_S, Coordinator

__all__ = [
    "TICK_INTERVAL_S",
    "ActivePathChanged",
    "ChangeReason",
    "Choice",
    "Coordinator",
    "CoordinatorError",
    "CoordinatorEvent",
    "CoordinatorReason",
    "CoordinatorSettings",
    "DownReason",
    "Health",
    "Outcome",
    "PathHealthChanged",
    "PathKey",
    "PathRemoved",
    "PathState",
    "PathView",
    "PeerView",
    "TrialDue",
    "endpoint_text",
]
