"""Cookies against handshake floods: WireGuard's cookie reply (its paper §5.4.7), sans-IO.

An INIT costs the responder a key agreement and a signature before it knows who sent it. Above a
configured rate of new handshakes the ``CookieChecker`` (one per node socket, in front of every
session) stops that: an INIT that does not prove it can receive at its source address gets a small
stateless COOKIE_REPLY instead, and costs nothing else. The initiator (``SecureSession``) puts the
cookie into the INIT's mac2 and sends it again; that INIT proceeds.

    secret     32 random bytes, replaced every ``secret_lifetime`` (WireGuard: 120 s)
    cookie     = BLAKE2s-128(key=secret, source address)          never stored
    mac2       = BLAKE2s-128(key=cookie, INIT up to mac2)         (node.proto.session.messages)
    reply key  = BLAKE2s-256(key=label, INIT's mac1)
    reply      = type | INIT's sender index | nonce (12) | ChaCha20-Poly1305(reply key, nonce,
                 cookie, associated data = INIT's mac1)

Where we part from WireGuard, and why: it seals the cookie with XChaCha20-Poly1305 under a key
from the responder's static public key; ``cryptography`` has no XChaCha20, and an initiator here
may dial without knowing the responder's key. So the key comes from the INIT's mac1 (one key per
INIT, which makes a random 96-bit nonce safe) and, as in WireGuard, mac1 is the associated data:
an off-path attacker, who never saw the INIT, cannot make a reply the initiator accepts. An on-path
observer can read the cookie, as it can in WireGuard (the responder's public key is no secret);
it learns only what it could by receiving at that address itself.

The load decision is a token bucket of ``handshakes_per_second`` (``burst`` deep) over the ``now``
values passed in. An unproven INIT takes a token; when none is left the checker is under load for
``under_load_hold`` seconds (WireGuard's UnderLoadAfterTime, 1 s), and every unproven INIT meanwhile
gets a cookie; the hold is renewed while the offered rate stays above the bucket's. An INIT with a
valid mac2 proceeds and takes no token.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from node.proto.session.errors import DropReason, SessionConfigError, SessionDecodeError
from node.proto.session.messages import (
    COOKIE_NONCE_SIZE,
    COOKIE_SIZE,
    MAC_SIZE,
    CookieReplyMessage,
    MessageType,
    decode_init,
    encode_cookie_reply,
    mac2_matches,
)

__all__ = [
    "COOKIE_LIFETIME",
    "DEFAULT_COOKIE_CONFIG",
    "CookieChecker",
    "CookieConfig",
    "CookieCount",
    "CookieDecision",
    "Source",
    "open_cookie_reply",
    "source_bytes",
]

COOKIE_LIFETIME: Final = 120.0  # WireGuard's CookieRefreshTime: the secret's life, and a cookie's
UNDER_LOAD_HOLD: Final = 1.0  # WireGuard's UnderLoadAfterTime
_REPLY_KEY_LABEL: Final = hashlib.blake2s(b"bitcraps-node secure session v1 cookie reply").digest()
_INIT_WORD: Final = int(MessageType.INIT).to_bytes(4, "little")
_NO_MAC2: Final = bytes(MAC_SIZE)

# An address as asyncio's datagram endpoints give it ((host, port) or IPv6's 4-tuple), or bytes.
Source = bytes | tuple[str, int] | tuple[str, int, int, int]


@dataclass(frozen=True, slots=True)
class CookieConfig:
    # A Raspberry Pi 4 does a few hundred responder handshakes per second on one core; 100 keeps
    # key agreement for strangers under about a quarter of that.
    handshakes_per_second: float = 100.0
    burst: float = 100.0
    under_load_hold: float = UNDER_LOAD_HOLD
    secret_lifetime: float = COOKIE_LIFETIME

    def __post_init__(self) -> None:
        for name in ("handshakes_per_second", "burst"):
            value = getattr(self, name)
            if not (value >= 0.0 and math.isfinite(value)):  # 0: always demand a cookie
                raise SessionConfigError(f"{name} must be a finite number >= 0, got {value}")
        for name in ("under_load_hold", "secret_lifetime"):
            value = getattr(self, name)
            if not (value > 0.0 and math.isfinite(value)):
                raise SessionConfigError(f"{name} must be a positive finite number, got {value}")


DEFAULT_COOKIE_CONFIG: Final = CookieConfig()


class CookieDecision(enum.Enum):
    PROCEED = "hand the INIT to a session (it costs a key agreement)"
    SEND_COOKIE = "answer with make_reply() and nothing else"
    DROP = "not an INIT: wrong size or mac1"


class CookieCount(enum.Enum):
    """What the checker did with each INIT (``CookieChecker.counts``, for ``status``)."""

    ADMITTED = "INITs admitted without a cookie, below the handshake rate"
    COOKIE_VALIDATED = "INITs admitted because their mac2 carried a valid cookie"
    COOKIE_REFUSED = "INITs whose mac2 did not verify (another address, an old secret, forged)"
    COOKIES_SENT = "cookie replies made instead of a key agreement"
    DROPPED = "INITs dropped: wrong size, type or mac1"


def source_bytes(source: Source) -> bytes:
    """The address a cookie is bound to: packed IP then port (WireGuard: IP and port too)."""
    if isinstance(source, bytes):
        return source
    host, port = source[0], source[1]
    return ipaddress.ip_address(host).packed + port.to_bytes(2, "big")


def _reply_key(mac1: bytes) -> bytes:
    return hashlib.blake2s(mac1, key=_REPLY_KEY_LABEL).digest()


def open_cookie_reply(reply: CookieReplyMessage, init: bytes) -> bytes:
    """The cookie in ``reply`` if it answers ``init`` (the INIT we sent); else a counted drop."""
    mac1 = decode_init(init).mac1
    try:
        return ChaCha20Poly1305(_reply_key(mac1)).decrypt(reply.nonce, reply.sealed_cookie, mac1)
    except InvalidTag:
        raise SessionDecodeError(DropReason.BAD_COOKIE_REPLY, "it does not open for our INIT") from None


class CookieChecker:
    """The responder's gate: ``check`` each INIT, and ``make_reply`` when it says SEND_COOKIE."""

    def __init__(
        self,
        config: CookieConfig = DEFAULT_COOKIE_CONFIG,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,  # as SecureSession takes its randomness
    ) -> None:
        self._config = config
        self._random = random_bytes
        self._secret = random_bytes(32)
        self._secret_born: float | None = None  # the first ``now`` seen
        self._tokens = config.burst
        self._tokens_at: float | None = None
        self._load_until = -math.inf
        self._counts: Counter[CookieCount] = Counter()

    @property
    def counts(self) -> Counter[CookieCount]:
        return self._counts.copy()

    def under_load(self, now: float) -> bool:
        return now < self._load_until

    def check(self, data: bytes, source: Source, now: float) -> CookieDecision:
        if data[:4] != _INIT_WORD:
            self._counts[CookieCount.DROPPED] += 1
            return CookieDecision.DROP
        try:
            msg = decode_init(data)
        except SessionDecodeError:
            self._counts[CookieCount.DROPPED] += 1
            return CookieDecision.DROP
        if msg.mac2 != _NO_MAC2:
            if mac2_matches(data, self._cookie(source, now)):
                self._counts[CookieCount.COOKIE_VALIDATED] += 1
                return CookieDecision.PROCEED
            self._counts[CookieCount.COOKIE_REFUSED] += 1  # then judged as if it had none
        loaded = self.under_load(now)
        if self._take_token(now) and not loaded:
            self._counts[CookieCount.ADMITTED] += 1
            return CookieDecision.PROCEED
        return CookieDecision.SEND_COOKIE

    def make_reply(self, data: bytes, source: Source, now: float) -> bytes:
        """The COOKIE_REPLY for an INIT ``check`` answered SEND_COOKIE (COOKIE_REPLY_SIZE bytes)."""
        msg = decode_init(data)
        nonce = self._random(COOKIE_NONCE_SIZE)
        sealed = ChaCha20Poly1305(_reply_key(msg.mac1)).encrypt(nonce, self._cookie(source, now), msg.mac1)
        self._counts[CookieCount.COOKIES_SENT] += 1
        return encode_cookie_reply(msg.sender_index, nonce, sealed)

    def _cookie(self, source: Source, now: float) -> bytes:
        born = self._secret_born
        if born is None or now >= born + self._config.secret_lifetime:
            if born is not None:  # the first secret came from the constructor
                self._secret = self._random(32)
            self._secret_born = now
        return hashlib.blake2s(source_bytes(source), key=self._secret, digest_size=COOKIE_SIZE).digest()

    def _take_token(self, now: float) -> bool:
        config = self._config
        if self._tokens_at is not None and now > self._tokens_at:
            elapsed = now - self._tokens_at
            self._tokens = min(config.burst, self._tokens + elapsed * config.handshakes_per_second)
        self._tokens_at = now if self._tokens_at is None else max(self._tokens_at, now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self._load_until = now + config.under_load_hold
        return False
