"""STUN messages (RFC 8489 §5, §6, §14): the Message type, encode, decode, integrity and
fingerprint checks over raw bytes, and the cheap demultiplexing test.

Classic RFC 3489 messages share the layout but have no magic cookie: the 16 bytes after the
length are one transaction id (RFC 3489 §11.1). ``decode`` reads them only when asked
(``rfc3489=True``); a ``Message`` then carries all 16 bytes as its ``transaction_id``. An RFC 3489
server answering our RFC 8489 request echoes the cookie with our 12-byte id (RFC 8489 §12), so its
response decodes without that flag, with our id, and matches our transaction.
"""

from __future__ import annotations

import hmac
import os
import struct
from dataclasses import dataclass
from typing import TypeVar
from zlib import crc32

from node.proto.stun.attrs import (
    PAD,
    SPEC_BY_CLASS,
    SPEC_BY_TYPE,
    Attribute,
    Fingerprint,
    UnknownAttribute,
)
from node.proto.stun.errors import DecodeReason, StunDecodeError, StunEncodeError
from node.proto.stun.types import (
    CLASSIC_TRANSACTION_ID_SIZE,
    COMPREHENSION_OPTIONAL,
    FINGERPRINT_XOR,
    HEADER_SIZE,
    MAGIC_COOKIE,
    MAGIC_COOKIE_BYTES,
    MAX_VALUE_SIZE,
    TRANSACTION_ID_SIZE,
    AttributeType,
    MessageClass,
    Method,
)

_HEADER = struct.Struct("!HHI12s")  # type, length, cookie, transaction id (RFC 8489 §5)
_CLASSIC_HEADER = struct.Struct("!HH16s")  # type, length, transaction id (RFC 3489 §11.1)
_HEADER_START = struct.Struct("!HHI")
_ATTR_HEAD = struct.Struct("!HH")  # type, length (RFC 8489 §14)
_LENGTH = struct.Struct("!H")
_U32 = struct.Struct("!I")
_FINGERPRINT_ATTR = struct.Struct("!HHI")

_MI = int(AttributeType.MESSAGE_INTEGRITY)
_MI256 = int(AttributeType.MESSAGE_INTEGRITY_SHA256)
_FP = int(AttributeType.FINGERPRINT)
_MI_SIZE = 4 + 20  # RFC 8489 §14.5
_MI256_SIZE = 4 + 32  # RFC 8489 §14.6 (we always send the full 32 bytes)
_FP_SIZE = 4 + 4  # RFC 8489 §14.7
_MI_HEAD = _ATTR_HEAD.pack(_MI, 20)
_MI256_HEAD = _ATTR_HEAD.pack(_MI256, 32)
_CLASS_MASK = 0x110  # RFC 8489 §5: C1 and C0

_A = TypeVar("_A", bound=Attribute)


def message_type(method: int, message_class: int) -> int:
    """The 14-bit message type: M11..M7 C1 M6..M4 C0 M3..M0 (RFC 8489 §5, figure 3)."""
    try:
        # The class may only have the C1 (0x100) and C0 (0x010) bits set.
        if 0 <= method <= 0xFFF and not message_class & ~_CLASS_MASK:
            return ((method & 0xF80) << 2) | ((method & 0x070) << 1) | (method & 0x00F) | message_class
    except TypeError:
        pass
    raise StunEncodeError(f"bad method {method!r} or class {message_class!r}")


# Every known (method, class) pair, by its wire type, for a one-lookup decode.
_TYPES: dict[int, tuple[Method, MessageClass]] = {
    message_type(m, c): (m, c) for m in Method for c in MessageClass
}


