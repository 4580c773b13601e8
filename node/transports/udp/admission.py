"""The session table's ``admit_init`` hook on the node's UDP port: the cookie gate.

Two rules decide whether an INIT may cost a Diffie-Hellman (node.proto.session.cookie says how a
cookie works, WireGuard's paper §5.4.7 why):
- the ``CookieChecker``'s rate: above ``handshakes_per_second`` new handshakes, unproven sources
  get a cookie reply instead;
- the table's room: a responder session that never completes holds its slot for the session's
  ``responder_timeout`` (30 s), so the checker's burst alone could fill ``max_sessions`` with a
  flooder's half-open sessions and lock every real peer out for that long. Once half of the
  slots are half-open, only an INIT that returns a valid cookie (its source proved it receives
  there) is admitted; the others get a cookie.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from node.proto.session.cookie import CookieChecker, CookieCount, CookieDecision, Source

__all__ = ["CookieGate"]


class CookieGate:
    """``gate(init, addr, now)`` -> True (admit), False (drop) or bytes (the cookie reply)."""

    def __init__(self, checker: CookieChecker, half_open: Callable[[], int], max_half_open: int) -> None:
        self.checker = checker
        self._half_open = half_open
        self._max_half_open = max_half_open
        self.forced = 0  # cookies sent because the table's half-open share was full

    def __call__(self, init: bytes, addr: Hashable, now: float) -> bool | bytes:
        source: Source = addr  # type: ignore[assignment]  # asyncio's (host, port[, flow, scope])
        checker = self.checker
        validated = checker.counts[CookieCount.COOKIE_VALIDATED]
        decision = checker.check(init, source, now)
        if decision is CookieDecision.DROP:
            return False
        if decision is CookieDecision.PROCEED:
            proven = checker.counts[CookieCount.COOKIE_VALIDATED] > validated
            if proven or self._half_open() < self._max_half_open:
                return True
            self.forced += 1
        return checker.make_reply(init, source, now)
