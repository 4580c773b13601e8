"""Wire format of the datagram secure session (node.proto.session.secure_session).

Every message starts with its type as a 32-bit little-endian word (WireGuard's layout: one type
byte and three zero bytes). Indices are random 32-bit values each side picks for itself per
handshake, so a driver can route a datagram to its session without an address (``receiver_index``).

    INIT      type=1 | sender index | initiator ephemeral (32) | zero padding to INIT_SIZE
    RESPONSE  type=2 | sender index | receiver index | responder ephemeral (32) | sealed proof
    CONFIRM   type=3 | receiver index | sealed proof
    TRANSPORT type=4 | receiver index | counter (64-bit LE) | sealed payload

A proof is ``public key (32) | credential length (16-bit BE) | credential | signature (64)``
sealed with ChaCha20-Poly1305 (16-byte tag). The initiation is padded to a fixed INIT_SIZE and a
response may be at most AMPLIFICATION_FACTOR times that (RFC 9000 §8.1's limit), so a spoofed
initiation cannot make a responder reflect much more than it received.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

from node.proto.session.errors import DropReason, SessionDecodeError

__all__ = [
    "AMPLIFICATION_FACTOR",
    "INIT_SIZE",
    "MAX_CREDENTIAL",
    "TRANSPORT_HEADER",
    "TRANSPORT_OVERHEAD",
    "ConfirmMessage",
    "InitMessage",
    "MessageType",
    "Proof",
    "ResponseMessage",
    "decode_handshake",
    "decode_proof",
    "encode_confirm",
    "encode_init",
    "encode_proof",
    "encode_response_header",
    "message_type",
    "receiver_index",
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


_INIT: Final = struct.Struct("<II32s")
RESPONSE_HEADER: Final = struct.Struct("<III32s")
CONFIRM_HEADER: Final = struct.Struct("<II")
TRANSPORT_HEADER: Final = struct.Struct("<IIQ")
TRANSPORT_OVERHEAD: Final = TRANSPORT_HEADER.size + TAG_SIZE
_PROOF_FIXED: Final = KEY_SIZE + 2 + SIGNATURE_SIZE
MAX_CREDENTIAL: Final = AMPLIFICATION_FACTOR * INIT_SIZE - RESPONSE_HEADER.size - TAG_SIZE - _PROOF_FIXED
_TYPE: Final = struct.Struct("<I")
_INDEX_AT: Final = {MessageType.RESPONSE: 8, MessageType.CONFIRM: 4, MessageType.TRANSPORT: 4}


@dataclass(frozen=True, slots=True)
class InitMessage:
    sender_index: int
    ephemeral: bytes
    raw: bytes


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
class Proof:
    public_key: bytes
    credential: bytes
    signature: bytes


def encode_init(sender_index: int, ephemeral: bytes) -> bytes:
    return _INIT.pack(MessageType.INIT, sender_index, ephemeral).ljust(INIT_SIZE, b"\x00")


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


def decode_handshake(data: bytes, kind: MessageType) -> InitMessage | ResponseMessage | ConfirmMessage:
    """Decode a handshake datagram whose type ``message_type`` already read as ``kind``."""
    if kind is MessageType.INIT:
        if len(data) != INIT_SIZE:
            raise SessionDecodeError(DropReason.BAD_LENGTH, f"{len(data)} bytes, not {INIT_SIZE}")
        _, sender, ephemeral = _INIT.unpack_from(data)
        return InitMessage(sender, ephemeral, data)
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
