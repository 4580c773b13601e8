"""Drop reasons and typed errors of the BLE cores (bluez.proto).

Bad input from a link is never raised out of a core's ``receive``: it is a drop, counted by its
reason (``ChunkDrop``, ``MeshDrop``) in the core's ``stats()``. Errors are raised only for our own
misuse (``BleProtoUsageError``) and by the public frame parser (``MeshFrameError``), which the
router catches and counts.

The root is ``bluez.errors.BluezError``; importing it brings dbus_fast's error type along, the one
import here beyond node.errors and the standard library (no I/O comes with it).
"""

from __future__ import annotations

import enum

from bluez.errors import BluezError
from node.errors import LocalError, ReasonError, RemoteError

__all__ = ["BleProtoMisuse", "BleProtoUsageError", "ChunkDrop", "MeshDrop", "MeshFrameError"]


class ChunkDrop(enum.Enum):
    """Why a chunk, or a whole reassembly of a link datagram, was dropped."""

    # One chunk.
    TRUNCATED = "chunk shorter than its header (or a first chunk without its length)"
    BAD_LENGTH = "first chunk gives a datagram length of 0, or carries more bytes than that length"
    TOO_LARGE = "first chunk gives a datagram length above MAX_DATAGRAM"
    DUPLICATE = "first chunk repeats the number of the datagram started just before it"
    ORPHAN = "chunk of a datagram not in reassembly (its first chunk lost, refused or dropped)"
    NODE_FULL = "new datagram refused: the node's reassemblies are at their cap"
    BYTES_FULL = "new datagram refused: the node's reassembly bytes are at their cap"
    # One reassembly.
    OVERRUN = "a chunk carries more bytes than its datagram has left (a lost or repeated chunk)"
    SUPERSEDED = "a newer first chunk took its number: the sender moved on, so its end was lost"
    TOO_MANY = "oldest dropped for a new datagram: the link's reassemblies are at their cap"
    EXPIRED = "not complete within the reassembly lifetime"
    LINK_CLOSED = "the link closed with the datagram incomplete"


class MeshDrop(enum.Enum):
    """Why a mesh frame was not delivered nor relayed."""

    TRUNCATED = "frame shorter than its header"
    RESERVED_BITS = "reserved header bits set (a later format version?)"
    BAD_TTL = "TTL plus hop count above MAX_TTL"
    EMPTY = "frame carries no payload"
    SEEN = "message id already seen (a duplicate over another path)"
    OWN_FRAME = "frame from our own prefix came back"
    TTL_EXPIRED = "not ours and its TTL is 0: not relayed"
    NO_LINK = "not ours and no other link to relay it on"
    QUEUE_FULL = "relay queue full: the frame was not queued"
    LINK_GONE = "the link a queued relay was for closed before the relay delay ran out"


class MeshFrameError(ReasonError[MeshDrop], BluezError, RemoteError):
    """A mesh frame from a link is malformed; ``reason`` says how."""


class BleProtoMisuse(enum.Enum):
    DATAGRAM_TOO_LARGE = "datagram longer than MAX_DATAGRAM"
    EMPTY_DATAGRAM = "datagram of no bytes"
    BAD_MTU = "ATT MTU outside 23..517"
    BAD_PREFIX = "peer prefix of the wrong length"
    BAD_TTL = "TTL outside 0..MAX_TTL"
    BAD_LIMITS = "limits out of range"
    UNKNOWN_LINK = "link not added to the router"


class BleProtoUsageError(ReasonError[BleProtoMisuse], BluezError, LocalError):
    """The caller asked a BLE core for something it cannot do (our misuse)."""
