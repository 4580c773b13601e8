"""The coordinator's typed errors: all of them are the caller's misuse (an unknown peer or path,
settings out of range) or a fact the caller must handle (no usable path to a peer)."""

from __future__ import annotations

import enum

from node.errors import LocalError, ReasonError


class CoordinatorReason(enum.Enum):
    BAD_SETTINGS = "bad coordinator settings"
    UNKNOWN_PEER = "unknown peer"
    UNKNOWN_PATH = "unknown path"
    NO_PATH = "no usable path"


class CoordinatorError(ReasonError[CoordinatorReason], LocalError):
    """``reason`` says which; ``detail`` names the peer or path."""
