"""Which path carries one priority class of one peer's traffic, and when that changes.

Rules (issue 15), evaluated on every ``update`` with the peer's in-use paths ranked best first:
- no active path yet, or it was removed: take the best usable path at once (a healthy one, i.e.
  better than CRITICAL, that has proven itself, before an unproven one (the matrix prior's pick),
  before a critical one);
- the active path FAILED: move at once, chosen the same way;
- the active path is CRITICAL, measured or projected, and a healthier path exists: move at once
  (the projected case is predictive failover: traffic leaves before the path gets there);
- otherwise a challenger (proven: it has carried an RTT or an acknowledgement; healthy) takes
  over only after it has qualified at every update for ``switch_hold_s``: by scoring at least
  ``1 + switch_margin`` times the active path's score, or, against a relayed active path, by being
  direct, at least GOOD (or as healthy as the relay) and within the margin below (relay capacity
  is shared and costs a hop, so a direct path of about the same worth is preferred). Noise that
  makes a path qualify now and then never moves traffic: each lapse restarts the hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from node.proto.coordinator.events import ChangeReason
from node.proto.coordinator.health import Health
from node.proto.coordinator.paths import PathKey
from node.proto.coordinator.settings import CoordinatorSettings

# Times are floats: 4.1 - 2.1 is 1.9999999999999996, and a hold of exactly 2 s must count.
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Candidate:
    key: PathKey
    score: float
    health: Health  # effective: the worse of measured and projected
    measured: Health
    proven: bool


@dataclass(frozen=True, slots=True)
class Switch:
    old: PathKey | None
    new: PathKey | None
    reason: ChangeReason


class ActiveSelector:
    def __init__(self) -> None:
        self.active: PathKey | None = None
        self._challenger: PathKey | None = None
        self._since = 0.0

    def update(self, ranked: Sequence[Candidate], now: float, settings: CoordinatorSettings) -> Switch | None:
        usable = [c for c in ranked if c.health > Health.FAILED]
        healthy = [c for c in usable if c.health > Health.CRITICAL]
        current = next((c for c in ranked if c.key == self.active), None)
        if current is None:
            if not usable:
                return self._move(None, ChangeReason.REMOVED) if self.active is not None else None
            reason = ChangeReason.FIRST if self.active is None else ChangeReason.REMOVED
            return self._move(_fallback(usable), reason)
        if current.health is Health.FAILED:
            return self._move(_fallback(usable) if usable else None, ChangeReason.FAILED)
        if current.health is Health.CRITICAL and healthy:
            reason = ChangeReason.CRITICAL if current.measured is Health.CRITICAL else ChangeReason.PREDICTED
            return self._move(_fallback(healthy), reason)
        for challenger in healthy:
            if challenger.key == current.key or not challenger.proven:
                continue
            why = _qualifies(challenger, current, settings)
            if why is None:
                continue
            if challenger.key != self._challenger:
                self._challenger, self._since = challenger.key, now
            if now - self._since >= settings.switch_hold_s - _EPSILON:
                return self._move(challenger.key, why)
            return None
        self._challenger = None
        return None

    def _move(self, new: PathKey | None, reason: ChangeReason) -> Switch:
        old, self.active, self._challenger = self.active, new, None
        return Switch(old, new, reason)


def _fallback(usable: Sequence[Candidate]) -> PathKey:
    """Where traffic goes when it must move now: the best healthy path that has proven itself,
    else the best healthy one (the prior's pick), else the best usable one."""
    for c in usable:
        if c.health > Health.CRITICAL and c.proven:
            return c.key
    for c in usable:
        if c.health > Health.CRITICAL:
            return c.key
    return usable[0].key


def _qualifies(
    challenger: Candidate, current: Candidate, settings: CoordinatorSettings
) -> ChangeReason | None:
    margin = 1.0 + settings.switch_margin
    if challenger.score >= current.score * margin:
        return ChangeReason.BETTER
    if (
        current.key.relayed
        and not challenger.key.relayed
        and challenger.health >= min(Health.GOOD, current.health)
        and challenger.score * margin >= current.score
    ):
        return ChangeReason.DIRECT_UPGRADE
    return None