@dataclass(frozen=True, slots=True)
class Message:
    """A STUN message. ``attributes`` are in wire order; MESSAGE-INTEGRITY(-SHA256) and
    FINGERPRINT appear in decoded messages but ``encode`` recomputes them from its arguments.
    ``transaction_id`` is 12 bytes after the magic cookie (RFC 8489 §5), or 16 bytes in a classic
    RFC 3489 message, which has no cookie (§11.1)."""

    method: Method
    message_class: MessageClass
    transaction_id: bytes
    attributes: tuple[Attribute, ...] = ()

    @property
    def classic(self) -> bool:
        """An RFC 3489 message: its header holds a 16-byte id instead of cookie and id."""
        return len(self.transaction_id) == CLASSIC_TRANSACTION_ID_SIZE

    def find(self, cls: type[_A]) -> _A | None:
        """The first attribute of class ``cls`` (RFC 8489 §14: only the first counts)."""
        for attr in self.attributes:
            if attr.__class__ is cls:
                return attr
        return None

    def find_all(self, cls: type[_A]) -> tuple[_A, ...]:
        """Every attribute of class ``cls``, in wire order (e.g. several XOR-PEER-ADDRESS)."""
        return tuple(a for a in self.attributes if a.__class__ is cls)

    def unknown_comprehension_required(self) -> tuple[int, ...]:
        """Types of unknown comprehension-required attributes (< 0x8000), for a 420 answer
        with UNKNOWN-ATTRIBUTES (RFC 8489 §6.3.1.1, §14.13)."""
        return tuple(
            a.type
            for a in self.attributes
            if isinstance(a, UnknownAttribute) and a.type < COMPREHENSION_OPTIONAL
        )


def new_transaction_id() -> bytes:
    """96 random bits (RFC 8489 §5: uniformly and randomly chosen)."""
    return os.urandom(TRANSACTION_ID_SIZE)


def is_stun(data: bytes) -> bool:
    """Cheap demultiplexing test: 20 bytes or more, top two bits zero, the magic cookie
    (RFC 8489 §5, RFC 7983 §7)."""
    return len(data) >= HEADER_SIZE and data[0] < 0x40 and data[4:8] == MAGIC_COOKIE_BYTES


def encode(
    msg: Message, *, key: bytes | None = None, sha256: bool = False, fingerprint: bool = True
) -> bytes:
    """Serialise ``msg``. With ``key``, append MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5) or,
    with ``sha256``, MESSAGE-INTEGRITY-SHA256 (§14.6); then FINGERPRINT (§14.7) unless told not
    to. Padding is written as zeros (§14). A 16-byte transaction id makes an RFC 3489 message,
    with no cookie and neither integrity nor FINGERPRINT: pass ``fingerprint=False``. Raises
    ``StunEncodeError``."""
    tid = msg.transaction_id
    if type(tid) is not bytes or len(tid) not in (TRANSACTION_ID_SIZE, CLASSIC_TRANSACTION_ID_SIZE):
        raise StunEncodeError(
            f"transaction id must be 12 bytes (RFC 8489 §5) or 16 (RFC 3489 §11.1), got {tid!r}"
        )
    classic = len(tid) == CLASSIC_TRANSACTION_ID_SIZE
    if classic and (key is not None or fingerprint):
        # RFC 3489 has no FINGERPRINT, and its MESSAGE-INTEGRITY covers the message differently
        # (§11.2.8: padded to 64 bytes, length not adjusted); we never need to send either.
        raise StunEncodeError("an RFC 3489 message (16-byte id) takes no integrity or FINGERPRINT")
    mtype = message_type(msg.method, msg.message_class)
    parts: list[bytes] = []
    append = parts.append
    by_class = SPEC_BY_CLASS
    pack_head = _ATTR_HEAD.pack
    try:
        for attr in msg.attributes:
            spec = by_class.get(attr.__class__)
            if spec is None:
                if not isinstance(attr, UnknownAttribute):
                    raise StunEncodeError(f"not a STUN attribute: {attr!r}")
                code, value = attr.type, attr.value
            elif spec.computed:
                continue
            else:
                code, value = spec.code, spec.encode(attr, tid)
            size = len(value)
            append(pack_head(code, size))  # struct.error if size or code exceed 16 bits
            append(value)
            if size & 3:
                append(PAD[size & 3])
    except (struct.error, ValueError, TypeError, AttributeError, OverflowError) as exc:
        raise StunEncodeError(f"cannot encode attribute: {exc}") from exc
    body = b"".join(parts)
    length = len(body)
    trailer = (_MI256_SIZE if sha256 else _MI_SIZE) if key is not None else 0
    if length + trailer + (_FP_SIZE if fingerprint else 0) > MAX_VALUE_SIZE:
        raise StunEncodeError("message longer than 65535 bytes after the header")
    if classic:
        return _CLASSIC_HEADER.pack(mtype, length, tid) + body
    if key is not None:
        # RFC 8489 §14.5/§14.6: the HMAC covers the header, whose length already counts the
        # integrity attribute, and every attribute before it.
        length += trailer
        covered = _HEADER.pack(mtype, length, MAGIC_COOKIE, tid) + body
        if sha256:
            body += _MI256_HEAD + hmac.digest(key, covered, "sha256")
        else:
            body += _MI_HEAD + hmac.digest(key, covered, "sha1")
    if fingerprint:
        # RFC 8489 §14.7: CRC-32 of the message up to FINGERPRINT, length counting it.
        data = _HEADER.pack(mtype, length + _FP_SIZE, MAGIC_COOKIE, tid) + body
        return data + _FINGERPRINT_ATTR.pack(_FP, 4, crc32(data) ^ FINGERPRINT_XOR)
    return _HEADER.pack(mtype, length, MAGIC_COOKIE, tid) + body


