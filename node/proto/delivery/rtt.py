"""The retransmission timeout from measured round trips (RFC 6298 §2).

Samples come only from messages sent once (Karn's rule, RFC 6298 §3): the sender checks that
before calling ``sample``. ``reset`` starts over when traffic moves to another path, as QUIC
does on migration (RFC 9000 §9.4): the old path's round trip says nothing about the new one.
"""

from __future__ import annotations

__all__ = ["RttEstimator"]

ALPHA = 1 / 8  # RFC 6298 §2.3
BETA = 1 / 4  # RFC 6298 §2.3
K = 4  # RFC 6298 §2.2
GRANULARITY_S = 0.001  # G in RFC 6298 §2.2: time here is a float, 1 ms is what matters


class RttEstimator:
    __slots__ = ("_ceiling", "_floor", "_initial", "rto", "rttvar", "srtt")

    def __init__(self, initial: float, floor: float, ceiling: float) -> None:
        self._initial = initial
        self._floor = floor
        self._ceiling = ceiling
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto = min(initial, ceiling)

    def reset(self) -> None:
        self.srtt = None
        self.rttvar = 0.0
        self.rto = min(self._initial, self._ceiling)

    def sample(self, rtt: float) -> None:
        rtt = max(rtt, 0.0)
        if self.srtt is None:  # RFC 6298 §2.2
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:  # RFC 6298 §2.3: RTTVAR first, with the old SRTT
            self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - rtt)
            self.srtt = (1 - ALPHA) * self.srtt + ALPHA * rtt
        rto = self.srtt + max(GRANULARITY_S, K * self.rttvar)
        self.rto = min(max(rto, self._floor), self._ceiling)  # RFC 6298 §2.4-2.5
