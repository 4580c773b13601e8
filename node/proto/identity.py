"""A peer's identity, pure: an Ed25519 key pair and the peer id derived from its public key.

A peer is named by its key, never by an address. The peer id is the full SHA-256 of the raw
public key in lowercase base32 without padding (52 characters, 256 bits; never truncated).
Key files live in node.security.keystore; nothing here touches a file.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def peer_id_of(public_key: bytes) -> str:
    """The peer id for a raw 32-byte Ed25519 public key."""
    digest = hashlib.sha256(public_key).digest()
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower()


@dataclass(frozen=True, slots=True)
class Identity:
    private_key: Ed25519PrivateKey
    public_key: bytes
    peer_id: str

    @classmethod
    def from_private_key(cls, key: Ed25519PrivateKey) -> Identity:
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(private_key=key, public_key=raw, peer_id=peer_id_of(raw))

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)

    def public_key_pem(self) -> bytes:
        return public_key_pem(self.public_key)


def public_key_pem(public_key: bytes) -> bytes:
    """A raw Ed25519 public key as PEM (SubjectPublicKeyInfo), the form ``identity.pub`` holds."""
    key = Ed25519PublicKey.from_public_bytes(public_key)
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_from_pem(data: bytes) -> bytes:
    """The raw 32-byte key from a PEM Ed25519 public key; ValueError for anything else."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError("not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def verify(public_key: bytes, signature: bytes, data: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True
