"""The coordinator's clockwork: the tick, the health checks and the load updates.

- tick (``TICK_INTERVAL_S``): the core re-ranks paths; an active path that moved because the
  old one failed (or is projected to) has what waited for an ACK on it resent on the new one;
  failovers are counted and logged; a half-open breaker's trial is a ping on that path.
- health checks every ``transport.health_check_interval_s``: a ping per path. An answer is an
  RTT sample and an acknowledged outcome; no answer (an error, or none within
  ``transport.failover_timeout_s``) is a lost outcome of that path, so a path that stopped
  answering loses score (and trips its breakers) even when no message is in flight on it.
- load updates every ``coordinator.metric_update_interval_s``: each transport's connections
  against its capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from node.config import Config
from node.errors import NodeError
from node.proto.coordinator import (
    TICK_INTERVAL_S,
    ActivePathChanged,
    ChangeReason,
    Coordinator,
    CoordinatorError,
    Outcome,
    PathHealthChanged,
    PathKey,
    TrialDue,
)
from node.proto.vocabulary import PeerId, TransportKind
from node.services.coordinator.carriers import Carrier
from node.services.coordinator.observer import NO_OBSERVER, CoordinatorObserver
from node.services.coordinator.paths import PathBook
from node.services.coordinator.sending import Sending
from node.services.coordinator.status import Counters
from node.transports.isolation import ConnectionIsolation

log = logging.getLogger(__name__)

_MOVED_AWAY = (ChangeReason.FAILED, ChangeReason.CRITICAL, ChangeReason.PREDICTED)


class Upkeep:
    def __init__(
        self,
        *,
        config: Config,
        coordinator: Coordinator,
        carriers: dict[TransportKind, Carrier],
        book: PathBook,
        sending: Sending,
        counters: Counters,
        wall: ConnectionIsolation,
        spawn: Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]],
        observer: CoordinatorObserver = NO_OBSERVER,
    ) -> None:
        self.observer = observer
        self.config = config
        self.coordinator = coordinator
        self.carriers = carriers
        self.book = book
        self.sending = sending
        self.counters = counters
        self.wall = wall
        self._spawn = spawn
        self._loop = sending.loop

    def start(self) -> None:
        self._spawn(self._ticks(), "coordinator-tick")
        self._spawn(self._health_checks(), "coordinator-health")
        self._spawn(self._load_updates(), "coordinator-load")

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(TICK_INTERVAL_S)
            self.wall.call(self.tick, "coordinator tick")

    def tick(self) -> None:
        for event in self.coordinator.tick(self._loop.time()):
            if isinstance(event, ActivePathChanged):
                self._moved(event)
            elif isinstance(event, TrialDue):
                self._spawn(self.probe(event.peer, event.path), f"trial-{event.peer}")
            elif isinstance(event, PathHealthChanged):
                log.debug(
                    "coordinator: path health: peer=%s path=%s:%s %s -> %s (measured %s, loss %s,"
                    " silent %.3f s with %d in flight, rto %.3f s)",
                    event.peer,
                    event.path.kind.value,
                    event.path.remote,
                    event.old.name,
                    event.new.name,
                    event.measured.name,
                    "-" if event.loss is None else f"{event.loss:.2f}",
                    event.silent_s,
                    event.in_flight,
                    event.rto_s,
                )

    def _moved(self, event: ActivePathChanged) -> None:
        old, new = event.old, event.new
        if old is not None and new is not None:
            self.counters.failovers += 1
            self.observer.failover()
        log.info(
            "coordinator: active path: peer=%s priorities=%s from=%s to=%s reason=%s",
            event.peer,
            ",".join(sorted(p.name.lower() for p in event.priorities)),
            "-" if old is None else f"{old.kind.value}:{old.remote}",
            "-" if new is None else f"{new.kind.value}:{new.remote}",
            event.reason.value,
        )
        if old is not None and new is not None and event.reason in _MOVED_AWAY:
            # What waits for an ACK on the old path goes again on the new.
            self.sending.path_failed(event.peer, old)

    async def _health_checks(self) -> None:
        while True:
            await asyncio.sleep(self.config.transport.health_check_interval_s)
            for peer in self.coordinator.peers():
                for key in self.coordinator.paths(peer):
                    self._spawn(self.probe(peer, key), f"health-{peer}")

    async def probe(self, peer: PeerId, key: PathKey) -> None:
        """A ping on ``key``: its outcome (and RTT) is a sample of the path, for the breakers
        too (a half-open breaker's trial is one)."""
        carrier = self.carriers[key.kind]
        if carrier.current() is None:
            return
        self.sending.sent(peer, key, self._loop.time())
        try:
            async with asyncio.timeout(self.config.transport.failover_timeout_s):
                rtt = await carrier.ping(peer)
        except (NodeError, TimeoutError):
            if self.book.holds(peer, key):
                self.sending.outcome(peer, key, Outcome.LOST, self._loop.time())
            return
        if not self.book.holds(peer, key):
            return  # another connection replaced it meanwhile
        now = self._loop.time()
        with contextlib.suppress(CoordinatorError):
            self.coordinator.record_rtt(peer, key, rtt, now)
            self.observer.path_rtt(key.kind, rtt)
        self.sending.outcome(peer, key, Outcome.ACKED, now)

    async def _load_updates(self) -> None:
        while True:
            await asyncio.sleep(self.config.coordinator.metric_update_interval_s)
            for kind, local in self.book.locals():
                carrier = self.carriers[kind]
                transport = carrier.current()
                if transport is not None:
                    connections = transport.health().connections
                    self.coordinator.set_load(kind, local, connections, carrier.capacity())
            # Behind the wall: a metrics fault must not end the load updates.
            snapshot = self.coordinator.snapshot(self._loop.time())
            self.wall.call(self.observer.paths, "coordinator metrics", snapshot)
