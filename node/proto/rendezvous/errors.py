"""Typed errors and reasons of the rendezvous core (node.proto.rendezvous).

``RendezvousError`` is the package's root. ``RendezvousWireError`` is a peer's malformed message
(a ``RemoteError``: the driver logs one line, counts it by ``reason`` and keeps the link).
``RendezvousUsageError`` is our own misuse, raised at once. ``Refusal`` is why an introduction did
not happen: it travels in ``Refused`` and ``Decline``. ``IntroducerDrop`` and ``ClientDrop`` name
each well-formed message a side does not use; they are counted in ``stats()``, never raised (one
misbehaving peer must not stop the introducer serving the others).
"""

from __future__ import annotations

import enum

from node.errors import LocalError, NodeError, ReasonError, RemoteError

__all__ = [
    "ClientDrop",
    "IntroducerDrop",
    "Refusal",
    "RendezvousError",
    "RendezvousMisuse",
    "RendezvousUsageError",
    "RendezvousWireError",
    "WireProblem",
]


class RendezvousError(NodeError):
    """Root of every error of the rendezvous core."""


class WireProblem(enum.Enum):
    TRUNCATED = "shorter than its fields"
    TOO_LARGE = "longer than the largest rendezvous message"
    NOT_RENDEZVOUS = "frame type is not TYPE_RENDEZVOUS"
    UNKNOWN_SUBTYPE = "unknown rendezvous message subtype"
    TOO_MANY_CANDIDATES = "more candidates than a list may hold"
    BAD_CANDIDATE = "candidate of an unknown kind or address family, or port 0"
    BAD_ENUM = "NAT profile or refusal code out of its table"
    BAD_PEER_ID = "not a peer id (52 lower-case base32 characters)"
    TRAILING_BYTES = "bytes after the last field"


class RendezvousWireError(ReasonError[WireProblem], RendezvousError, RemoteError):
    """A rendezvous message from a peer could not be decoded; it was dropped."""


class RendezvousMisuse(enum.Enum):
    CANNOT_ENCODE = "message has a field the wire format cannot carry"
    TOO_MANY_OUTSTANDING = "too many introductions awaiting an answer"
    BAD_TOKEN = "token must be exactly 16 bytes"
    DUPLICATE_TOKEN = "token already used by an introduction in progress"
    UNKNOWN_TOKEN = "no introduction in progress carries this token"
    BAD_LIMITS = "limits out of range"


class RendezvousUsageError(ReasonError[RendezvousMisuse], RendezvousError, LocalError):
    """The caller drove the rendezvous core wrongly (our misuse)."""


class Refusal(enum.Enum):
    """Why an introduction did not happen (sent to its requester in ``Refused``)."""

    UNKNOWN_PEER = "the target is not registered with the introducer (or its link went down)"
    NOT_REGISTERED = "the requester must register before it asks for introductions"
    TOO_MANY_REQUESTS = "introduce requests above the per-peer rate"
    TOO_MANY_PENDING = "too many introductions in progress"
    TOO_MANY_REGISTRATIONS = "the introducer holds as many registrations as it may"
    SELF = "a peer cannot be introduced to itself"
    DECLINED = "the target declined"
    TIMED_OUT = "no answer in time"
    NOT_SERVING = "this node does not serve rendezvous"


class IntroducerDrop(enum.Enum):
    """Why the introducer did not use a well-formed message (counted, never answered)."""

    NOT_FROM_CLIENT = "a message only the introducer sends, received from a client"
    UNKNOWN_TOKEN = "token of no introduction in progress (expired, finished or forged)"
    WRONG_PEER = "the introduction with this token belongs to other peers"
    OUT_OF_ORDER = "accept or decline after an answer, or sync before the accept"
    DUPLICATE_TOKEN = "introduce with a token already in progress"


class ClientDrop(enum.Enum):
    """Why a client did not use a well-formed message from its introducer (counted)."""

    NOT_FROM_INTRODUCER = "a message only clients send, received from the introducer"
    UNKNOWN_REQUEST = "answer to no outstanding request (timed out, answered or forged)"
    UNKNOWN_TOKEN = "synced for no introduction this side accepted"
    DUPLICATE_TOKEN = "introduced with a token already in progress here"
    TOO_MANY_PENDING = "introduced while as many introductions as allowed await a sync"
