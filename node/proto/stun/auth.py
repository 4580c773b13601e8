"""Credentials of STUN (RFC 8489 §9): short-term and long-term keys, USERHASH."""

from __future__ import annotations

import hashlib

from node.proto.stun.errors import StunEncodeError
from node.proto.stun.saslprep import opaque_string, saslprep
from node.proto.stun.types import PasswordAlgorithm


def short_term_key(password: str) -> bytes:
    """RFC 8489 §9.1.1: key = OpaqueString(password)."""
    return opaque_string(password).encode()


def long_term_key(
    username: str,
    realm: str,
    password: str,
    algorithm: PasswordAlgorithm = PasswordAlgorithm.MD5,
    *,
    rfc5389: bool = False,
) -> bytes:
    """The long-term credential key.

    RFC 8489 §9.2.2: MD5 or SHA-256 of username ":" OpaqueString(realm) ":"
    OpaqueString(password), the username itself OpaqueString-prepared (§14.3).
    With ``rfc5389``, the older rule (RFC 5389 §15.4, §15.3, §15.7): SASLprep on all three.
    Raises ``PrepError`` for strings the profile rejects.
    """
    prep = saslprep if rfc5389 else opaque_string
    text = f"{prep(username)}:{prep(realm)}:{prep(password)}".encode()
    if algorithm == PasswordAlgorithm.SHA256:
        return hashlib.sha256(text).digest()
    if algorithm == PasswordAlgorithm.MD5:
        return hashlib.md5(text, usedforsecurity=False).digest()
    raise StunEncodeError(f"unknown password algorithm {algorithm}")


def userhash(username: str, realm: str) -> bytes:
    """RFC 8489 §14.4: SHA-256(OpaqueString(username) ":" OpaqueString(realm))."""
    return hashlib.sha256(f"{opaque_string(username)}:{opaque_string(realm)}".encode()).digest()
