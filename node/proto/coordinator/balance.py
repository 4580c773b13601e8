"""Load balancing over near-equal paths: smooth weighted round robin (nginx's upstream choice).

Each pick adds every path's weight to its running credit, takes the path with the most credit
and charges it the total. Over any run of picks each path's share matches its weight to within
one pick, with no randomness: a test can assert the exact sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

K = TypeVar("K")


class SmoothRoundRobin(Generic[K]):
    def __init__(self, weighted: Sequence[tuple[K, float]]) -> None:
        self.members = tuple(key for key, _ in weighted)
        self._weights = tuple(max(weight, 0.0) for _, weight in weighted)
        self._total = sum(self._weights)
        self._credit = [0.0] * len(self._weights)

    def pick(self) -> K:
        credit = self._credit
        best = 0
        for i, weight in enumerate(self._weights):
            credit[i] += weight
            if credit[i] > credit[best]:
                best = i
        credit[best] -= self._total
        return self.members[best]
