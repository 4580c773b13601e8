"""Typed errors and reasons of message fragmentation and reassembly (node.proto.datagram).

``FragmentDrop`` names every fragment or reassembly the reassembler drops; each is counted in
``Reassembler.stats().drops``. A fragment that is malformed or contradicts its own message also
raises ``FragmentError`` out of ``Reassembler.receive`` (after being counted), so a driver can log
one line for it; the rest (duplicates, refusals, expiry, eviction) are counted only.
"""

from __future__ import annotations

import enum

from node.errors import LocalError, ReasonError, RemoteError

__all__ = ["FragmentDrop", "FragmentError", "FragmentMisuse", "FragmentUsageError"]


class FragmentDrop(enum.Enum):
    """Why a fragment, or a whole reassembly, was dropped."""

    # One fragment, raised as FragmentError too; a reassembly of its message is dropped with it.
    TRUNCATED = "fragment shorter than the fragment header"
    RESERVED_BITS = "reserved flag bits set (a later format version?)"
    BAD_GEOMETRY = "fragment size, index or chunk size impossible for the message length it gives"
    TOO_LARGE = "message length above the reassembly maximum (max_message, or a sender's byte share)"
    INCONSISTENT = "length, chunk size or priority differ from the first fragment seen of the message"
    CONFLICTING_DUPLICATE = "a fragment index seen before, with other bytes"
    # One fragment, counted only.
    DUPLICATE = "a fragment already held, or of a message already delivered (ignored)"
    REFUSED_FULL = "new message refused: the caps are full and no other sender holds more"
    # One reassembly, counted only.
    EXPIRED = "no new fragment for max_age"
    EVICTED_OWN_SHARE = "dropped for a newer message of the same sender (over its share, or full)"
    EVICTED_FAIR_SHARE = "dropped for another sender's new message: its sender held the most"


class FragmentError(ReasonError[FragmentDrop], RemoteError):
    """A peer sent a fragment that is malformed or contradicts its message; it was dropped."""


class FragmentMisuse(enum.Enum):
    MESSAGE_TOO_LARGE = "message longer than the maximum"
    BUDGET_TOO_SMALL = "plaintext budget leaves less than the minimum fragment payload"
    BAD_MESSAGE_ID = "message id outside unsigned 64 bits"
    BAD_LIMITS = "reassembly limits out of range or inconsistent"


class FragmentUsageError(ReasonError[FragmentMisuse], LocalError):
    """The caller asked for something fragmentation cannot do (our misuse or configuration)."""
