"""Rendezvous messages on the wire: frames on the introducer link, beside delivery's DATA (1) and
ACK (2) (node.proto.delivery.wire).

    message    = type=3 u8 | subtype u8 | fields (below, in order)
    Register   1: candidates nat              Registered 2: registered_peers u32
    Introduce  3: request u32 peer token candidates nat
    Introduced 4: peer token candidates nat   Accept     5: token candidates nat
    Decline    6: token refusal u8            Accepted   7: request u32 token candidates nat
    Refused    8: request u32 refusal u8      Sync       9: token      Synced 10: token
    peer       = 52 bytes, lower-case base32 (node.proto.peer_uri.is_peer_id)
    token      = 16 bytes
    candidates = count u8 (at most MAX_CANDIDATES) | count x candidate
    candidate  = kind u8 | family u8 (4 or 6) | address (4 or 16 bytes) | port u16 (not 0) |
                 priority u32
    nat        = nat_type u8 | mapping u8 | filtering u8 | port_allocation u8 | has_delta u8 (0, 1) |
                 port_delta i32 (0 when has_delta is 0)

Big-endian. Enums travel as codes from the fixed tables below (never an enum's order or value
text, so renaming a member cannot change the wire); 0 is None for the optional NAT fields.
Decoding is strict: any byte the format does not allow raises ``RendezvousWireError``; nothing
else escapes for any input (tests/unit/rendezvous/test_wire.py fuzzes it).
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Callable
from typing import Final, TypeVar

from node.proto.natprobe.types import Behaviour, NatType, PortAllocation
from node.proto.peer_uri import PEER_ID_LENGTH, is_peer_id
from node.proto.punch.candidates import Candidate, CandidateKind
from node.proto.punch.plan import NatProfile
from node.proto.punch.wire import TOKEN_SIZE
from node.proto.rendezvous.errors import (
    Refusal,
    RendezvousMisuse,
    RendezvousUsageError,
    RendezvousWireError,
    WireProblem,
)
from node.proto.rendezvous.messages import (
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
from node.proto.vocabulary import PeerId

__all__ = ["MAX_CANDIDATES", "MAX_MESSAGE", "TYPE_RENDEZVOUS", "Subtype", "decode", "encode"]

TYPE_RENDEZVOUS: Final = 3  # after delivery's TYPE_DATA (1) and TYPE_ACK (2) on the same link
MAX_CANDIDATES: Final = 16
_CANDIDATE4: Final = 12
_CANDIDATE6: Final = 24
_NAT: Final = struct.Struct(">BBBBBi")
# The largest message (Introduce with 16 IPv6 candidates) is 468 bytes: one small frame.
MAX_MESSAGE: Final = 512

E = TypeVar("E", bound=enum.Enum)


class Subtype(enum.IntEnum):
    REGISTER = 1
    REGISTERED = 2
    INTRODUCE = 3
    INTRODUCED = 4
    ACCEPT = 5
    DECLINE = 6
    ACCEPTED = 7
    REFUSED = 8
    SYNC = 9
    SYNCED = 10


# Fixed code tables: code i + 1 is the member at index i (0 is None where a field is optional).
_KINDS: Final = (CandidateKind.HOST, CandidateKind.SRFLX, CandidateKind.PRFLX, CandidateKind.RELAY)
_NAT_TYPES: Final = (
    NatType.OPEN,
    NatType.FULL_CONE,
    NatType.RESTRICTED_CONE,
    NatType.PORT_RESTRICTED,
    NatType.SYMMETRIC,
    NatType.UDP_BLOCKED,
    NatType.UNKNOWN,
)
_BEHAVIOURS: Final = (
    Behaviour.ENDPOINT_INDEPENDENT,
    Behaviour.ADDRESS_DEPENDENT,
    Behaviour.ADDRESS_AND_PORT_DEPENDENT,
)
_ALLOCATIONS: Final = (PortAllocation.PRESERVING, PortAllocation.SEQUENTIAL, PortAllocation.RANDOM)
_REFUSALS: Final = (
    Refusal.UNKNOWN_PEER,
    Refusal.NOT_REGISTERED,
    Refusal.TOO_MANY_REQUESTS,
    Refusal.TOO_MANY_PENDING,
    Refusal.TOO_MANY_REGISTRATIONS,
    Refusal.SELF,
    Refusal.DECLINED,
    Refusal.TIMED_OUT,
    Refusal.NOT_SERVING,
)


# -- encoding ----------------------------------------------------------------------------------


def encode(message: Message) -> bytes:
    """The frame of ``message``; ``RendezvousUsageError`` (CANNOT_ENCODE) when a field does not fit
    the format (a bad peer id or token, too many candidates, a number out of its range)."""
    try:
        subtype, body = _encode_body(message)
    except (struct.error, ValueError) as error:
        raise RendezvousUsageError(
            RendezvousMisuse.CANNOT_ENCODE, f"{type(message).__name__}: {error}"
        ) from error
    return bytes((TYPE_RENDEZVOUS, subtype)) + body


def _encode_body(message: Message) -> tuple[Subtype, bytes]:
    match message:
        case Register(candidates, nat):
            return Subtype.REGISTER, _candidates(candidates) + _nat(nat)
        case Registered(count):
            return Subtype.REGISTERED, _u32(count)
        case Introduce(request, target, token, candidates, nat):
            body = _u32(request) + _peer(target) + _token(token) + _candidates(candidates) + _nat(nat)
            return Subtype.INTRODUCE, body
        case Introduced(source, token, candidates, nat):
            return Subtype.INTRODUCED, _peer(source) + _token(token) + _candidates(candidates) + _nat(nat)
        case Accept(token, candidates, nat):
            return Subtype.ACCEPT, _token(token) + _candidates(candidates) + _nat(nat)
        case Decline(token, reason):
            return Subtype.DECLINE, _token(token) + bytes((_code(_REFUSALS, reason),))
        case Accepted(request, token, candidates, nat):
            return Subtype.ACCEPTED, _u32(request) + _token(token) + _candidates(candidates) + _nat(nat)
        case Refused(request, reason):
            return Subtype.REFUSED, _u32(request) + bytes((_code(_REFUSALS, reason),))
        case Sync(token):
            return Subtype.SYNC, _token(token)
        case Synced(token):
            return Subtype.SYNCED, _token(token)
    raise ValueError(f"{message!r} is not a rendezvous message")


def _u32(value: int) -> bytes:
    return struct.pack(">I", value)


def _peer(peer: PeerId) -> bytes:
    if not is_peer_id(peer):
        raise ValueError(f"{peer!r} is not a peer id")
    return peer.encode("ascii")


def _token(token: bytes) -> bytes:
    if len(token) != TOKEN_SIZE:
        raise ValueError(f"token of {len(token)} bytes, must be {TOKEN_SIZE}")
    return bytes(token)


def _code(table: tuple[E, ...], member: E | None) -> int:
    return 0 if member is None else table.index(member) + 1


def _candidates(candidates: Candidates) -> bytes:
    if len(candidates) > MAX_CANDIDATES:
        raise ValueError(f"{len(candidates)} candidates, at most {MAX_CANDIDATES}")
    parts = [bytes((len(candidates),))]
    for candidate in candidates:
        ip, port = candidate.address
        if port == 0:
            raise ValueError(f"candidate {candidate} has port 0")
        parts.append(bytes((_code(_KINDS, candidate.kind), ip.version)) + ip.packed)
        parts.append(struct.pack(">HI", port, candidate.priority))
    return b"".join(parts)


def _nat(nat: NatProfile) -> bytes:
    delta = nat.port_delta
    return _NAT.pack(
        _code(_NAT_TYPES, nat.nat_type),
        _code(_BEHAVIOURS, nat.mapping),
        _code(_BEHAVIOURS, nat.filtering),
        _code(_ALLOCATIONS, nat.port_allocation),
        0 if delta is None else 1,
        0 if delta is None else delta,
    )


# -- decoding ----------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("at", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, size: int, what: str) -> bytes:
        end = self.at + size
        if end > len(self.data):
            raise RendezvousWireError(
                WireProblem.TRUNCATED, f"{what} needs {size} bytes at offset {self.at} of {len(self.data)}"
            )
        chunk = self.data[self.at : end]
        self.at = end
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u32(self, what: str) -> int:
        value: int = struct.unpack(">I", self.take(4, what))[0]
        return value

    def end(self, subtype: Subtype) -> None:
        if self.at != len(self.data):
            raise RendezvousWireError(
                WireProblem.TRAILING_BYTES, f"{len(self.data) - self.at} bytes after {subtype.name}"
            )


def decode(data: bytes) -> Message:
    """One rendezvous message; ``RendezvousWireError`` for anything malformed."""
    if len(data) > MAX_MESSAGE:
        raise RendezvousWireError(WireProblem.TOO_LARGE, f"{len(data)} bytes, at most {MAX_MESSAGE}")
    reader = _Reader(bytes(data))
    kind = reader.u8("frame type")
    if kind != TYPE_RENDEZVOUS:
        raise RendezvousWireError(
            WireProblem.NOT_RENDEZVOUS, f"frame type {kind}, expected {TYPE_RENDEZVOUS}"
        )
    code = reader.u8("subtype")
    if code not in Subtype.__members__.values():
        raise RendezvousWireError(WireProblem.UNKNOWN_SUBTYPE, f"subtype {code}, known 1..{len(Subtype)}")
    subtype = Subtype(code)
    message = _DECODERS[subtype](reader)
    reader.end(subtype)
    return message


def _read_peer(reader: _Reader) -> PeerId:
    text = reader.take(PEER_ID_LENGTH, "peer id").decode("latin-1")
    if not is_peer_id(text):
        raise RendezvousWireError(WireProblem.BAD_PEER_ID, f"{text!r}")
    return text


def _read_token(reader: _Reader) -> bytes:
    return reader.take(TOKEN_SIZE, "token")


def _member(table: tuple[E, ...], code: int, what: str) -> E | None:
    if code > len(table):
        raise RendezvousWireError(WireProblem.BAD_ENUM, f"{what} code {code}, known 0..{len(table)}")
    return None if code == 0 else table[code - 1]


def _required(table: tuple[E, ...], code: int, what: str) -> E:
    member = _member(table, code, what)
    if member is None:
        raise RendezvousWireError(WireProblem.BAD_ENUM, f"{what} code 0 (none) where one is required")
    return member


def _read_candidates(reader: _Reader) -> Candidates:
    count = reader.u8("candidate count")
    if count > MAX_CANDIDATES:
        raise RendezvousWireError(
            WireProblem.TOO_MANY_CANDIDATES, f"{count} candidates, at most {MAX_CANDIDATES}"
        )
    out = []
    for i in range(count):
        kind_code = reader.u8("candidate kind")
        kind = _KINDS[kind_code - 1] if 1 <= kind_code <= len(_KINDS) else None
        family = reader.u8("candidate family")
        if kind is None or family not in (4, 6):
            raise RendezvousWireError(
                WireProblem.BAD_CANDIDATE, f"candidate {i}: kind code {kind_code}, family {family}"
            )
        raw = reader.take(4 if family == 4 else 16, "candidate address")
        ip = ipaddress.IPv4Address(raw) if family == 4 else ipaddress.IPv6Address(raw)
        port, priority = struct.unpack(">HI", reader.take(6, "candidate port and priority"))
        if port == 0:
            raise RendezvousWireError(WireProblem.BAD_CANDIDATE, f"candidate {i}: port 0")
        out.append(Candidate(kind, (ip, port), priority))
    return tuple(out)


def _read_nat(reader: _Reader) -> NatProfile:
    nat_type, mapping, filtering, allocation, has_delta, delta = _NAT.unpack(reader.take(_NAT.size, "NAT"))
    if has_delta > 1 or (has_delta == 0 and delta != 0):
        raise RendezvousWireError(WireProblem.BAD_ENUM, f"port delta flag {has_delta} with delta {delta}")
    return NatProfile(
        _required(_NAT_TYPES, nat_type, "NAT type"),
        _member(_BEHAVIOURS, mapping, "mapping"),
        _member(_BEHAVIOURS, filtering, "filtering"),
        _member(_ALLOCATIONS, allocation, "port allocation"),
        delta if has_delta else None,
    )


def _read_refusal(reader: _Reader) -> Refusal:
    return _required(_REFUSALS, reader.u8("refusal"), "refusal")


_DECODERS: Final[dict[Subtype, Callable[[_Reader], Message]]] = {
    Subtype.REGISTER: lambda r: Register(_read_candidates(r), _read_nat(r)),
    Subtype.REGISTERED: lambda r: Registered(r.u32("registered peers")),
    Subtype.INTRODUCE: lambda r: Introduce(
        r.u32("request"), _read_peer(r), _read_token(r), _read_candidates(r), _read_nat(r)
    ),
    Subtype.INTRODUCED: lambda r: Introduced(
        _read_peer(r), _read_token(r), _read_candidates(r), _read_nat(r)
    ),
    Subtype.ACCEPT: lambda r: Accept(_read_token(r), _read_candidates(r), _read_nat(r)),
    Subtype.DECLINE: lambda r: Decline(_read_token(r), _read_refusal(r)),
    Subtype.ACCEPTED: lambda r: Accepted(r.u32("request"), _read_token(r), _read_candidates(r), _read_nat(r)),
    Subtype.REFUSED: lambda r: Refused(r.u32("request"), _read_refusal(r)),
    Subtype.SYNC: lambda r: Sync(_read_token(r)),
    Subtype.SYNCED: lambda r: Synced(_read_token(r)),
}
