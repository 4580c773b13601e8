"""The introducer's side of rendezvous, sans-IO: registrations, introductions in progress, limits.

``handle(source, message, now)`` takes one decoded message from the link of peer ``source`` (the
peer id the link's TLS handshake proved) and returns what to send to whom. The source of an
introduction is always that link's peer, never a field: ``Introduced`` names the peer whose link
the ``Introduce`` came in on, only the target named by the introduction may ``Accept`` or
``Decline`` it, and only its requester may ``Sync`` it; anything else is dropped and counted.

An introduction waits for the target's answer, then (accepted) for the requester's ``Sync``, each
for ``pending_lifetime_s``. Unanswered, the requester gets ``Refused(TIMED_OUT)``; accepted but
never synced, it is forgotten (the requester already has the target's candidates and punches).
When a target's link goes down (``link_down``) its unanswered introductions are refused at once
with ``UNKNOWN_PEER``: the target is gone, there is nothing to wait for.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass
from typing import TypeAlias

from node.proto.rendezvous.errors import (
    IntroducerDrop,
    Refusal,
    RendezvousMisuse,
    RendezvousUsageError,
)
from node.proto.rendezvous.messages import (
    REGISTER_REQUEST,
    Accept,
    Accepted,
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
from node.proto.vocabulary import PeerId

__all__ = ["Introducer", "IntroducerLimits", "IntroducerStats", "Outgoing"]

Outgoing: TypeAlias = list[tuple[PeerId, Message]]


@dataclass(frozen=True, slots=True)
class IntroducerLimits:
    max_registrations: int = 1000
    max_pending_per_source: int = 8
    max_pending: int = 256
    introduce_rate: float = 10.0  # per second and source, a token bucket ...
    introduce_burst: int = 20  # ... this deep
    pending_lifetime_s: float = 10.0

    def __post_init__(self) -> None:
        counts = (self.max_registrations, self.max_pending_per_source, self.max_pending, self.introduce_burst)
        if min(counts) < 1 or self.introduce_rate <= 0 or self.pending_lifetime_s <= 0:
            raise RendezvousUsageError(RendezvousMisuse.BAD_LIMITS, f"{self}: every limit must be positive")


@dataclass(frozen=True, slots=True)
class IntroducerStats:
    registered_peers: int
    pending: int
    introductions: int  # Introduced sent to a target
    relayed: int  # messages passed from one peer to another (Introduced, Accepted, decline, Synced)
    refusals: tuple[tuple[Refusal, int], ...]
    drops: tuple[tuple[IntroducerDrop, int], ...]


class _Stage(enum.Enum):
    ASKED = "asked"  # Introduced sent, waiting for the target's Accept or Decline
    ACCEPTED = "accepted"  # Accepted sent, waiting for the requester's Sync


@dataclass(slots=True)
class _Pending:
    source: PeerId
    request: int
    target: PeerId
    expires: float
    stage: _Stage = _Stage.ASKED


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class Introducer:
    def __init__(self, limits: IntroducerLimits | None = None) -> None:
        self.limits = limits or IntroducerLimits()
        self._registered: dict[PeerId, Register] = {}
        self._pending: dict[bytes, _Pending] = {}  # by token
        self._buckets: dict[PeerId, _Bucket] = {}
        self._introductions = 0
        self._relayed = 0
        self._refusals: Counter[Refusal] = Counter()
        self._drops: Counter[IntroducerDrop] = Counter()

    def handle(self, source: PeerId, message: Message, now: float) -> Outgoing:
        """What to send to whom for ``message`` from the link of ``source``."""
        match message:
            case Register():
                return self._register(source, message)
            case Introduce():
                return self._introduce(source, message, now)
            case Accept() | Decline():
                return self._answer(source, message, now)
            case Sync(token):
                return self._sync(source, token)
        self._drops[IntroducerDrop.NOT_FROM_CLIENT] += 1
        return []

    def link_down(self, peer: PeerId) -> Outgoing:
        """Forget ``peer``: its registration, its rate, and every introduction it is part of."""
        self._registered.pop(peer, None)
        self._buckets.pop(peer, None)
        out: Outgoing = []
        for token, p in list(self._pending.items()):
            if peer in (p.source, p.target):
                del self._pending[token]
                if p.source != peer and p.stage is _Stage.ASKED:
                    out.append(self._refuse(p.source, p.request, Refusal.UNKNOWN_PEER))
        return out

    def get_timer(self) -> float | None:
        return min((p.expires for p in self._pending.values()), default=None)

    def handle_timer(self, now: float) -> Outgoing:
        out: Outgoing = []
        for token, p in list(self._pending.items()):
            if p.expires <= now:
                del self._pending[token]
                if p.stage is _Stage.ASKED:
                    out.append(self._refuse(p.source, p.request, Refusal.TIMED_OUT))
        return out

    def stats(self) -> IntroducerStats:
        return IntroducerStats(
            registered_peers=len(self._registered),
            pending=len(self._pending),
            introductions=self._introductions,
            relayed=self._relayed,
            refusals=tuple((r, self._refusals[r]) for r in Refusal if self._refusals[r]),
            drops=tuple((d, self._drops[d]) for d in IntroducerDrop if self._drops[d]),
        )

    def _refuse(self, peer: PeerId, request: int, reason: Refusal) -> tuple[PeerId, Message]:
        self._refusals[reason] += 1
        return peer, Refused(request, reason)

    def _register(self, source: PeerId, message: Register) -> Outgoing:
        if source not in self._registered and len(self._registered) >= self.limits.max_registrations:
            return [self._refuse(source, REGISTER_REQUEST, Refusal.TOO_MANY_REGISTRATIONS)]
        self._registered[source] = message  # a newer registration replaces the older
        return [(source, Registered(len(self._registered)))]

    def _introduce(self, source: PeerId, message: Introduce, now: float) -> Outgoing:
        refusal = self._refusal(source, message, now)
        if refusal is not None:
            return [self._refuse(source, message.request, refusal)]
        if message.token in self._pending:
            # 128 random bits do not collide by chance; a requester reusing one only hurts itself
            # (its client times the request out), and may not take over another's introduction.
            self._drops[IntroducerDrop.DUPLICATE_TOKEN] += 1
            return []
        expires = now + self.limits.pending_lifetime_s
        self._pending[message.token] = _Pending(source, message.request, message.target, expires)
        self._introductions += 1
        self._relayed += 1
        introduced = Introduced(source, message.token, message.candidates, message.nat)
        return [(message.target, introduced)]

    def _refusal(self, source: PeerId, message: Introduce, now: float) -> Refusal | None:
        if source not in self._registered:
            return Refusal.NOT_REGISTERED
        if not self._take_token(source, now):
            return Refusal.TOO_MANY_REQUESTS
        if message.target == source:
            return Refusal.SELF
        if message.target not in self._registered:
            return Refusal.UNKNOWN_PEER
        mine = sum(1 for p in self._pending.values() if p.source == source)
        if mine >= self.limits.max_pending_per_source or len(self._pending) >= self.limits.max_pending:
            return Refusal.TOO_MANY_PENDING
        return None

    def _take_token(self, source: PeerId, now: float) -> bool:
        limits = self.limits
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = _Bucket(float(limits.introduce_burst), now)
        elif now > bucket.at:  # a clock that steps back refills nothing
            refill = (now - bucket.at) * limits.introduce_rate
            bucket.tokens = min(float(limits.introduce_burst), bucket.tokens + refill)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False

    def _answer(self, source: PeerId, message: Accept | Decline, now: float) -> Outgoing:
        p = self._pending.get(message.token)
        if p is None:
            self._drops[IntroducerDrop.UNKNOWN_TOKEN] += 1
            return []
        if p.target != source:
            self._drops[IntroducerDrop.WRONG_PEER] += 1
            return []
        if p.stage is not _Stage.ASKED:
            self._drops[IntroducerDrop.OUT_OF_ORDER] += 1
            return []
        self._relayed += 1
        if isinstance(message, Decline):
            # The target's own reason is passed on: it may say "busy" (TOO_MANY_PENDING) as well
            # as DECLINED, and the requester may back off on it.
            del self._pending[message.token]
            return [self._refuse(p.source, p.request, message.reason)]
        p.stage = _Stage.ACCEPTED
        p.expires = now + self.limits.pending_lifetime_s
        return [(p.source, Accepted(p.request, message.token, message.candidates, message.nat))]

    def _sync(self, source: PeerId, token: bytes) -> Outgoing:
        p = self._pending.get(token)
        if p is None:
            self._drops[IntroducerDrop.UNKNOWN_TOKEN] += 1
            return []
        if p.source != source:
            self._drops[IntroducerDrop.WRONG_PEER] += 1
            return []
        if p.stage is not _Stage.ACCEPTED:
            self._drops[IntroducerDrop.OUT_OF_ORDER] += 1
            return []
        del self._pending[token]
        self._relayed += 1
        return [(p.target, Synced(token))]
