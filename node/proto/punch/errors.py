"""Typed errors and reasons of hole punching (node.proto.punch).

``PunchError`` is the package's root. ``PunchDrop`` names every received check the agent does not
use; each is counted in ``PunchAgent.stats()`` and never raised out of ``receive_datagram`` (a
forged or stray datagram must not stop a punch). ``PunchMisuse`` is the caller's mistake, raised at
once. ``PunchFailure`` is why a punch ended without a direct path (an outcome, not an exception).
"""

from __future__ import annotations

import enum

from node.errors import LocalError, NodeError, ReasonError, RemoteError

__all__ = ["PunchDrop", "PunchError", "PunchFailure", "PunchMisuse", "PunchUsageError", "PunchWireError"]


class PunchError(NodeError):
    """Root of every error of the punching core."""


class PunchDrop(enum.Enum):
    """Why a received punch datagram was not used."""

    MALFORMED = "punch check truncated or of an unknown kind"
    UNKNOWN_TOKEN = "punch check carries a token of no punch of ours"
    REFLECTED = "punch check sent by our own side (hairpinned or looped back)"
    UNMATCHED = "answer to no outstanding check of ours (stale, duplicated or forged transaction id)"
    WRONG_SOCKET = "answer arrived on another socket than its check left from"
    ASYMMETRIC = "answer came from another address than its check went to (RFC 8445 §7.2.5.2.1)"
    TOO_MANY_PRFLX = "peer-reflexive candidate not learned: the cap on learned candidates is reached"


class PunchWireError(ReasonError[PunchDrop], PunchError, RemoteError):
    """A received punch datagram cannot be decoded."""


class PunchMisuse(enum.Enum):
    BAD_TOKEN = "token must be exactly 16 bytes"
    BAD_SOCKET = "socket index outside the sockets the agent was given"
    PAYLOAD_TOO_LARGE = "check payload longer than the maximum"
    NO_PATH = "the plan says relay: there is nothing to punch"
    BAD_TIMING = "timing values out of range"


class PunchUsageError(ReasonError[PunchMisuse], PunchError, LocalError):
    """The caller drove the punching core wrongly (our misuse)."""


class PunchFailure(enum.Enum):
    """Why a punch ended without a direct path."""

    NO_ANSWER = "no check was answered within the attempts"
    RELAY_ONLY = "the two NATs allow no direct path: relay"
    # The check payload is the sender's peer id: a nomination carrying another is not the peer we
    # punch for (a stranger who learned the token, or a mix-up). The session handshake on the
    # path is the real proof; this only refuses to start one with the wrong party.
    WRONG_PEER = "the nominated path's checks carry another peer id than the one expected"
