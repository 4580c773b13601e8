"""What the session table (node.proto.session.table) is configured with, reports and counts.

Events name the peer by its proven peer id, never by an address; the address rides along for the
caller's information (and for the relay's address-to-peer map, learned only from these events).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from node.errors import LocalError, ReasonError
from node.proto.session.errors import HandshakeError, HandshakeFailure
from node.proto.session.secure_session import DEFAULT_SESSION_CONFIG, SessionConfig
from node.proto.session.trust import PeerVerificationError
from node.proto.vocabulary import DisconnectReason

__all__ = [
    "DEFAULT_TABLE_CONFIG",
    "DialFailed",
    "GoneReason",
    "PeerDatagram",
    "PeerEstablished",
    "PeerGone",
    "PeerRoamed",
    "TableConfig",
    "TableCount",
    "TableError",
    "TableEvent",
    "TableProblem",
    "TableStatus",
]

A = TypeVar("A")

# Linux conntrack forgets an unreplied UDP mapping after 30 s (nf_conntrack_udp_timeout), so a
# keepalive must leave an idle path at least every 25 s; 10 s (WireGuard's KEEPALIVE_TIMEOUT) lets
# consent (30 s, RFC 7675 §5.1's shape) survive two keepalives lost in a row.
KEEPALIVE_AFTER: Final = 10.0
CONSENT_TIMEOUT: Final = 30.0
MAX_SESSIONS: Final = 100  # transport.max_connections' default


class TableProblem(enum.Enum):
    BAD_CONFIG = "session table setting out of range"
    AT_CAPACITY = "the table already holds max_sessions sessions"
    NO_SESSION = "no established session with this peer"


class TableError(ReasonError[TableProblem], LocalError):
    """The table was asked for something it cannot do (our misuse or configuration)."""


@dataclass(frozen=True, slots=True)
class TableConfig:
    max_sessions: int = MAX_SESSIONS
    keepalive_after: float = KEEPALIVE_AFTER  # send an empty datagram after this long sending nothing
    consent_timeout: float = CONSENT_TIMEOUT  # the path is dead after this long with nothing authentic
    session: SessionConfig = DEFAULT_SESSION_CONFIG

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise TableError(TableProblem.BAD_CONFIG, f"max_sessions must be >= 1, got {self.max_sessions}")
        for name in ("keepalive_after", "consent_timeout"):
            value = getattr(self, name)
            if not (value > 0.0 and math.isfinite(value)):
                raise TableError(TableProblem.BAD_CONFIG, f"{name} must be positive and finite, got {value}")
        if not self.keepalive_after < self.consent_timeout:
            raise TableError(
                TableProblem.BAD_CONFIG,
                f"keepalive_after ({self.keepalive_after}) must be below consent_timeout "
                f"({self.consent_timeout}), or an idle path dies",
            )


DEFAULT_TABLE_CONFIG: Final = TableConfig()


class TableCount(enum.Enum):
    """What the table counts (for ``status``); gauges are in ``TableStatus``."""

    DIALLED = "sessions dialled by connect()"
    INITS_ACCEPTED = "INITs that created a responder session"
    ESTABLISHED = "sessions whose first handshake completed (either side)"
    REKEYED = "rekeys completed on established sessions"
    HANDSHAKES_FAILED = "handshakes that failed for good (timeout, bad proof, refused by trust)"
    MALFORMED = "datagrams that are no session message (bad type word, wrong size, bad key)"
    UNKNOWN_INDEX = "datagrams whose receiver index no session holds (stale or forged)"
    UNAUTHENTICATED = "datagrams routed to a session that did not authenticate there"
    REFUSED_AT_CAPACITY = "INITs refused because the table was full"
    REFUSED_BY_ADMISSION = "INITs the admission hook refused"
    ADMISSION_REPLIES = "replies (cookies) the admission hook sent instead of admitting"
    ROAMED = "peer addresses moved by an authenticated datagram from a new address"
    KEEPALIVES = "keepalives sent on idle established sessions"
    CONSENT_EXPIRED = "sessions closed after consent_timeout without an authenticated datagram"
    RETIRED = "older sessions of a peer closed quietly once silent (a newer one took over)"


@dataclass(frozen=True, slots=True)
class TableStatus:
    sessions: int  # every live session: dialling, responding, established
    peers: int  # peers with an established session
    counts: dict[TableCount, int]


class GoneReason(enum.Enum):
    CONSENT_EXPIRED = "no authenticated datagram within consent_timeout"
    KEYS_EXPIRED = "keys reached reject-after-time without a successful rekey"
    HANDSHAKE_FAILED = "the keys were never confirmed and no others remain"
    CLOSED_LOCALLY = "closed locally"
    NETWORK_DOWN = "the local address the session used is gone"

    @property
    def disconnect_reason(self) -> DisconnectReason:
        return _DISCONNECT[self]


_DISCONNECT: Final = {
    GoneReason.CONSENT_EXPIRED: DisconnectReason.TIMEOUT,
    GoneReason.KEYS_EXPIRED: DisconnectReason.TIMEOUT,
    GoneReason.HANDSHAKE_FAILED: DisconnectReason.TIMEOUT,  # the CONFIRM never got through
    GoneReason.CLOSED_LOCALLY: DisconnectReason.CLOSED_LOCALLY,
    GoneReason.NETWORK_DOWN: DisconnectReason.NETWORK_DOWN,
}


@dataclass(frozen=True, slots=True)
class PeerEstablished(Generic[A]):
    """A session with ``peer_id`` is up and is now the one ``send`` uses.

    May repeat for a peer: a newer session (the peer restarted, or both dialled at once) took over;
    the older one still receives until it goes silent, and then closes without a PeerGone.
    """

    peer_id: str
    addr: A
    initiator: bool


@dataclass(frozen=True, slots=True)
class PeerDatagram:
    peer_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class PeerRoamed(Generic[A]):
    """An authenticated datagram of ``peer_id`` came from ``new``: replies go there from now on."""

    peer_id: str
    old: A
    new: A


@dataclass(frozen=True, slots=True)
class PeerGone(Generic[A]):
    peer_id: str
    addr: A
    reason: GoneReason


@dataclass(frozen=True, slots=True)
class DialFailed(Generic[A]):
    """``connect`` did not reach ``expected_peer_id`` at ``addr``: no answer, or another peer
    (``reason`` REFUSED_BY_TRUST with a PeerVerificationError of reason WRONG_PEER)."""

    expected_peer_id: str
    addr: A
    reason: HandshakeFailure
    error: HandshakeError | PeerVerificationError


TableEvent = PeerEstablished[A] | PeerDatagram | PeerRoamed[A] | PeerGone[A] | DialFailed[A]
