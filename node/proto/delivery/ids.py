"""Message ids: unique per sending node across priority classes and restarts.

An id is (epoch, priority class, sequence). The epoch is a random 64-bit number drawn for each
sending stream (one per destination peer, and again after the stream broke), so a restarted
node, or a stream begun again, never reuses an id the receiver still remembers: the receiver keeps
its duplicate state per (sender peer, epoch, class). With 64 random bits two epochs of one sender
collide with probability about n^2 / 2^65 (birthday bound): negligible for any number of restarts
a node will see. Reliable and unreliable messages count in separate sequence spaces (the
``reliable`` field), so a lost unreliable message never leaves a hole in the ordered stream.
"""

from __future__ import annotations

import secrets
from typing import NamedTuple

from node.proto.vocabulary import Priority

__all__ = ["EPOCH_BITS", "MessageId", "new_epoch"]

EPOCH_BITS = 64
# ``Priority.name.lower()`` per class, by value: an enum's ``name`` is a property lookup, and
# ``str`` runs for every message delivered.
_CLASS_NAMES = tuple(p.name.lower() for p in Priority)


def new_epoch() -> int:
    """A fresh random epoch (the default epoch source of a ``PeerSender``)."""
    return secrets.randbits(EPOCH_BITS)


class MessageId(NamedTuple):
    """A tuple, not a dataclass: the id keys several dicts per message (in flight, awaited,
    held), and a tuple's hash and equality run in C (a frozen dataclass's are Python calls)."""

    epoch: int
    priority: Priority
    sequence: int
    reliable: bool = True

    def __str__(self) -> str:
        # The form `listen` shows: the same text for the same message on both nodes.
        kind = "r" if self.reliable else "u"
        return f"{self.epoch:016x}-{_CLASS_NAMES[self.priority]}-{kind}{self.sequence}"
