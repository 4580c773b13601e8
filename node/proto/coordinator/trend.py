"""Least-squares trend of a series of (time, value) points, for predictive failover.

An ordinary least-squares line ``value = level + slope * (t - now)`` with the slope's standard
error. A trend counts only when the slope is significantly above zero (``slope - 2 se > 0``,
about 95 % one-sided for the sample sizes used here): a path with steady random loss has a
slope that wanders around zero and must not be demoted for it (no flapping under noise).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

# About a 95 % one-sided bound for the 20+ points a trend needs (t(0.95, 20) = 1.72; 2 is safer).
SIGNIFICANT_SE = 2.0


@dataclass(frozen=True, slots=True)
class Trend:
    level: float  # the fitted value at ``now``
    slope: float  # per second
    slope_se: float  # standard error of the slope
    points: int

    def rising(self) -> bool:
        return self.slope - SIGNIFICANT_SE * self.slope_se > 0.0

    def at(self, seconds_ahead: float) -> float:
        return self.level + self.slope * seconds_ahead


def fit(points: Iterable[tuple[float, float]], now: float) -> Trend | None:
    """The trend of ``points`` (time, value) seen from ``now``; None when fewer than three points
    or when every point has the same time (no line can be fitted)."""
    ts: list[float] = []
    vs: list[float] = []
    for t, v in points:
        ts.append(t)
        vs.append(v)
    n = len(ts)
    if n < 3:
        return None
    mt = math.fsum(ts) / n
    mv = math.fsum(vs) / n
    sxx = math.fsum((t - mt) ** 2 for t in ts)
    if sxx <= 0.0:
        return None
    sxy = math.fsum((t - mt) * (v - mv) for t, v in zip(ts, vs, strict=True))
    slope = sxy / sxx
    intercept = mv - slope * mt
    residual = math.fsum((v - (intercept + slope * t)) ** 2 for t, v in zip(ts, vs, strict=True))
    slope_se = math.sqrt(residual / (n - 2) / sxx)
    return Trend(level=intercept + slope * now, slope=slope, slope_se=slope_se, points=n)
