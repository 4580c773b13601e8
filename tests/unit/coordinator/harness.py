"""Helpers for the coordinator's tests: peers, path keys, and traffic fed in virtual time."""

from __future__ import annotations

import random
from collections.abc import Callable

from node.proto.coordinator import Coordinator, CoordinatorEvent, Outcome, PathKey
from node.proto.vocabulary import TransportKind

PEER = "peer-a"
OTHER = "peer-b"
LAN = "198.51.100.2"
WIFI = "192.0.2.7"

UDP = PathKey(TransportKind.UDP, LAN, "203.0.113.10:7946")
TLS = PathKey(TransportKind.TCP_TLS, LAN, "203.0.113.10:7947")
TURN = PathKey(TransportKind.TURN, LAN, "203.0.113.10:7946 via 203.0.113.12:3478")
UDP_WIFI = PathKey(TransportKind.UDP, WIFI, "203.0.113.10:7946")


def feed(
    c: Coordinator,
    key: PathKey,
    start: float,
    end: float,
    *,
    peer: str = PEER,
    rate: float = 20.0,
    rtt: Callable[[float], float] = lambda t: 0.02,
    lost: Callable[[float], bool] = lambda t: False,
) -> None:
    """``rate`` messages a second on ``key`` from ``start`` to ``end``: each one's RTT sample, or
    its loss, recorded at its send time (the outcome's own delay does not matter here)."""
    n = round((end - start) * rate)
    for i in range(n):
        t = start + i / rate
        c.record_sent(peer, key, t)
        if lost(t):
            c.record_outcome(peer, key, Outcome.LOST, t)
        else:
            c.record_rtt(peer, key, rtt(t), t)
            c.record_outcome(peer, key, Outcome.ACKED, t)


def bernoulli(p: Callable[[float], float], seed: int) -> Callable[[float], bool]:
    """Loss with probability p(t), from a seeded generator: the same run every time."""
    rng = random.Random(seed)
    return lambda t: rng.random() < p(t)


def every_nth(n: int) -> Callable[[float], bool]:
    """Exactly one loss in every ``n`` messages."""
    count = 0

    def lost(t: float) -> bool:
        nonlocal count
        count += 1
        return count % n == 0

    return lost


def run(c: Coordinator, start: float, end: float, step: float = 0.1) -> list[tuple[float, CoordinatorEvent]]:
    """tick() every ``step`` from ``start`` to ``end``; the events with the time they came at."""
    out: list[tuple[float, CoordinatorEvent]] = []
    for i in range(round((end - start) / step) + 1):
        t = start + i * step
        out.extend((t, e) for e in c.tick(t))
    return out


Traffic = dict[PathKey, tuple[Callable[[float], float], Callable[[float], bool]]]


def simulate(
    c: Coordinator,
    start: float,
    end: float,
    traffic: Traffic,
    *,
    peer: str = PEER,
    step: float = 0.1,
    rate: float = 20.0,
) -> list[tuple[float, CoordinatorEvent]]:
    """Interleave: each ``step``, every path in ``traffic`` carries ``rate`` messages a second
    (``(rtt(t), lost(t))``), then the coordinator ticks."""
    out: list[tuple[float, CoordinatorEvent]] = []
    for i in range(round((end - start) / step)):
        t = start + i * step
        for key, (rtt, lost) in traffic.items():
            feed(c, key, t, t + step, peer=peer, rate=rate, rtt=rtt, lost=lost)
        out.extend((t + step, e) for e in c.tick(t + step))
    return out


def steady(rtt: float = 0.02) -> tuple[Callable[[float], float], Callable[[float], bool]]:
    return (lambda t: rtt, lambda t: False)
