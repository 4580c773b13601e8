"""The check state machine of one side of a punch (RFC 8445 §6-§7 reduced, DCUtR timing).

Both sides are started with the same fire time (agreed through the introducer: A fires RTT/2
after its Sync, B on receiving it) and send checks from then on:

- ordinary checks, one pair every Ta = 50 ms (RFC 8445 §14.2 pacing), highest pair priority first;
- the plan's guesses, paced at ``burst_interval``: a PREDICTION prober probes the window of the
  hard side's next ports; a BIRTHDAY target opens one mapping per extra socket towards the easy
  side's server-reflexive address; a BIRTHDAY prober probes random ports of the hard side's WAN
  address (``birthday_probes`` in all, over every attempt);
- a triggered check (RFC 8445 §7.3.1.4) back on any pair a check arrives on, so the side that
  fired late still finishes on its peer's first packet.

Each ordinary pair is checked ``rounds`` times per attempt (a lost check is the common case on a
lossy path), and the whole attempt is repeated ``attempts`` times. Any check carrying the punch's
token is answered, and its source learned as a peer-reflexive candidate (§7.3.1.3).

Nomination (RFC 8445 §8.1.1, regular nomination reduced): side A controls. The first pair on
which A's check is answered is the one A nominates: it sends NOMINATE on it every Ta until
answered (``nominate_tries``), then reports ``Nominated``. Side B reports ``Nominated`` for the
pair a NOMINATE arrives on. Both sides thus end on the same pair even when several pairs work (the
birthday technique often finds two). Checks stop; answers continue so the peer can finish too.
No nomination ``final_wait`` after the last check: ``PunchFailed``.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter, deque
from dataclasses import dataclass

from node.proto.natprobe.types import Endpoint
from node.proto.punch import wire
from node.proto.punch.candidates import Candidate, CandidateKind, ordered, priority
from node.proto.punch.errors import PunchDrop, PunchFailure, PunchMisuse, PunchUsageError, PunchWireError
from node.proto.punch.events import Event, Method, Nominated, Outgoing, PunchFailed, PunchStats
from node.proto.punch.guesses import birthday_ports, predicted_ports
from node.proto.punch.plan import Plan, Role, Technique


@dataclass(frozen=True, slots=True)
class PunchTiming:
    ta: float = 0.05  # RFC 8445 §14.2
    attempts: int = 3
    rounds: int = 3  # checks of each ordinary pair per attempt
    nominate_tries: int = 10
    burst_interval: float = 0.001  # guessed ports: 2048 birthday probes in about 2 s
    # Predicted ports probed after the hard side's last seen mapping, nearest first. The NAT's
    # counter serves every flow behind it, so by the punch it has moved on from the mapping
    # discovery saw: a 16-port window missed after ~15 runs of other traffic in the lab.
    window: int = 256
    final_wait: float = 1.0  # after the last check, answers are awaited this long
    birthday_probes: int = 2048
    max_prflx: int = 32

    def __post_init__(self) -> None:
        if not (self.ta > 0 and self.burst_interval > 0 and self.final_wait >= 0):
            raise PunchUsageError(PunchMisuse.BAD_TIMING, f"ta {self.ta}, burst {self.burst_interval}")
        if not (
            1 <= self.attempts <= 10
            and 1 <= self.rounds <= 10
            and 1 <= self.nominate_tries <= 100
            and 1 <= self.window <= 1024
            and 0 <= self.birthday_probes <= 8192
        ):
            raise PunchUsageError(
                PunchMisuse.BAD_TIMING,
                f"attempts {self.attempts}, window {self.window}, birthday probes {self.birthday_probes}",
            )


@dataclass(frozen=True, slots=True)
class PunchSetup:
    side: wire.Side
    token: bytes  # 16 bytes agreed through the introducer
    payload: bytes  # opaque, carried in every check and answer of ours
    plan: Plan
    remote: tuple[Candidate, ...]
    sockets: int  # sockets the driver opened (a BIRTHDAY target: 256, socket 0 the main one)
    fire_at: float
    local_priority: int = priority(CandidateKind.HOST)


@dataclass(frozen=True, slots=True)
class _Send:
    at: float
    socket: int
    destination: Endpoint
    method: Method
    guess: bool


Pair = tuple[int, Endpoint]  # (local socket, remote address)

_KIND_METHOD = {
    CandidateKind.HOST: Method.HOST,
    CandidateKind.SRFLX: Method.SRFLX,
    CandidateKind.PRFLX: Method.PRFLX,
}


class PunchAgent:
    def __init__(self, setup: PunchSetup, rng: random.Random, timing: PunchTiming | None = None) -> None:
        if len(setup.token) != wire.TOKEN_SIZE:
            raise PunchUsageError(PunchMisuse.BAD_TOKEN, f"{len(setup.token)} bytes")
        if len(setup.payload) > wire.MAX_PAYLOAD:
            raise PunchUsageError(
                PunchMisuse.PAYLOAD_TOO_LARGE, f"{len(setup.payload)} > {wire.MAX_PAYLOAD} bytes"
            )
        if setup.sockets < 1:
            raise PunchUsageError(PunchMisuse.BAD_SOCKET, f"{setup.sockets} sockets given")
        if setup.plan.technique is Technique.RELAY:
            raise PunchUsageError(PunchMisuse.NO_PATH, "plan technique is relay")
        self._setup = setup
        self._rng = rng
        self._timing = timing or PunchTiming()
        self._remote: list[Candidate] = list(setup.remote)
        self._learned = 0
        self._drops: Counter[PunchDrop] = Counter()
        self._requests = self._answers = self._probes = 0
        self._birthday = (
            birthday_ports(rng, self._timing.birthday_probes) if self._guessing(Role.PROBER) else ()
        )
        self._start(setup.fire_at)

    # -- schedule ------------------------------------------------------------------------

    def _guessing(self, role: Role) -> bool:
        plan = self._setup.plan
        return plan.technique in (Technique.PREDICTION, Technique.BIRTHDAY) and plan.role is role

    def _method(self, kind: CandidateKind) -> Method:
        technique = self._setup.plan.technique
        if kind is not CandidateKind.HOST and technique is Technique.PREDICTION:
            return Method.PREDICTION
        if kind is not CandidateKind.HOST and technique is Technique.BIRTHDAY:
            return Method.BIRTHDAY
        return _KIND_METHOD[kind]

    def _srflx(self) -> list[Endpoint]:
        return [c.address for c in self._remote if c.kind is CandidateKind.SRFLX]

    def _start(self, fire_at: float) -> None:
        self._sends: list[_Send] = []
        self._next = 0
        self._tx: dict[int, tuple[Pair, Method, bool]] = {}  # transaction -> pair, method, nominate
        self._succeeded: dict[Pair, Method] = {}  # pairs whose check of ours was answered
        self._nominating: tuple[Pair, Method] | None = None
        self._nominate_at: float | None = None
        self._nominate_tries = 0
        self._triggered: deque[tuple[int, Endpoint, Method]] = deque()
        self._triggered_pairs: set[Pair] = set()
        self._answers_due: deque[Outgoing] = deque()
        self._outcome: Event | None = None
        self._events: deque[Event] = deque()
        start = fire_at
        per_attempt = -(-len(self._birthday) // self._timing.attempts)
        for attempt in range(self._timing.attempts):
            probes = self._birthday[attempt * per_attempt : (attempt + 1) * per_attempt]
            start = self._attempt(start, probes)
        self._sends.sort(key=lambda s: s.at)
        self._deadline = start + self._timing.final_wait

    def _attempt(self, start: float, probes: tuple[int, ...]) -> float:
        """Schedule one round from ``start``; returns when the next round starts."""
        t = self._timing
        plan = self._setup.plan
        sends: list[_Send] = []
        pairs = ordered(tuple(self._remote), self._setup.local_priority, self._setup.side is wire.Side.A)
        for r in range(t.rounds):
            for i, c in enumerate(pairs):
                sends.append(
                    _Send(start + (r * len(pairs) + i) * t.ta, 0, c.address, self._method(c.kind), False)
                )
        guesses: list[tuple[int, Endpoint, Method]] = []
        for hard in self._srflx() if self._guessing(Role.PROBER) else []:
            if plan.technique is Technique.PREDICTION and plan.port_delta:
                ports = predicted_ports(hard[1], plan.port_delta, t.window)
                guesses += [(0, (hard[0], p), Method.PREDICTION) for p in ports]
            elif plan.technique is Technique.BIRTHDAY:
                guesses += [(0, (hard[0], p), Method.BIRTHDAY) for p in probes]
            break  # one WAN address to guess on: the first server-reflexive candidate
        if plan.technique is Technique.BIRTHDAY and plan.role is Role.TARGET:
            for easy in self._srflx()[:1]:
                guesses += [(s, easy, Method.BIRTHDAY) for s in range(1, self._setup.sockets)]
        for j, (sock, dst, method) in enumerate(guesses):
            sends.append(_Send(start + j * t.burst_interval, sock, dst, method, True))
        self._sends += sends
        end = max((s.at for s in sends), default=start)
        return max(end + t.ta, start + t.ta)

    def restart(self, fire_at: float, remote: tuple[Candidate, ...] = ()) -> None:
        """Punch again (a mapping expired, the network changed): a fresh round of attempts from
        ``fire_at``, agreed with the peer like the first; ``remote`` adds candidates (new
        discovery), learned peer-reflexive ones are kept."""
        self._remote += [c for c in remote if c not in self._remote]
        self._start(fire_at)

    # -- driver interface ----------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._outcome is not None

    @property
    def outcome(self) -> Event | None:
        return self._outcome

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        if self._outcome is not None:
            return None
        due = [self._deadline]
        if self._next < len(self._sends):
            due.append(self._sends[self._next].at)
        if self._nominate_at is not None:
            due.append(self._nominate_at)
        return min(due)

    def handle_timer(self, now: float) -> None:
        # A nomination under way is let finish (its tries are bounded).
        if self._outcome is None and now >= self._deadline and self._nominating is None:
            self._finish(PunchFailed(PunchFailure.NO_ANSWER, now, self._requests))

    def datagrams_to_send(self, now: float) -> list[Outgoing]:
        out = list(self._answers_due)
        self._answers_due.clear()
        while self._outcome is None and self._triggered:
            out.append(self._request(*self._triggered.popleft(), guess=False))
        if self._outcome is None and self._nominate_at is not None and self._nominate_at <= now:
            out.append(self._nominate(now))
        if self._outcome is None:
            end = bisect.bisect_right(self._sends, now, lo=self._next, key=lambda s: s.at)
            for send in self._sends[self._next : end]:
                out.append(self._request(send.socket, send.destination, send.method, guess=send.guess))
            self._next = end
        return out

    def _request(
        self, socket: int, destination: Endpoint, method: Method, *, guess: bool, nominate: bool = False
    ) -> Outgoing:
        transaction = self._rng.getrandbits(64)
        self._tx[transaction] = ((socket, destination), method, nominate)
        self._requests += 1
        self._probes += guess
        kind = wire.Kind.NOMINATE if nominate else wire.Kind.REQUEST
        check = wire.Check(kind, self._setup.side, self._setup.token, transaction, self._setup.payload)
        return Outgoing(socket, destination, wire.encode(check))

    def _nominate(self, now: float) -> Outgoing:
        assert self._nominating is not None
        (socket, destination), method = self._nominating
        self._nominate_tries += 1
        out = self._request(socket, destination, method, guess=False, nominate=True)
        if self._nominate_tries < self._timing.nominate_tries:
            self._nominate_at = now + self._timing.ta
        else:
            # Never answered: give this pair up, and nominate the next that worked, if any.
            self._succeeded.pop((socket, destination), None)
            self._nominating = self._nominate_at = None
            self._next_nomination(now + self._timing.ta)
        return out

    def _next_nomination(self, at: float) -> None:
        if self._setup.side is not wire.Side.A or self._nominating is not None or not self._succeeded:
            return
        self._nominating = next(iter(self._succeeded.items()))
        self._nominate_tries = 0
        self._nominate_at = at

    def receive_datagram(self, socket: int, data: bytes, src: Endpoint, now: float) -> bool:
        """Take one datagram; False when it is no punch check (the driver passes it on). A check
        that is not used is counted (``stats().drops``), never raised."""
        if not wire.is_check(data):
            return False
        if not 0 <= socket < self._setup.sockets:
            raise PunchUsageError(PunchMisuse.BAD_SOCKET, f"socket {socket} of {self._setup.sockets}")
        try:
            check = wire.decode(data)
        except PunchWireError as e:
            self._drops[e.reason] += 1
            return True
        drop = self._receive(socket, check, src, now)
        if drop is not None:
            self._drops[drop] += 1
        return True

    def _receive(self, socket: int, check: wire.Check, src: Endpoint, now: float) -> PunchDrop | None:
        if check.token != self._setup.token:
            return PunchDrop.UNKNOWN_TOKEN
        if check.side is self._setup.side:
            return PunchDrop.REFLECTED
        if check.kind is not wire.Kind.ANSWER:
            answer = wire.Check(
                wire.Kind.ANSWER, self._setup.side, self._setup.token, check.transaction, self._setup.payload
            )
            self._answers_due.append(Outgoing(socket, src, wire.encode(answer)))
            self._answers += 1
            drop = self._trigger(socket, src, now)
            if check.kind is wire.Kind.NOMINATE and self._setup.side is wire.Side.B and self._outcome is None:
                method = self._succeeded.get((socket, src)) or self._method(self._kind_of(src))
                self._finish(Nominated(socket, src, method, now, self._requests, check.payload))
            return drop
        sent = self._tx.get(check.transaction)
        if sent is None:
            return PunchDrop.UNMATCHED
        (sock, destination), method, nominate = sent
        if sock != socket:
            return PunchDrop.WRONG_SOCKET
        if destination != src:
            return PunchDrop.ASYMMETRIC
        del self._tx[check.transaction]
        if self._outcome is not None:
            return None
        if nominate:
            self._finish(Nominated(socket, src, method, now, self._requests, check.payload))
        else:
            self._succeeded.setdefault((socket, src), method)
            self._next_nomination(now)
        return None

    def _kind_of(self, address: Endpoint) -> CandidateKind:
        known = next((c for c in self._remote if c.address == address), None)
        return CandidateKind.PRFLX if known is None else known.kind

    def _trigger(self, socket: int, src: Endpoint, now: float) -> PunchDrop | None:
        known = next((c for c in self._remote if c.address == src), None)
        drop = None
        if known is None:
            if self._learned < self._timing.max_prflx:
                known = Candidate.of(CandidateKind.PRFLX, src)
                self._remote.append(known)
                self._learned += 1
            else:
                drop = PunchDrop.TOO_MANY_PRFLX
        if self._outcome is None and (socket, src) not in self._triggered_pairs:
            self._triggered_pairs.add((socket, src))
            method = self._method(known.kind if known is not None else CandidateKind.PRFLX)
            self._triggered.append((socket, src, method))
            # Its repeats, like an ordinary pair's rounds: the first may well be lost.
            for k in range(1, self._timing.rounds):
                send = _Send(now + k * self._timing.ta, socket, src, method, False)
                bisect.insort(self._sends, send, lo=self._next, key=lambda s: s.at)
        return drop

    def _finish(self, event: Event) -> None:
        self._outcome = event
        self._events.append(event)
        self._triggered.clear()
        self._nominating = self._nominate_at = None

    def stats(self) -> PunchStats:
        return PunchStats(
            self._requests,
            self._answers,
            self._probes,
            self._learned,
            tuple(sorted(self._drops.items(), key=lambda kv: kv[0].value)),
        )
