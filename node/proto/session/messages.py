"""Wire format of the datagram secure session (node.proto.session.secure_session).

Every message starts with its type as a 32-bit little-endian word (WireGuard's layout: one type
byte and three zero bytes). Indices are random 32-bit values each side picks for itself per
handshake, so a driver can route a datagram to its session without an address (``receiver_index``).

    INIT         type=1 | sender index | initiator ephemeral (32) | zero padding | mac1 (16) | mac2 (16)
    RESPONSE     type=2 | sender index | receiver index | responder ephemeral (32) | sealed proof
    CONFIRM      type=3 | receiver index | sealed proof
    TRANSPORT    type=4 | receiver index | counter (64-bit LE) | sealed payload
    COOKIE_REPLY type=6 | receiver index | nonce (12) | sealed cookie (16 + 16-byte tag)

The INIT ends with WireGuard's two MACs (its paper §5.4.4, keyed BLAKE2s-128): ``mac1`` over the
bytes before it, ``mac2`` over the bytes before it (mac1 included) keyed with a cookie the responder
gave this source address, or zeros without one (node.proto.session.cookie). WireGuard keys mac1 with
the responder's static key; an initiator here may dial without knowing it, so mac1 is keyed by a
label: it rejects damaged or foreign datagrams before any key agreement, and is the handle a cookie
reply is bound to. mac2 is not part of the handshake transcript (``InitMessage.transcript`` has it
zeroed), so an INIT resent with a cookie continues the same handshake.

A proof is ``public key (32) | credential length (16-bit BE) | credential | signature (64)``
sealed with ChaCha20-Poly1305 (16-byte tag). The initiation is padded to a fixed INIT_SIZE and a
response may be at most AMPLIFICATION_FACTOR times that (RFC 9000 §8.1's limit), so a spoofed
initiation cannot make a responder reflect much more than it received; a cookie reply
(COOKIE_REPLY_SIZE, 52 bytes) is smaller than the INIT it answers.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Final

from node.proto.session.errors import DropReason, SessionDecodeError

__all__ = [
    "AMPLIFICATION_FACTOR",
    "COOKIE_NONCE_SIZE",
    "COOKIE_REPLY_SIZE",
    "COOKIE_SIZE",
    "INIT_SIZE",
    "MAC_SIZE",
    "MAX_CREDENTIAL",
    "TRANSPORT_HEADER",
    "TRANSPORT_OVERHEAD",
    "ConfirmMessage",
    "CookieReplyMessage",
    "InitMessage",
    "MessageType",
    "Proof",
    "ResponseMessage",
    "decode_cookie_reply",
    "decode_handshake",
    "decode_init",
    "decode_proof",
    "encode_confirm",
    "encode_cookie_reply",
    "encode_init",
    "encode_proof",
    "encode_response_header",
    "mac2_matches",
    "message_type",
    "receiver_index",
    "with_mac2",
]

KEY_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64
TAG_SIZE: Final = 16
INIT_SIZE: Final = 256
AMPLIFICATION_FACTOR: Final = 3  # RFC 9000 §8.1: at most three times the bytes received


class MessageType(enum.IntEnum):
    INIT = 1
    RESPONSE = 2
    CONFIRM = 3
    TRANSPORT = 4
    COOKIE_REPLY = 6  # not 5, so a TRANSPORT with its lowest type bit flipped stays unknown


MAC_SIZE: Final = 16  # BLAKE2s-128, WireGuard's MAC (paper §5.4)
MAC1_AT: Final = INIT_SIZE - 2 * MAC_SIZE
MAC2_AT: Final = INIT_SIZE - MAC_SIZE
_MAC1_KEY: Final = hashlib.blake2s(b"bitcraps-node secure session v1 mac1").digest()
_NO_MAC2: Final = bytes(MAC_SIZE)
COOKIE_NONCE_SIZE: Final = 12  # ChaCha20-Poly1305's nonce (WireGuard's XChaCha20 takes 24)
COOKIE_SIZE: Final = MAC_SIZE
_INIT: Final = struct.Struct("<II32s")
_COOKIE_REPLY: Final = struct.Struct(f"<II{COOKIE_NONCE_SIZE}s")
COOKIE_REPLY_SIZE: Final = _COOKIE_REPLY.size + COOKIE_SIZE + TAG_SIZE
RESPONSE_HEADER: Final = struct.Struct("<III32s")
CONFIRM_HEADER: Final = struct.Struct("<II")
TRANSPORT_HEADER: Final = struct.Struct("<IIQ")
TRANSPORT_OVERHEAD: Final = TRANSPORT_HEADER.size + TAG_SIZE
_PROOF_FIXED: Final = KEY_SIZE + 2 + SIGNATURE_SIZE
MAX_CREDENTIAL: Final = AMPLIFICATION_FACTOR * INIT_SIZE - RESPONSE_HEADER.size - TAG_SIZE - _PROOF_FIXED
_TYPE: Final = struct.Struct("<I")
_INDEX_AT: Final = {
    MessageType.RESPONSE: 8,
    MessageType.CONFIRM: 4,
    MessageType.TRANSPORT: 4,
    MessageType.COOKIE_REPLY: 4,
}


@dataclass(frozen=True, slots=True)
class InitMessage:
    sender_index: int
    ephemeral: bytes
    raw: bytes

    @property
    def mac1(self) -> bytes:
        return self.raw[MAC1_AT:MAC2_AT]

    @property
    def mac2(self) -> bytes:
        return self.raw[MAC2_AT:]

    @property
    def transcript(self) -> bytes:
        """The bytes the handshake hashes and compares: the INIT with mac2 zeroed."""
        return self.raw[:MAC2_AT] + _NO_MAC2


@dataclass(frozen=True, slots=True)
class ResponseMessage:
    sender_index: int
    receiver_index: int
    ephemeral: bytes
    header: bytes
    sealed_proof: bytes
    raw: bytes


@dataclass(frozen=True, slots=True)
class ConfirmMessage:
    receiver_index: int
    header: bytes
    sealed_proof: bytes
    raw: bytes


@dataclass(frozen=True, slots=True)
class CookieReplyMessage:
    receiver_index: int
    nonce: bytes
    sealed_cookie: bytes


@dataclass(frozen=True, slots=True)
class Proof:
    public_key: bytes
    credential: bytes
    signature: bytes


def _mac(key: bytes, data: bytes) -> bytes:
    return hashlib.blake2s(data, key=key, digest_size=MAC_SIZE).digest()


def encode_init(sender_index: int, ephemeral: bytes) -> bytes:
    """An INIT with its mac1 and no cookie (mac2 zero)."""
    body = _INIT.pack(MessageType.INIT, sender_index, ephemeral).ljust(MAC1_AT, b"\x00")
    return body + _mac(_MAC1_KEY, body) + _NO_MAC2


def with_mac2(init: bytes, cookie: bytes) -> bytes:
    """``init`` carrying mac2 = MAC(cookie, everything before mac2) (WireGuard paper §5.4.4)."""
    return init[:MAC2_AT] + _mac(cookie, init[:MAC2_AT])


def mac2_matches(init: bytes, cookie: bytes) -> bool:
    return hmac.compare_digest(_mac(cookie, init[:MAC2_AT]), init[MAC2_AT:INIT_SIZE])


def encode_cookie_reply(receiver_index: int, nonce: bytes, sealed_cookie: bytes) -> bytes:
    return _COOKIE_REPLY.pack(MessageType.COOKIE_REPLY, receiver_index, nonce) + sealed_cookie


def encode_response_header(sender_index: int, receiver_index: int, ephemeral: bytes) -> bytes:
    return RESPONSE_HEADER.pack(MessageType.RESPONSE, sender_index, receiver_index, ephemeral)


def encode_confirm(receiver_index: int) -> bytes:
    """The CONFIRM header; the sealed proof follows it."""
    return CONFIRM_HEADER.pack(MessageType.CONFIRM, receiver_index)


def encode_proof(public_key: bytes, credential: bytes, signature: bytes) -> bytes:
    return public_key + len(credential).to_bytes(2, "big") + credential + signature


def decode_proof(plaintext: bytes) -> Proof:
    if len(plaintext) < _PROOF_FIXED:
        raise SessionDecodeError(DropReason.TRUNCATED, "identity proof")
    length = int.from_bytes(plaintext[KEY_SIZE : KEY_SIZE + 2], "big")
    if len(plaintext) != _PROOF_FIXED + length:
        raise SessionDecodeError(DropReason.TRUNCATED, "identity proof length")
    start = KEY_SIZE + 2
    return Proof(plaintext[:KEY_SIZE], plaintext[start : start + length], plaintext[start + length :])


_BY_TYPE_WORD: Final = {_TYPE.pack(kind): kind for kind in MessageType}
TRANSPORT_TYPE_WORD: Final = _TYPE.pack(MessageType.TRANSPORT)  # the first 4 bytes of a data datagram


def message_type(data: bytes) -> MessageType:
    kind = _BY_TYPE_WORD.get(data[:4])  # one dict lookup: this runs for every datagram
    if kind is not None:
        return kind
    if len(data) < _TYPE.size:
        raise SessionDecodeError(DropReason.TRUNCATED, f"{len(data)} bytes")
    raise SessionDecodeError(DropReason.UNKNOWN_TYPE, f"type word {data[:4].hex()}")


def receiver_index(data: bytes) -> int | None:
    """The receiver index of a RESPONSE, CONFIRM or TRANSPORT datagram, for routing; else None.

    An INIT has none (it starts a session); unreadable bytes give None too.
    """
    try:
        offset = _INDEX_AT.get(message_type(data))
    except SessionDecodeError:
        return None
    if offset is None or len(data) < offset + 4:
        return None
    return int.from_bytes(data[offset : offset + 4], "little")


def decode_init(data: bytes) -> InitMessage:
    """An INIT of the right size whose mac1 verifies (mac2 is the cookie checker's business)."""
    if len(data) != INIT_SIZE:
        raise SessionDecodeError(DropReason.BAD_LENGTH, f"INIT of {len(data)} bytes, not {INIT_SIZE}")
    if not hmac.compare_digest(_mac(_MAC1_KEY, data[:MAC1_AT]), data[MAC1_AT:MAC2_AT]):
        raise SessionDecodeError(DropReason.BAD_MAC, "INIT mac1")
    _, sender, ephemeral = _INIT.unpack_from(data)
    return InitMessage(sender, ephemeral, data)


def decode_cookie_reply(data: bytes) -> CookieReplyMessage:
    if len(data) != COOKIE_REPLY_SIZE:
        raise SessionDecodeError(
            DropReason.BAD_LENGTH, f"cookie reply of {len(data)} bytes, not {COOKIE_REPLY_SIZE}"
        )
    _, receiver, nonce = _COOKIE_REPLY.unpack_from(data)
    return CookieReplyMessage(receiver, nonce, data[_COOKIE_REPLY.size :])


def decode_handshake(
    data: bytes, kind: MessageType
) -> InitMessage | ResponseMessage | ConfirmMessage | CookieReplyMessage:
    """Decode a handshake datagram whose type ``message_type`` already read as ``kind``."""
    if kind is MessageType.INIT:
        return decode_init(data)
    if kind is MessageType.COOKIE_REPLY:
        return decode_cookie_reply(data)
    if kind is MessageType.RESPONSE:
        if len(data) < RESPONSE_HEADER.size + TAG_SIZE + _PROOF_FIXED:
            raise SessionDecodeError(DropReason.TRUNCATED, "response")
        _, sender, receiver, ephemeral = RESPONSE_HEADER.unpack_from(data)
        split = RESPONSE_HEADER.size
        return ResponseMessage(sender, receiver, ephemeral, data[:split], data[split:], data)
    if kind is MessageType.CONFIRM:
        if len(data) < CONFIRM_HEADER.size + TAG_SIZE + _PROOF_FIXED:
            raise SessionDecodeError(DropReason.TRUNCATED, "confirm")
        _, receiver = CONFIRM_HEADER.unpack_from(data)
        split = CONFIRM_HEADER.size
        return ConfirmMessage(receiver, data[:split], data[split:], data)
    raise SessionDecodeError(DropReason.UNKNOWN_TYPE, f"{kind.name} is not a handshake message")
