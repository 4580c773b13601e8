"""Where the hard side's next mapping may be: the predicted window (sequential allocation) and the
birthday probes (random allocation).

Prediction (RFC 4787 §4.2.2 sequential allocation): a NAT that hands out ports by a constant step
gives the hard side's next mappings at ``last + step * i``; the easy side probes a window of them.

Birthday: the hard side holds ``n`` fresh mappings towards the easy side; each random probe of the
easy side hits one with probability n / 64512. With n = 256 and 2048 probes the chance to miss is
(1 - 256/64512)^2048, about 3e-4 on an ideal network; the lab measured 23 of 25 runs, median 152
probes (DESIGN.md "The NAT lab").
"""

from __future__ import annotations

import random

LOW_PORT = 1024  # NATs allocate outside the well-known ports
PORTS = 65536 - LOW_PORT


def _wrap(port: int) -> int:
    return LOW_PORT + (port - LOW_PORT) % PORTS


def predicted_ports(last: int, step: int, window: int) -> tuple[int, ...]:
    """The ``window`` ports after ``last`` by ``step``, nearest first."""
    return tuple(_wrap(last + step * i) for i in range(1, window + 1))


def birthday_ports(rng: random.Random, count: int) -> tuple[int, ...]:
    """``count`` distinct random ports, drawn from ``rng`` (seeded by the caller: deterministic)."""
    return tuple(rng.sample(range(LOW_PORT, 65536), min(count, PORTS)))
