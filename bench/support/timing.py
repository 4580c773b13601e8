"""Side-by-side timing for the in-process benchmarks: each side's rate in alternating rounds
(ours, theirs, theirs, ours, ...) so a slow stretch of this shared machine lands on both sides,
and the median of each side's rounds.

Lives in a subdirectory so CI's ``for b in bench/*.py`` does not run it as a benchmark; the
scripts import it as ``support.timing`` (``python bench/x.py`` puts bench/ on ``sys.path``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping


def rate(func: Callable[[], None], iterations: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Calls of ``func`` per second of ``clock``."""
    start = clock()
    for _ in range(iterations):
        func()
    return iterations / (clock() - start)


def interleaved_medians(
    sides: Mapping[str, Callable[[], None]],
    iterations: int,
    rounds: int,
    *,
    warm_up: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Each side's median rate over ``rounds`` rounds of ``iterations`` calls, the sides' order
    reversed every other round, after ``warm_up`` calls of each."""
    for func in sides.values():
        rate(func, warm_up, clock)
    rates: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            rates[name].append(rate(sides[name], iterations, clock))
    return {name: statistics.median(values) for name, values in rates.items()}
