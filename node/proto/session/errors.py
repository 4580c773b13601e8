"""Typed errors and reasons of the datagram secure session (node.proto.session.secure_session).

Network input never raises out of the session: a bad datagram is a counted drop (``DropReason``),
and a handshake the peer got wrong is a ``HandshakeFailed`` event carrying one of the errors
below. Only the caller's own misuse (sending before the session is up, bad configuration) raises.
"""

from __future__ import annotations

import enum

from node.errors import LocalError, ReasonError, RemoteError

__all__ = [
    "DropReason",
    "HandshakeError",
    "HandshakeFailure",
    "SessionConfigError",
    "SessionDecodeError",
    "SessionNotReady",
    "SessionStateError",
    "StateProblem",
]


class DropReason(enum.Enum):
    """Why an incoming datagram was dropped (each is counted in ``SecureSession.drops``)."""

    TRUNCATED = "shorter than its message type requires"
    UNKNOWN_TYPE = "unknown message type"
    BAD_LENGTH = "handshake initiation or cookie reply not exactly its fixed size (anti-amplification)"
    BAD_MAC = "the INIT's mac1 does not verify (damaged, or not a secure-session INIT)"
    BAD_COOKIE_REPLY = "cookie reply that does not open for the INIT we sent last (forged or replayed)"
    UNKNOWN_INDEX = "no live handshake or keys for its receiver index (stale, expired or forged)"
    BAD_EPHEMERAL = "the X25519 ephemeral key is invalid (low order)"
    DECRYPT_FAILED = "authentication failed: tampered, or sealed under another key"
    REPLAYED = "counter already seen (anti-replay window)"
    TOO_OLD = "counter older than the anti-replay window"
    COUNTER_LIMIT = "counter at or past the reject-after-messages limit"
    UNEXPECTED = "handshake message not expected in this state (duplicate or stray)"
    GLARE_LOST = "simultaneous initiation; ours wins (larger ephemeral key)"
    EARLY_OVERFLOW = "too many transport datagrams ahead of the handshake confirmation"
    CLOSED = "the session is closed"


class SessionDecodeError(ReasonError[DropReason], RemoteError):
    """Bytes from the network that are not a valid secure-session message."""


class HandshakeFailure(enum.Enum):
    """Why a handshake failed for good (the other failures are retried or dropped)."""

    TIMEOUT = "no answer within the handshake retransmission schedule"
    BAD_SIGNATURE = "the transcript signature does not verify with the key the peer presented"
    MALFORMED_PROOF = "the peer's identity proof does not parse"
    REFUSED_BY_TRUST = "the trust policy refused the proven key (see the PeerVerificationError)"
    PATH_GONE = "the link or socket it ran on went away before it completed"


class HandshakeError(ReasonError[HandshakeFailure], RemoteError):
    """The peer took part in the handshake but could not prove an acceptable identity."""


class SessionStateError(LocalError):
    """The session was driven in a way its state machine does not allow (our misuse)."""


class StateProblem(enum.Enum):
    NOT_ESTABLISHED = "no session keys yet: wait for SessionEstablished"
    CLOSED = "the session is closed"
    KEYS_EXHAUSTED = "the current keys reached reject-after-messages; wait for the rekey"
    TOO_LARGE = "payload larger than the configured maximum"


class SessionNotReady(ReasonError[StateProblem], SessionStateError):
    """``send`` cannot seal now; ``reason`` (also read as ``problem``) says why."""

    @property
    def problem(self) -> StateProblem:
        return self.reason


class SessionConfigError(LocalError):
    """A secure-session setting is out of range or inconsistent."""
