"""TURN credentials: a static long-term username/password (RFC 8489 §9.2) or the TURN REST API's
ephemeral ones (draft-uberti-behave-turn-rest-00 §2.2, as coturn's ``--use-auth-secret``):
username ``"<expiry unix time>:<user>"``, password base64(HMAC-SHA1(shared secret, username))."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str = ""

    def __repr__(self) -> str:  # never log the password
        return f"Credentials(username={self.username!r})"


def rest_credentials(shared_secret: str, user: str, expiry_unix: int) -> Credentials:
    """Ephemeral credentials valid until ``expiry_unix`` (the caller reads the wall clock)."""
    username = f"{expiry_unix}:{user}" if user else str(expiry_unix)
    mac = hmac.digest(shared_secret.encode(), username.encode(), hashlib.sha1)
    return Credentials(username, base64.b64encode(mac).decode("ascii"))
