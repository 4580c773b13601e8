"""Earliest deadline first over many keys (the session table's timers): a heap with lazy deletion.

Each key has at most one live deadline. Moving a key's deadline later keeps the earlier one: the
owner is woken a little early and sets the new deadline then. So a deadline that every datagram
pushes back (consent freshness, keepalive) costs a dict lookup, not a heap push, and the heap holds
few stale entries; when it holds more than twice the live ones it is rebuilt from them.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Deadlines"]

K = TypeVar("K", bound=Hashable)

_SLACK = 64  # stale heap entries tolerated before a rebuild is even considered


class Deadlines(Generic[K]):
    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._live: dict[K, tuple[float, int]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def set(self, key: K, deadline: float | None) -> None:
        """Wake ``key`` at ``deadline`` (None: never), or earlier if it already had an earlier one."""
        if deadline is None:
            self._live.pop(key, None)
            return
        current = self._live.get(key)
        if current is not None and current[0] <= deadline:
            return
        seq = next(self._seq)
        self._live[key] = (deadline, seq)
        heapq.heappush(self._heap, (deadline, seq, key))
        if len(self._heap) > 2 * len(self._live) + _SLACK:
            self._heap = [(d, s, k) for k, (d, s) in self._live.items()]
            heapq.heapify(self._heap)

    def discard(self, key: K) -> None:
        self._live.pop(key, None)

    def earliest(self) -> float | None:
        heap = self._heap
        while heap and self._live.get(heap[0][2]) != heap[0][:2]:
            heapq.heappop(heap)  # stale: moved earlier since, or discarded
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[K]:
        """The keys whose deadline is at or before ``now``, earliest first; they have none after."""
        due: list[K] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, seq, key = heapq.heappop(heap)
            if self._live.get(key) == (deadline, seq):
                del self._live[key]
                due.append(key)
        return due