def decode(data: bytes, *, rfc3489: bool = False) -> Message:
    """Parse one STUN message (a whole datagram or a whole stream frame).

    Checks the header (RFC 8489 §6.3), every attribute's framing and value, and FINGERPRINT
    when present. Attributes after MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256 and
    FINGERPRINT are ignored (§14.5, §14.6). Integrity is checked separately by
    ``verify_integrity``, which needs the key. A header without the magic cookie is
    ``BAD_MAGIC`` unless ``rfc3489`` is set: then it is a classic RFC 3489 message whose 16 bytes
    after the length are its transaction id (§11.1). Only a caller that talks to RFC 3489 peers
    on purpose sets it; the node's own demultiplexing (``is_stun``) never does (RFC 7983 §7).
    Raises only ``StunDecodeError``."""
    if type(data) is not bytes:
        data = bytes(data)
    size = len(data)
    if size < HEADER_SIZE:
        raise StunDecodeError(DecodeReason.TOO_SHORT, f"{size} bytes")
    mtype, length, cookie = _HEADER_START.unpack_from(data)
    if mtype & 0xC000:
        raise StunDecodeError(DecodeReason.NOT_STUN)
    if cookie == MAGIC_COOKIE:
        tid = data[8:20]
    elif rfc3489:
        tid = data[4:20]
    else:
        raise StunDecodeError(DecodeReason.BAD_MAGIC)
    if length + HEADER_SIZE != size or length & 3:
        raise StunDecodeError(
            DecodeReason.BAD_LENGTH, f"header says {length}, got {size - 20}", transaction_id=tid
        )
    kind = _TYPES.get(mtype)
    if kind is None:
        raise StunDecodeError(DecodeReason.UNKNOWN_METHOD, f"message type {mtype:#06x}", transaction_id=tid)
    attrs: list[Attribute] = []
    append = attrs.append
    by_type = SPEC_BY_TYPE
    unpack_head = _ATTR_HEAD.unpack_from
    integrity = 0  # 0: none yet, 1: after MESSAGE-INTEGRITY, 2: after -SHA256
    pos = HEADER_SIZE
    # pos and size are multiples of 4, so an attribute header always fits while pos < size.
    while pos < size:
        code, vlen = unpack_head(data, pos)
        start = pos + 4
        end = start + vlen
        nxt = end + (-vlen & 3)
        if nxt > size:
            raise StunDecodeError(
                DecodeReason.BAD_LENGTH, "attribute overruns the message",
                transaction_id=tid, attribute_type=code,
            )  # fmt: skip
        if code == _FP:
            if nxt != size:
                raise StunDecodeError(DecodeReason.BAD_ORDER, transaction_id=tid)
            if vlen != 4:
                raise StunDecodeError(
                    DecodeReason.BAD_ATTRIBUTE, "FINGERPRINT length",
                    transaction_id=tid, attribute_type=code,
                )  # fmt: skip
            crc = _U32.unpack_from(data, start)[0]
            if crc != crc32(data[:pos]) ^ FINGERPRINT_XOR:
                raise StunDecodeError(DecodeReason.BAD_FINGERPRINT, transaction_id=tid)
            append(Fingerprint(crc))
            break
        if integrity and not (integrity == 1 and code == _MI256):
            pos = nxt  # not covered by MESSAGE-INTEGRITY: ignored (RFC 8489 §14.5)
            continue
        spec = by_type.get(code)
        if spec is None:
            append(UnknownAttribute(code, data[start:end]))
        else:
            try:
                append(spec.decode(data[start:end], tid))
            except (ValueError, struct.error) as exc:
                raise StunDecodeError(
                    DecodeReason.BAD_ATTRIBUTE, f"type {code:#06x}: {exc}",
                    transaction_id=tid, attribute_type=code,
                ) from exc  # fmt: skip
            if code == _MI:
                integrity = 1
            elif code == _MI256:
                integrity = 2
        pos = nxt
    return Message(kind[0], kind[1], tid, tuple(attrs))


