"""Which TURN server to try next: the configured ones in order, each behind its own circuit
breaker (DESIGN.md: a breaker per server), plus a one-shot alternate from a 300 Try Alternate
(RFC 8489 §10). Sans-IO: every call takes ``now``."""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence
from typing import Generic, TypeVar

from node.proto.breaker import BreakerFactory, BreakerState
from node.proto.turn.errors import TurnUsageError

S = TypeVar("S", bound=Hashable)


class ServerPool(Generic[S]):
    def __init__(self, servers: Sequence[S], breaker: BreakerFactory) -> None:
        if not servers:
            raise TurnUsageError("a server pool needs at least one server")
        self.servers = tuple(servers)
        self.breakers = {server: breaker() for server in self.servers}
        self._alternate: S | None = None
        self._admitted: set[S] = set()

    def pick(self, now: float, exclude: Collection[S] = ()) -> S | None:
        """The first server not in ``exclude`` whose breaker admits an attempt now, or None.
        An alternate named by a 300 goes first, once."""
        if self._alternate is not None:
            alternate, self._alternate = self._alternate, None
            return alternate
        for server in self.servers:
            if server not in exclude and self.breakers[server].allow(now):
                self._admitted.add(server)
                return server
        return None

    def redirect(self, alternate: S) -> None:
        self._alternate = alternate

    def succeeded(self, server: S, now: float) -> None:
        if server in self._admitted:
            self._admitted.discard(server)
            self.breakers[server].record_success(now)

    def failed(self, server: S, now: float) -> None:
        if server in self._admitted:
            self._admitted.discard(server)
            self.breakers[server].record_failure(now)

    def next_retry(self, now: float) -> float | None:
        """When the first open breaker half-opens (None if some server is usable now)."""
        times = []
        for breaker in self.breakers.values():
            if breaker.state(now) is not BreakerState.OPEN:
                return None
            at = breaker.next_transition(now)
            if at is not None:
                times.append(at)
        return min(times, default=None)
