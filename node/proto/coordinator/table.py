"""The coordinator's core: per peer, its paths, their health and scores, and per priority class
the active path, with the breakers per transport and per remote. Sans-IO: every call takes ``now``.

The service drives it:
- ``add_path`` / ``remove_path`` as transports connect and disconnect peers;
- ``record_rtt``, ``record_sent``, ``record_outcome`` from the delivery core and health checks;
- ``path_failed`` (consent lost, missing acknowledgements), ``link_down`` / ``link_up`` (the link
  monitor: every path leaving from that local address fails at once);
- ``set_load`` with each transport's connections and capacity, ``set_nat_type`` after discovery;
- ``choose(peer, priority, now)`` per message: cheap (the ranking is cached), re-ranking a peer
  at once when one of its paths failed since;
- ``tick(now)`` every ``TICK_INTERVAL_S`` or so: re-ranks every peer (trends, hysteresis holds,
  breakers half-opening, silence) and returns the events since the last tick.

Breakers (``node.proto.breaker``): each path has two, its transport's (kind, local address) and its
remote's (kind, remote endpoint). Each outcome is admitted and recorded on both at once (so a
half-open breaker's trial is the first outcome after the recovery timeout; ``TrialDue`` asks the
service for one). A path whose breaker is open is FAILED.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from node.proto.breaker import BreakerFactory, BreakerState, CircuitBreaker
from node.proto.coordinator import health as health_
from node.proto.coordinator.balance import SmoothRoundRobin
from node.proto.coordinator.errors import CoordinatorError, CoordinatorReason
from node.proto.coordinator.events import (
    ActivePathChanged,
    ChangeReason,
    Choice,
    CoordinatorEvent,
    Outcome,
    PathHealthChanged,
    PathRemoved,
    PathView,
    PeerView,
    TrialDue,
)
from node.proto.coordinator.health import Health
from node.proto.coordinator.hysteresis import ActiveSelector, Candidate
from node.proto.coordinator.paths import DownReason, PathKey, PathState
from node.proto.coordinator.prior import prior
from node.proto.coordinator.samples import PathSamples
from node.proto.coordinator.scoring import PathInputs, Score, score
from node.proto.coordinator.settings import CoordinatorSettings
from node.proto.natprobe.types import NatType
from node.proto.vocabulary import DisconnectReason, PeerId, Priority, TransportKind

# How often the service should call tick(): well inside the 2 s hold and the 5 s horizon, and
# the delay before a silent path (no acknowledgement for two RTOs) is noticed.
TICK_INTERVAL_S = 0.1

_TransportId = tuple[TransportKind, str | None]
_RemoteId = tuple[TransportKind, str]


@dataclass(slots=True)
class _Path:
    key: PathKey
    samples: PathSamples
    down: DownReason | None = None
    health: Health = Health.OPTIMAL  # effective, as of the last ranking
    measured: Health = Health.OPTIMAL
    breaker: BreakerState = BreakerState.CLOSED
    scores: dict[Priority, Score] = field(default_factory=dict)
    state: PathState = PathState.STANDBY


@dataclass(slots=True)
class _Class:
    """One priority class of one peer: its active path and, while balancing, the rotation."""

    selector: ActiveSelector = field(default_factory=ActiveSelector)
    extra: PathKey | None = None
    balance: SmoothRoundRobin[PathKey] | None = None


@dataclass(slots=True)
class _Peer:
    paths: dict[PathKey, _Path] = field(default_factory=dict)
    classes: dict[Priority, _Class] = field(default_factory=lambda: {p: _Class() for p in Priority})
    dirty: bool = True


class Coordinator:
    def __init__(
        self,
        settings: CoordinatorSettings | None = None,
        breaker: BreakerFactory = CircuitBreaker,
        nat: NatType = NatType.UNKNOWN,
    ) -> None:
        self.settings = settings or CoordinatorSettings()
        self._new_breaker = breaker
        self.nat = nat
        self._peers: dict[PeerId, _Peer] = {}
        self._transport_breakers: dict[_TransportId, CircuitBreaker] = {}
        self._remote_breakers: dict[_RemoteId, CircuitBreaker] = {}
        self._utilization: dict[_TransportId, float] = {}
        self._events: list[CoordinatorEvent] = []

    # -- paths --------------------------------------------------------------------------------

    def add_path(self, peer: PeerId, key: PathKey, now: float) -> None:
        """A transport reached ``peer`` over ``key`` (again: a path that was down is up)."""
        entry = self._peers.setdefault(peer, _Peer())
        path = entry.paths.get(key)
        if path is None:
            entry.paths[key] = _Path(key, PathSamples(self.settings))
            self._transport_breakers.setdefault(_transport(key), self._new_breaker())
            self._remote_breakers.setdefault(_remote(key), self._new_breaker())
        elif path.down is not None:
            path.down = None
            path.samples.recovered()  # a new connection: the old one's losses are not its own
        entry.dirty = True

    def remove_path(self, peer: PeerId, key: PathKey, reason: DisconnectReason, now: float) -> None:
        entry = self._peer(peer)
        del entry.paths[self._path(entry, peer, key).key]
        self._events.append(PathRemoved(peer, key, reason))
        entry.dirty = True
        self._rank(peer, entry, now)
        if not entry.paths:
            del self._peers[peer]
        self._forget_breakers(key, now)

    def paths(self, peer: PeerId) -> tuple[PathKey, ...]:
        return tuple(self._peer(peer).paths)

    def peers(self) -> tuple[PeerId, ...]:
        return tuple(self._peers)

    # -- measurements -------------------------------------------------------------------------

    def record_rtt(self, peer: PeerId, key: PathKey, rtt: float, now: float) -> None:
        """An RTT sample (a health check answered, an acknowledgement timed): also proof of life."""
        path = self._path(self._peer(peer), peer, key)
        if path.down is None and path.breaker is BreakerState.CLOSED:
            path.samples.add_rtt(rtt, now)
        # else the answer crossed an outage (a health check that waited in a dead connection's
        # buffer until the drop ended): it measures the outage, not the path, and would leave
        # the RTO at seconds, so that the next silence took that long to notice. Karn's rule
        # (RFC 6298 §3) leaves out ambiguous samples for the same reason. Still proof of life.
        self._alive(peer, path)

    def record_sent(self, peer: PeerId, key: PathKey, now: float, count: int = 1) -> None:
        """``count`` reliable messages left on ``key``; their outcomes follow (silence is measured
        from here)."""
        samples = self._path(self._peer(peer), peer, key).samples
        for _ in range(count):
            samples.add_sent(now)

    def record_heard(self, peer: PeerId, key: PathKey, now: float) -> None:
        """An acknowledgement came over ``key`` (whether or not it acknowledged anything new):
        the peer hears us and answers, so the path is not silent. A peer whose inbox is full
        answers BUSY and acknowledges nothing for as long as its application is slow; without
        this its healthy path would look silent, hence critical."""
        self._path(self._peer(peer), peer, key).samples.add_heard(now)

    def record_outcome(
        self, peer: PeerId, key: PathKey, outcome: Outcome, now: float, count: int = 1
    ) -> None:
        """``count`` messages sent on ``key`` had ``outcome``: each one a sample; the breakers see
        one success for a batch acknowledged together (a success only resets their count) and
        one failure per loss."""
        path = self._path(self._peer(peer), peer, key)
        acked = outcome is Outcome.ACKED
        add = path.samples.add_outcome
        for _ in range(count):
            add(acked, now)
        tripped = False
        on_trial = path.breaker is not BreakerState.CLOSED
        for breaker in (self._transport_breakers[_transport(key)], self._remote_breakers[_remote(key)]):
            for _ in range(1 if acked else count):
                if not breaker.allow(now):
                    break  # open: the breaker has decided; the outcome is still a sample
                if acked:
                    breaker.record_success(now)
                else:
                    breaker.record_failure(now)
                    tripped |= breaker.state(now) is BreakerState.OPEN
        if tripped:
            path.samples.add_failure(now)
            self._dirty_all()  # a transport breaker covers other peers' paths too
        if acked:
            if on_trial and self._breaker_of(key, now) is BreakerState.CLOSED:
                path.samples.recovered()  # the trial succeeded: the outage is over
                self._peers[peer].dirty = True
            self._alive(peer, path)

    def path_failed(self, peer: PeerId, key: PathKey, reason: DownReason, now: float) -> None:
        """The service knows ``key`` is dead (until something comes back over it)."""
        path = self._path(self._peer(peer), peer, key)
        if path.down is None:
            path.samples.add_failure(now)
        path.down = reason
        self._peers[peer].dirty = True

    def link_down(self, local: str, now: float) -> None:
        """The link monitor: carrier or address ``local`` is gone; every path leaving from it fails."""
        for entry in self._peers.values():
            for path in entry.paths.values():
                if path.key.local == local and path.down is None:
                    path.down = DownReason.LINK_DOWN
                    path.samples.add_failure(now)
                    entry.dirty = True

    def link_up(self, local: str, now: float) -> None:
        for entry in self._peers.values():
            for path in entry.paths.values():
                if path.key.local == local and path.down is DownReason.LINK_DOWN:
                    path.down = None
                    entry.dirty = True

    def set_load(self, kind: TransportKind, local: str | None, connections: int, capacity: int) -> None:
        """A transport's (or, for TURN, its relay's) connections against its capacity."""
        self._utilization[(kind, local)] = connections / capacity if capacity > 0 else 1.0
        self._dirty_all()

    def set_nat_type(self, nat: NatType) -> None:
        self.nat = nat
        self._dirty_all()

    # -- decisions ----------------------------------------------------------------------------

    def choose(self, peer: PeerId, priority: Priority, now: float) -> Choice:
        """The path(s) for one message of ``priority`` to ``peer``. Raises CoordinatorError
        UNKNOWN_PEER, or NO_PATH when every path to the peer is down (its transport lost it).

        When every path has failed but some are still connected (failed only by their breakers
        or their samples), the best of those carries the message as a last resort: an open
        breaker says "prefer another path", and there is none; a path that came back (a
        firewall rule lifted) then carries traffic before its recovery timeout ends, instead of
        every message failing after its retries."""
        entry = self._peer(peer)
        if entry.dirty:
            self._rank(peer, entry, now)
        cls = entry.classes[priority]
        primary = cls.selector.active
        if primary is None:
            resort = self._last_resort(entry, priority)
            if resort is None:
                raise CoordinatorError(CoordinatorReason.NO_PATH, f"every path to peer {peer} has failed")
            return Choice(resort)
        if cls.balance is not None:
            primary = cls.balance.pick()
        return Choice(primary, cls.extra if cls.extra != primary else None)

    @staticmethod
    def _last_resort(entry: _Peer, priority: Priority) -> PathKey | None:
        connected = [p for p in entry.paths.values() if p.down is None]
        if not connected:
            return None
        # The one whose trouble is oldest: the newest trouble is likely the fault still going on.
        best = min(
            connected,
            key=lambda p: (
                p.samples.last_trouble,
                -p.scores[priority].total,
                p.key.relayed,
                p.key.sort_key(),
            ),
        )
        return best.key

    def tick(self, now: float) -> list[CoordinatorEvent]:
        """Re-rank every peer at ``now``; the events since the last tick, oldest first."""
        for peer, entry in self._peers.items():
            self._rank(peer, entry, now)
        events, self._events = self._events, []
        return events

    def snapshot(self, now: float) -> tuple[PeerView, ...]:
        """Every peer's paths as of the last ranking (a peer with news since is re-ranked)."""
        views = []
        for peer, entry in self._peers.items():
            if entry.dirty:
                self._rank(peer, entry, now)
            rows = tuple(
                PathView(
                    kind=p.key.kind.value,
                    local=p.key.local,
                    endpoint=p.key.remote,
                    state=p.state,
                    health=p.health,
                    score=round(p.scores[Priority.NORMAL].total, 4) if p.scores else 0.0,
                    rtt_ms=None if p.samples.srtt is None else p.samples.srtt * 1000.0,
                    loss=p.samples.loss(),
                    breaker=p.breaker,
                )
                for p in sorted(entry.paths.values(), key=lambda p: p.key.sort_key())
            )
            views.append(PeerView(peer, entry.classes[Priority.NORMAL].selector.active, rows))
        return tuple(views)

    # -- ranking ------------------------------------------------------------------------------

    def _rank(self, peer: PeerId, entry: _Peer, now: float) -> None:
        settings = self.settings
        entry.dirty = False
        for path in entry.paths.values():
            self._assess(peer, path, now)
        in_use = self._in_use(entry)
        moves: dict[tuple[PathKey | None, PathKey | None, ChangeReason], set[Priority]] = {}
        for priority, cls in entry.classes.items():
            ranked = sorted(
                (
                    Candidate(p.key, p.scores[priority].total, p.health, p.measured, p.samples.proven)
                    for p in in_use
                ),
                key=lambda c: (-c.score, c.key.relayed, c.key.sort_key()),
            )
            switch = cls.selector.update(ranked, now, settings)
            if switch is not None:
                moves.setdefault((switch.old, switch.new, switch.reason), set()).add(priority)
            self._spread(cls, ranked, priority)
        for (old, new, reason), priorities in moves.items():
            self._events.append(ActivePathChanged(peer, frozenset(priorities), old, new, reason))
        active = entry.classes[Priority.NORMAL].selector.active
        used = {p.key for p in in_use}
        for path in entry.paths.values():
            if path.health is Health.FAILED:
                path.state = PathState.FAILED
            elif path.key == active:
                path.state = PathState.ACTIVE
            else:
                path.state = PathState.STANDBY if path.key in used else PathState.IDLE

    def _assess(self, peer: PeerId, path: _Path, now: float) -> None:
        settings = self.settings
        key = path.key
        path.samples.age(now)
        breaker = self._breaker_of(key, now)
        if breaker is BreakerState.HALF_OPEN and path.breaker is not BreakerState.HALF_OPEN:
            self._events.append(TrialDue(peer, key))
        path.breaker = breaker
        measured = health_.measured(path.samples, breaker, path.down is not None, now, settings)
        effective = min(measured, health_.projected(path.samples, now, settings))
        if effective is not path.health:
            samples = path.samples
            self._events.append(
                PathHealthChanged(
                    peer,
                    key,
                    path.health,
                    effective,
                    measured,
                    samples.loss_fraction(),
                    samples.silent_for(now),
                    samples.rto(),
                    samples.in_flight,
                )
            )
        path.measured, path.health = measured, effective
        samples = path.samples
        inputs = PathInputs(
            kind=key.kind,
            relayed=key.relayed,
            health=effective,
            srtt=samples.srtt,
            loss=samples.loss_fraction(),
            reliability=samples.reliability(now),
            utilization=self._utilization.get(_transport(key), 0.0),
            measurements=len(samples.rtts) + len(samples.outcomes),
            prior=prior(self.nat, key.kind),
        )
        path.scores = {p: score(inputs, p, settings) for p in Priority}

    def _in_use(self, entry: _Peer) -> list[_Path]:
        """At most max_transports_per_peer paths: every class's active one first (while not
        failed), then the best of the rest at NORMAL priority."""
        limit = self.settings.max_transports_per_peer
        chosen: dict[PathKey, _Path] = {}
        for cls in entry.classes.values():
            path = entry.paths.get(cls.selector.active) if cls.selector.active is not None else None
            if path is not None and path.health > Health.FAILED and len(chosen) < limit:
                chosen[path.key] = path
        rest = sorted(
            (p for p in entry.paths.values() if p.key not in chosen),
            key=lambda p: (
                p.health is Health.FAILED,
                -p.scores[Priority.NORMAL].total,
                p.key.relayed,
                p.key.sort_key(),
            ),
        )
        for path in rest:
            if len(chosen) >= limit:
                break
            chosen[path.key] = path
        return list(chosen.values())

    def _spread(self, cls: _Class, ranked: list[Candidate], priority: Priority) -> None:
        """The extra path for multipath priorities; the rotation while the active path's
        transport is above the load threshold."""
        active = cls.selector.active
        cls.extra = None
        cls.balance = None
        if active is None:
            return
        others = [c for c in ranked if c.key != active and c.health > Health.FAILED]
        if priority in self.settings.multipath_priorities and others:
            cls.extra = others[0].key
        current = next(c for c in ranked if c.key == active)
        if self._utilization.get(_transport(active), 0.0) <= self.settings.load_balance_threshold:
            return
        floor = current.score / (1.0 + self.settings.switch_margin)
        peers = [c for c in others if c.health > Health.CRITICAL and c.score >= floor]
        if peers:
            members = [current, *peers]
            cls.balance = SmoothRoundRobin([(c.key, c.score) for c in members])

    # -- helpers ------------------------------------------------------------------------------

    def _peer(self, peer: PeerId) -> _Peer:
        entry = self._peers.get(peer)
        if entry is None:
            raise CoordinatorError(CoordinatorReason.UNKNOWN_PEER, f"no path to peer {peer} was ever added")
        return entry

    def _path(self, entry: _Peer, peer: PeerId, key: PathKey) -> _Path:
        path = entry.paths.get(key)
        if path is None:
            raise CoordinatorError(
                CoordinatorReason.UNKNOWN_PATH, f"peer {peer} has no {key.kind.value} path to {key.remote}"
            )
        return path

    def _alive(self, peer: PeerId, path: _Path) -> None:
        if path.down is not None:
            path.down = None
            path.samples.recovered()
            self._peers[peer].dirty = True

    def _breaker_of(self, key: PathKey, now: float) -> BreakerState:
        """The worse of the path's two breakers."""
        transport = self._transport_breakers[_transport(key)].state(now)
        return health_.worse(transport, self._remote_breakers[_remote(key)].state(now))

    def _dirty_all(self) -> None:
        for entry in self._peers.values():
            entry.dirty = True

    def _forget_breakers(self, key: PathKey, now: float) -> None:
        """Drop breakers no path uses any more, unless they are still open (a path that is
        removed and added again must not get a fresh breaker for free)."""
        used = [k for entry in self._peers.values() for k in entry.paths]
        transport, remote = _transport(key), _remote(key)
        if (
            not any(_transport(k) == transport for k in used)
            and self._transport_breakers[transport].state(now) is BreakerState.CLOSED
        ):
            del self._transport_breakers[transport]
        if (
            not any(_remote(k) == remote for k in used)
            and self._remote_breakers[remote].state(now) is BreakerState.CLOSED
        ):
            del self._remote_breakers[remote]


def _transport(key: PathKey) -> _TransportId:
    return (key.kind, key.local)


def _remote(key: PathKey) -> _RemoteId:
    return (key.kind, key.remote)