def _locate(data: bytes) -> tuple[int, int, int, int] | None:
    """Offsets of the first MESSAGE-INTEGRITY, of MESSAGE-INTEGRITY-SHA256 (with its length)
    and of FINGERPRINT, -1 where absent, following the rules of ``decode``; None when the
    framing is broken."""
    size = len(data)
    if size < HEADER_SIZE or data[0] >= 0x40 or size & 3:
        return None
    if _LENGTH.unpack_from(data, 2)[0] + HEADER_SIZE != size:
        return None
    mi = mi256 = mi256_len = fp = -1
    pos = HEADER_SIZE
    unpack_head = _ATTR_HEAD.unpack_from
    while pos < size:
        code, vlen = unpack_head(data, pos)
        nxt = pos + 4 + vlen + (-vlen & 3)
        if nxt > size:
            return None
        if code == _FP:
            if nxt != size or vlen != 4:
                return None
            fp = pos
            break
        if code == _MI and mi < 0 and mi256 < 0:
            if vlen != 20:
                return None
            mi = pos
        elif code == _MI256 and mi256 < 0:
            if not 16 <= vlen <= 32 or vlen & 3:
                return None
            mi256, mi256_len = pos, vlen
        pos = nxt
    return mi, mi256, mi256_len, fp


def _covered(data: bytes, pos: int, attr_size: int) -> bytes:
    # RFC 8489 §14.5: the header length is set to end just after the integrity attribute.
    return data[:2] + _LENGTH.pack(pos + attr_size - HEADER_SIZE) + data[4:pos]


def verify_integrity(data: bytes, key: bytes) -> bool:
    """True when the raw message carries a MESSAGE-INTEGRITY-SHA256 (preferred when both are
    present, RFC 8489 §9.1.3, §9.2.4) or MESSAGE-INTEGRITY that matches ``key``."""
    found = _locate(data)
    if found is None:
        return False
    mi, mi256, mi256_len, _ = found
    if mi256 >= 0:
        mac = hmac.digest(key, _covered(data, mi256, 4 + mi256_len), "sha256")
        return hmac.compare_digest(mac[:mi256_len], data[mi256 + 4 : mi256 + 4 + mi256_len])
    if mi >= 0:
        mac = hmac.digest(key, _covered(data, mi, _MI_SIZE), "sha1")
        return hmac.compare_digest(mac, data[mi + 4 : mi + _MI_SIZE])
    return False


def verify_fingerprint(data: bytes) -> bool:
    """True when the raw message ends with a FINGERPRINT that matches (RFC 8489 §14.7)."""
    found = _locate(data)
    if found is None or found[3] < 0:
        return False
    fp = found[3]
    return bool(_U32.unpack_from(data, fp + 4)[0] == crc32(data[:fp]) ^ FINGERPRINT_XOR)
