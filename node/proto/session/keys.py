"""The secure session's key schedule: transcript hash, HKDF, handshake and transport keys.

Shaped after Noise (the running hash ``h`` over every handshake byte, keys from HKDF with the
chaining key as PRK) and TLS 1.3 (RFC 8446 §7.1: separate keys per direction, each derived with
a label and the transcript hash so far). All of SHA-256 and HKDF-SHA256 (RFC 5869).

    h0   = SHA-256(PROTOCOL_NAME)
    h1   = H(h0 || INIT)                     every byte of the initiation but mac2 (hashed as zeros)
    h2   = H(h1 || RESPONSE header)          indices and the responder's ephemeral
    prk  = HKDF-Extract(salt=h2, IKM=X25519(e_i, e_r))
    hs_r = HKDF-Expand(prk, "hs r" || h2)    seals the responder's identity proof
    hs_i = HKDF-Expand(prk, "hs i" || h2)    seals the initiator's identity proof
    h3   = H(h2 || sealed responder proof)
    h4   = H(h3 || CONFIRM)
    i->r, r->i = HKDF-Expand(prk, "i->r" / "r->i" || h4)

Each side signs ``label || H(h || its public key || its credential)`` with its Ed25519 identity
key, where ``h`` is h2 for the responder and the hash up to the CONFIRM header for the
initiator: the signature binds the key to both ephemerals and everything said before it
(SIGMA-I), and sealing the proof under keys from the DH secret confirms the peer holds them.
The labels differ per role, so a signature cannot be reflected to the other side.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

__all__ = [
    "INITIAL_HASH",
    "PROTOCOL_NAME",
    "expand",
    "extract",
    "handshake_keys",
    "mix_hash",
    "nonce",
    "signed_content",
    "transport_keys",
]

PROTOCOL_NAME: Final = b"bitcraps-node secure session v1: X25519, Ed25519, ChaCha20-Poly1305, SHA-256"
INITIAL_HASH: Final = hashlib.sha256(PROTOCOL_NAME).digest()
LABEL_HS_RESPONDER: Final = b"bcss hs r"
LABEL_HS_INITIATOR: Final = b"bcss hs i"
LABEL_I_TO_R: Final = b"bcss i->r"
LABEL_R_TO_I: Final = b"bcss r->i"
SIGN_RESPONDER: Final = b"bitcraps-node secure session v1 responder proof\x00"
SIGN_INITIATOR: Final = b"bitcraps-node secure session v1 initiator proof\x00"


def mix_hash(h: bytes, data: bytes) -> bytes:
    return hashlib.sha256(h + data).digest()


def extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869 §2.2)."""
    return hmac.digest(salt, ikm, "sha256")


def expand(prk: bytes, info: bytes) -> bytes:
    """HKDF-Expand (RFC 5869 §2.3) for one 32-byte block: T(1) = HMAC(PRK, info || 0x01)."""
    return hmac.digest(prk, info + b"\x01", "sha256")


def handshake_keys(prk: bytes, h: bytes) -> tuple[bytes, bytes]:
    """(responder's, initiator's) keys for sealing the identity proofs."""
    return expand(prk, LABEL_HS_RESPONDER + h), expand(prk, LABEL_HS_INITIATOR + h)


def transport_keys(prk: bytes, h: bytes) -> tuple[bytes, bytes]:
    """(initiator-to-responder, responder-to-initiator) keys for the transport datagrams."""
    return expand(prk, LABEL_I_TO_R + h), expand(prk, LABEL_R_TO_I + h)


def signed_content(label: bytes, h: bytes, public_key: bytes, credential: bytes) -> bytes:
    length = len(credential).to_bytes(2, "big")
    return label + hashlib.sha256(h + public_key + length + credential).digest()


def nonce(counter: int) -> bytes:
    """The 96-bit AEAD nonce: 32 zero bits, then the 64-bit counter little-endian (WireGuard)."""
    return (counter << 32).to_bytes(12, "little")  # the same bytes, in one step
