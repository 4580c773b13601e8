"""A peer's side of rendezvous, sans-IO: the requester (A) and the target (B) of introductions.

A: ``introduce`` makes an ``Introduce`` and remembers when it left; on ``Accepted`` the round trip
A -> introducer -> B -> introducer -> A is measured, and ``PunchAsA`` says to send ``Sync`` at once
and to fire half that round trip later, when the ``Sync`` reaches B, which fires on arrival
(libp2p DCUtR's timing: both ends open their NAT mappings at about the same moment). B:
``Introduced`` gives ``PunchAsB`` with the ``Accept`` to send, and ``Synced`` gives ``Fire``.
An ``Introduce`` with no answer within ``answer_timeout_s`` ends in ``IntroduceRefused(TIMED_OUT)``;
an accepted introduction with no ``Synced`` within ``sync_timeout_s`` is forgotten.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from node.proto.natprobe.types import NatType
from node.proto.punch.plan import NatProfile
from node.proto.punch.wire import TOKEN_SIZE
from node.proto.rendezvous.errors import ClientDrop, Refusal, RendezvousMisuse, RendezvousUsageError
from node.proto.rendezvous.events import (
    Event,
    Fire,
    IntroduceRefused,
    PunchAsA,
    PunchAsB,
    RegistrationRefused,
)
from node.proto.rendezvous.messages import (
    REGISTER_REQUEST,
    Accept,
    Accepted,
    Candidates,
    Decline,
    Introduce,
    Introduced,
    Message,
    Refused,
    Register,
    Registered,
    Sync,
    Synced,
)
from node.proto.rendezvous.wire import MAX_CANDIDATES
from node.proto.vocabulary import PeerId

__all__ = ["ClientLimits", "ClientStats", "RendezvousClient"]

_U32 = 1 << 32


@dataclass(frozen=True, slots=True)
class ClientLimits:
    answer_timeout_s: float = 5.0
    sync_timeout_s: float = 5.0
    max_outstanding: int = 64  # introductions awaiting an answer, and (apart) awaiting a Sync

    def __post_init__(self) -> None:
        if self.answer_timeout_s <= 0 or self.sync_timeout_s <= 0 or self.max_outstanding < 1:
            raise RendezvousUsageError(RendezvousMisuse.BAD_LIMITS, f"{self}: every limit must be positive")


@dataclass(frozen=True, slots=True)
class ClientStats:
    outstanding: int  # our Introduces awaiting an answer
    awaiting_sync: int  # introductions to us, accepted, awaiting Synced
    registered_peers: int | None  # the introducer's last Registered, None before one
    drops: tuple[tuple[ClientDrop, int], ...]


@dataclass(frozen=True, slots=True)
class _Request:
    target: PeerId
    token: bytes
    sent_at: float
    deadline: float


@dataclass(frozen=True, slots=True)
class _Asked:
    peer: PeerId
    deadline: float


class RendezvousClient:
    def __init__(self, limits: ClientLimits | None = None) -> None:
        self.limits = limits or ClientLimits()
        self._requests: dict[int, _Request] = {}
        self._asked: dict[bytes, _Asked] = {}  # B side, by token
        self._next_request = 1
        self._local: Register = Register((), NatProfile(NatType.UNKNOWN))
        self._registered_peers: int | None = None
        self._drops: Counter[ClientDrop] = Counter()

    def register(self, candidates: Candidates, nat: NatProfile) -> Register:
        """The ``Register`` to send (again on every change); later ``Accept``s carry the same."""
        _check_candidates(candidates)
        self._local = Register(tuple(candidates), nat)
        return self._local

    def introduce(
        self, target: PeerId, candidates: Candidates, nat: NatProfile, token: bytes, now: float
    ) -> tuple[int, Introduce]:
        """A new request for ``target`` (``token``: 16 random bytes, the punch's token)."""
        _check_candidates(candidates)
        if len(token) != TOKEN_SIZE:
            raise RendezvousUsageError(RendezvousMisuse.BAD_TOKEN, f"{len(token)} bytes")
        if len(self._requests) >= self.limits.max_outstanding:
            raise RendezvousUsageError(
                RendezvousMisuse.TOO_MANY_OUTSTANDING,
                f"{len(self._requests)} introductions await an answer, at most {self.limits.max_outstanding}",
            )
        if any(r.token == token for r in self._requests.values()) or token in self._asked:
            raise RendezvousUsageError(RendezvousMisuse.DUPLICATE_TOKEN, f"token {token.hex()}")
        request = self._new_request_id()
        deadline = now + self.limits.answer_timeout_s
        self._requests[request] = _Request(target, bytes(token), now, deadline)
        return request, Introduce(request, target, bytes(token), tuple(candidates), nat)

    def decline(self, token: bytes, reason: Refusal = Refusal.DECLINED) -> Decline:
        """The ``Decline`` to send instead of a ``PunchAsB``'s ``accept``."""
        if self._asked.pop(token, None) is None:
            raise RendezvousUsageError(RendezvousMisuse.UNKNOWN_TOKEN, f"token {token.hex()}")
        return Decline(token, reason)

    def receive(self, message: Message, now: float) -> list[Event]:
        match message:
            case Accepted():
                return self._accepted(message, now)
            case Refused(request, reason):
                return self._refused(request, reason)
            case Introduced():
                return self._introduced(message, now)
            case Synced(token):
                asked = self._asked.pop(token, None)
                if asked is None:
                    self._drops[ClientDrop.UNKNOWN_TOKEN] += 1
                    return []
                return [Fire(token, now, asked.peer)]
            case Registered(count):
                self._registered_peers = count
                return []
        self._drops[ClientDrop.NOT_FROM_INTRODUCER] += 1
        return []

    def get_timer(self) -> float | None:
        deadlines = [r.deadline for r in self._requests.values()]
        deadlines += [a.deadline for a in self._asked.values()]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> list[Event]:
        events: list[Event] = []
        for request, r in list(self._requests.items()):
            if r.deadline <= now:
                del self._requests[request]
                events.append(IntroduceRefused(request, r.target, Refusal.TIMED_OUT))
        for token, a in list(self._asked.items()):
            if a.deadline <= now:
                del self._asked[token]
        return events

    def stats(self) -> ClientStats:
        return ClientStats(
            outstanding=len(self._requests),
            awaiting_sync=len(self._asked),
            registered_peers=self._registered_peers,
            drops=tuple((d, self._drops[d]) for d in ClientDrop if self._drops[d]),
        )

    def _new_request_id(self) -> int:
        # Ids 1..2^32-1 in turn (0 answers a Register), skipping any still outstanding.
        while True:
            request = self._next_request
            self._next_request = request % (_U32 - 1) + 1
            if request not in self._requests:
                return request

    def _accepted(self, message: Accepted, now: float) -> list[Event]:
        r = self._requests.get(message.request)
        if r is None or r.token != message.token:
            self._drops[ClientDrop.UNKNOWN_REQUEST] += 1
            return []
        del self._requests[message.request]
        rtt = max(0.0, now - r.sent_at)
        sync = Sync(message.token)
        return [
            PunchAsA(
                message.request, r.target, r.token, message.candidates, message.nat, now + rtt / 2, sync, rtt
            )
        ]

    def _refused(self, request: int, reason: Refusal) -> list[Event]:
        if request == REGISTER_REQUEST:
            return [RegistrationRefused(reason)]
        r = self._requests.pop(request, None)
        if r is None:
            self._drops[ClientDrop.UNKNOWN_REQUEST] += 1
            return []
        return [IntroduceRefused(request, r.target, reason)]

    def _introduced(self, message: Introduced, now: float) -> list[Event]:
        if message.token in self._asked:
            self._drops[ClientDrop.DUPLICATE_TOKEN] += 1
            return []
        if len(self._asked) >= self.limits.max_outstanding:
            # Not answered: the introducer times the requester out (TIMED_OUT).
            self._drops[ClientDrop.TOO_MANY_PENDING] += 1
            return []
        self._asked[message.token] = _Asked(message.source, now + self.limits.sync_timeout_s)
        accept = Accept(message.token, self._local.candidates, self._local.nat)
        return [PunchAsB(message.source, message.token, message.candidates, message.nat, accept)]


def _check_candidates(candidates: Candidates) -> None:
    if len(candidates) > MAX_CANDIDATES:
        raise RendezvousUsageError(
            RendezvousMisuse.CANNOT_ENCODE, f"{len(candidates)} candidates, at most {MAX_CANDIDATES}"
        )
