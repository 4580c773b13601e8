"""The rendezvous messages (DCUtR's shape, carried on an authenticated link to an introducer).

    A -> I  Introduce(request, target, token, candidates, nat)
    I -> B  Introduced(source = A, token, candidates, nat)     or I -> A Refused(request, reason)
    B -> I  Accept(token, candidates, nat)                     or Decline(token, reason)
    I -> A  Accepted(request, token, candidates, nat)          or Refused(request, reason)
    A -> I  Sync(token);  I -> B  Synced(token)
    A -> I  Register(candidates, nat);  I -> A  Registered(registered_peers)

The introducer names a source only in ``Introduced``, and takes it from the link the
``Introduce`` arrived on (proven by TLS), never from a field a client wrote. ``request`` 0 is
reserved: a ``Refused`` of request 0 refuses a ``Register``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from node.proto.punch.candidates import Candidate
from node.proto.punch.plan import NatProfile
from node.proto.rendezvous.errors import Refusal
from node.proto.vocabulary import PeerId

__all__ = [
    "REGISTER_REQUEST",
    "Accept",
    "Accepted",
    "Decline",
    "Introduce",
    "Introduced",
    "Message",
    "Refused",
    "Register",
    "Registered",
    "Sync",
    "Synced",
]

REGISTER_REQUEST = 0  # the request id of a Refused that answers a Register

Candidates: TypeAlias = tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class Register:
    candidates: Candidates
    nat: NatProfile


@dataclass(frozen=True, slots=True)
class Registered:
    registered_peers: int


@dataclass(frozen=True, slots=True)
class Introduce:
    request: int
    target: PeerId
    token: bytes
    candidates: Candidates
    nat: NatProfile


@dataclass(frozen=True, slots=True)
class Introduced:
    source: PeerId
    token: bytes
    candidates: Candidates
    nat: NatProfile


@dataclass(frozen=True, slots=True)
class Accept:
    token: bytes
    candidates: Candidates
    nat: NatProfile


@dataclass(frozen=True, slots=True)
class Decline:
    token: bytes
    reason: Refusal


@dataclass(frozen=True, slots=True)
class Accepted:
    request: int
    token: bytes
    candidates: Candidates
    nat: NatProfile


@dataclass(frozen=True, slots=True)
class Refused:
    request: int
    reason: Refusal


@dataclass(frozen=True, slots=True)
class Sync:
    token: bytes


@dataclass(frozen=True, slots=True)
class Synced:
    token: bytes


Message: TypeAlias = (
    Register | Registered | Introduce | Introduced | Accept | Decline | Accepted | Refused | Sync | Synced
)
