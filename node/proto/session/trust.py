"""How the datagram secure session decides whom it is talking to: the ``PeerVerifier`` interface.

The handshake (node.proto.session.secure_session) proves that the peer holds the Ed25519 private key for
``public_key``; a verifier then decides whether that key may be a peer here at all and which peer
id it proves. The trust policy lives outside the core (fleet CA, pinned ids, development mode; see
node.security.trust) and is plugged in through this Protocol, so the core never parses certificates.

``credential`` is opaque to the core: the peer's node certificate (DER) in fleet-CA mode, empty
otherwise. The proven peer id is always node.proto.identity.peer_id_of(public_key): a verifier may refuse
a key, never rename it.
"""

from __future__ import annotations

import enum
from typing import Protocol

from node.errors import ReasonError, RemoteError

__all__ = ["PeerVerificationError", "PeerVerifier", "VerifyFailure"]


class VerifyFailure(enum.Enum):
    """Why a verifier refused the key a peer proved."""

    WRONG_PEER = "the key proves another peer id than the one dialled"
    NOT_TRUSTED = "the key is not trusted here (not pinned, or no fleet certificate for it)"
    BAD_CREDENTIAL = "the credential is malformed, expired, or not issued by the fleet CA"
    CREDENTIAL_MISMATCH = "the credential names another key or peer id than the one proved"


class PeerVerificationError(ReasonError[VerifyFailure], RemoteError):
    """A peer proved possession of a key that the trust policy does not accept."""


class PeerVerifier(Protocol):
    """The trust policy the secure session consults once per handshake, for the remote side.

    ``verify`` is called only after the peer has proved possession of ``public_key`` (a raw
    32-byte Ed25519 key) by signing the handshake transcript. It returns the proven peer id
    (node.proto.identity.peer_id_of(public_key)) or raises PeerVerificationError. ``expected_peer_id``
    is the id that was dialled (None when the peer dialled us): a key for any other id must be
    refused with VerifyFailure.WRONG_PEER. Any other exception is treated as NOT_TRUSTED.
    """

    def verify(self, public_key: bytes, credential: bytes, expected_peer_id: str | None) -> str: ...
