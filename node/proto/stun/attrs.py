"""Typed STUN/TURN attributes and the registry that maps them to and from the wire.

Each attribute is a frozen, slotted dataclass. The registry ``ATTRIBUTE_SPECS`` is a table of
(type code, class, encode, decode); encoders take the attribute and the transaction id (only the
XOR addresses use it: 12 bytes, or 16 in an RFC 3489 message) and return the value bytes without
padding; decoders take the value bytes and the transaction id. Decoders may raise ``ValueError``
or ``struct.error`` on malformed input; the message decoder turns those into
``StunDecodeError(BAD_ATTRIBUTE)``.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from node.proto.stun.types import MAGIC_COOKIE, TRANSACTION_ID_SIZE, AttributeType

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_U8 = struct.Struct("!B")
_U16 = struct.Struct("!H")
_U16_PAD = struct.Struct("!H2x")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_U8_PAD = struct.Struct("!B3x")
_ADDR4 = struct.Struct("!BBHI")  # reserved, family, port, address (RFC 8489 §14.1)
_ADDR6 = struct.Struct("!BBH16s")
_ERROR_HEAD = struct.Struct("!HBB")  # reserved, class, number (RFC 8489 §14.8)
_ALGO_HEAD = struct.Struct("!HH")  # algorithm, parameters length (RFC 8489 §14.11)
_PAD = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")  # zeros up to a multiple of 4 (§14)

_COOKIE_HIGH = MAGIC_COOKIE >> 16  # X-Port is the port XOR the cookie's top 16 bits (§14.2)
_IPV4 = ipaddress.IPv4Address
_IPV6 = ipaddress.IPv6Address

# Limits a sender must respect (RFC 8489 §14.3, §14.8, §14.9, §14.10, §14.14).
USERNAME_MAX_BYTES = 508  # "fewer than 509 bytes"
TEXT_MAX_CHARS = 127  # "fewer than 128 characters"
TEXT_MAX_BYTES = 509  # "can be as long as 509 bytes when encoding them"


@dataclass(frozen=True, slots=True)
class Attribute:
    """Base of every attribute class."""


# --- addresses (RFC 8489 §14.1, §14.2; RFC 8656 §18.3, §18.5; RFC 5780 §7.3, §7.4; RFC 3489) ---


@dataclass(frozen=True, slots=True)
class AddressAttribute(Attribute):
    ip: IPAddress
    port: int


@dataclass(frozen=True, slots=True)
class MappedAddress(AddressAttribute):
    """MAPPED-ADDRESS (RFC 8489 §14.1)."""


@dataclass(frozen=True, slots=True)
class XorMappedAddress(AddressAttribute):
    """XOR-MAPPED-ADDRESS (RFC 8489 §14.2)."""


@dataclass(frozen=True, slots=True)
class XorPeerAddress(AddressAttribute):
    """XOR-PEER-ADDRESS (RFC 8656 §18.3)."""


@dataclass(frozen=True, slots=True)
class XorRelayedAddress(AddressAttribute):
    """XOR-RELAYED-ADDRESS (RFC 8656 §18.5)."""


@dataclass(frozen=True, slots=True)
class AlternateServer(AddressAttribute):
    """ALTERNATE-SERVER (RFC 8489 §14.15)."""


@dataclass(frozen=True, slots=True)
class ResponseOrigin(AddressAttribute):
    """RESPONSE-ORIGIN (RFC 5780 §7.3)."""


@dataclass(frozen=True, slots=True)
class OtherAddress(AddressAttribute):
    """OTHER-ADDRESS (RFC 5780 §7.4)."""


@dataclass(frozen=True, slots=True)
class ChangedAddress(AddressAttribute):
    """CHANGED-ADDRESS (RFC 3489 §11.2.3): where answers to CHANGE-REQUEST come from, the
    classic servers' OTHER-ADDRESS."""


@dataclass(frozen=True, slots=True)
class SourceAddress(AddressAttribute):
    """SOURCE-ADDRESS (RFC 3489 §11.2.5): where the response was sent from, the classic
    servers' RESPONSE-ORIGIN."""


# --- text (RFC 8489 §14.3, §14.9, §14.10, §14.14) ---


@dataclass(frozen=True, slots=True)
class TextAttribute(Attribute):
    value: str


@dataclass(frozen=True, slots=True)
class Username(TextAttribute):
    """USERNAME (RFC 8489 §14.3); OpaqueString-prepared by whoever builds it."""


@dataclass(frozen=True, slots=True)
class Realm(TextAttribute):
    """REALM (RFC 8489 §14.9)."""


@dataclass(frozen=True, slots=True)
class Nonce(TextAttribute):
    """NONCE (RFC 8489 §14.10)."""


@dataclass(frozen=True, slots=True)
class Software(TextAttribute):
    """SOFTWARE (RFC 8489 §14.14)."""


# --- authentication (RFC 8489 §14.4-§14.7, §14.11, §14.12) ---


@dataclass(frozen=True, slots=True)
class Userhash(Attribute):
    """USERHASH (RFC 8489 §14.4): SHA-256 of username ":" realm, 32 bytes."""

    value: bytes


@dataclass(frozen=True, slots=True)
class MessageIntegrity(Attribute):
    """MESSAGE-INTEGRITY (RFC 8489 §14.5): HMAC-SHA1, 20 bytes. Computed by ``encode``."""

    hmac: bytes


@dataclass(frozen=True, slots=True)
class MessageIntegritySha256(Attribute):
    """MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6): 16 to 32 bytes. Computed by ``encode``."""

    hmac: bytes


@dataclass(frozen=True, slots=True)
class Fingerprint(Attribute):
    """FINGERPRINT (RFC 8489 §14.7): CRC-32 XOR 0x5354554E. Computed by ``encode``."""

    crc: int


@dataclass(frozen=True, slots=True)
class PasswordAlgorithmAttr(Attribute):
    """PASSWORD-ALGORITHM (RFC 8489 §14.11); ``algorithm`` is a ``PasswordAlgorithm`` number."""

    algorithm: int
    parameters: bytes = b""


@dataclass(frozen=True, slots=True)
class PasswordAlgorithms(Attribute):
    """PASSWORD-ALGORITHMS (RFC 8489 §14.12)."""

    algorithms: tuple[PasswordAlgorithmAttr, ...]


# --- errors (RFC 8489 §14.8, §14.13) ---


@dataclass(frozen=True, slots=True)
class ErrorCodeAttr(Attribute):
    """ERROR-CODE (RFC 8489 §14.8): ``code`` 300-699 (see ``ErrorCode``), reason phrase."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class UnknownAttributes(Attribute):
    """UNKNOWN-ATTRIBUTES (RFC 8489 §14.13)."""

    types: tuple[int, ...]


# --- NAT behaviour discovery (RFC 5780 §7) ---


@dataclass(frozen=True, slots=True)
class ChangeRequest(Attribute):
    """CHANGE-REQUEST (RFC 5780 §7.2)."""

    change_ip: bool
    change_port: bool


@dataclass(frozen=True, slots=True)
class ResponsePort(Attribute):
    """RESPONSE-PORT (RFC 5780 §7.5)."""

    port: int


@dataclass(frozen=True, slots=True)
class Padding(Attribute):
    """PADDING (RFC 5780 §7.6): its content is meaningless, its length is the point."""

    value: bytes


# --- ICE (RFC 8445 §7.1.1, §16.1) ---


@dataclass(frozen=True, slots=True)
class Priority(Attribute):
    """PRIORITY (RFC 8445 §16.1)."""

    priority: int


@dataclass(frozen=True, slots=True)
class UseCandidate(Attribute):
    """USE-CANDIDATE (RFC 8445 §16.1): no value."""


@dataclass(frozen=True, slots=True)
class IceControlled(Attribute):
    """ICE-CONTROLLED (RFC 8445 §16.1): 64-bit tie-breaker."""

    tiebreaker: int


@dataclass(frozen=True, slots=True)
class IceControlling(Attribute):
    """ICE-CONTROLLING (RFC 8445 §16.1): 64-bit tie-breaker."""

    tiebreaker: int


# --- TURN (RFC 8656 §18) ---


@dataclass(frozen=True, slots=True)
class ChannelNumber(Attribute):
    """CHANNEL-NUMBER (RFC 8656 §18.1): valid channels are 0x4000-0x4FFF."""

    number: int


@dataclass(frozen=True, slots=True)
class Lifetime(Attribute):
    """LIFETIME (RFC 8656 §18.2), in seconds."""

    seconds: int


@dataclass(frozen=True, slots=True)
class Data(Attribute):
    """DATA (RFC 8656 §18.4)."""

    value: bytes


@dataclass(frozen=True, slots=True)
class RequestedAddressFamily(Attribute):
    """REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.6); ``family`` is an ``AddressFamily`` number."""

    family: int


@dataclass(frozen=True, slots=True)
class EvenPort(Attribute):
    """EVEN-PORT (RFC 8656 §18.7); ``reserve`` is the R bit."""

    reserve: bool


@dataclass(frozen=True, slots=True)
class RequestedTransport(Attribute):
    """REQUESTED-TRANSPORT (RFC 8656 §18.8); ``protocol`` is an IANA protocol number."""

    protocol: int


@dataclass(frozen=True, slots=True)
class DontFragment(Attribute):
    """DONT-FRAGMENT (RFC 8656 §18.9): no value."""


@dataclass(frozen=True, slots=True)
class ReservationToken(Attribute):
    """RESERVATION-TOKEN (RFC 8656 §18.10): 8 bytes."""

    token: bytes


@dataclass(frozen=True, slots=True)
class UnknownAttribute(Attribute):
    """An attribute this codec does not know, kept raw (RFC 8489 §14: types < 0x8000 are
    comprehension-required and make a server answer 420)."""

    type: int
    value: bytes


# --- encoders and decoders ---


def _xor_key(transaction_id: bytes) -> int:
    """The 128 bits an address is XORed with: the header's bytes 4 to 20, i.e. the magic cookie
    and the 12-byte id (RFC 8489 §14.2), or an RFC 3489 message's whole 16-byte id. RFC 3489
    defines no XOR address; servers that send one anyway (Vovida stund 0.97) XOR with those
    same header bytes, so one rule reads both."""
    key = int.from_bytes(transaction_id, "big")
    return (MAGIC_COOKIE << 96) | key if len(transaction_id) == TRANSACTION_ID_SIZE else key


def _enc_address(attr: AddressAttribute, _tid: bytes) -> bytes:
    ip = attr.ip
    if ip.version == 4:
        return _ADDR4.pack(0, 1, attr.port, int(ip))
    return _ADDR6.pack(0, 2, attr.port, ip.packed)


def _enc_xor_address(attr: AddressAttribute, tid: bytes) -> bytes:
    # RFC 8489 §14.2: X-Port = port ^ cookie >> 16; X-Address = address ^ cookie (IPv4) or
    # address ^ (cookie || transaction id) (IPv6). The cookie is the key's top 32 bits.
    ip = attr.ip
    key = _xor_key(tid)
    if ip.version == 4:
        return _ADDR4.pack(0, 1, attr.port ^ key >> 112, int(ip) ^ key >> 96)
    return _ADDR6.pack(0, 2, attr.port ^ key >> 112, (int(ip) ^ key).to_bytes(16, "big"))


_A = TypeVar("_A", bound=AddressAttribute)


def _address_decoder(cls: type[_A]) -> Callable[[bytes, bytes], _A]:
    def decode(value: bytes, _tid: bytes) -> _A:
        # RFC 8489 §14.1: the first byte is reserved and ignored on receipt.
        if len(value) == 8 and value[1] == 1:
            _, _, port, address = _ADDR4.unpack(value)
            return cls(_IPV4(address), port)
        if len(value) == 20 and value[1] == 2:
            return cls(_IPV6(value[4:]), _U16.unpack_from(value, 2)[0])
        raise ValueError("bad address family or length")

    return decode


def _xor_address_decoder(cls: type[_A]) -> Callable[[bytes, bytes], _A]:
    def decode(value: bytes, tid: bytes) -> _A:
        key = _xor_key(tid)
        if len(value) == 8 and value[1] == 1:
            _, _, port, address = _ADDR4.unpack(value)
            return cls(_IPV4(address ^ key >> 96), port ^ key >> 112)
        if len(value) == 20 and value[1] == 2:
            address = int.from_bytes(value[4:], "big") ^ key
            return cls(_IPV6(address), _U16.unpack_from(value, 2)[0] ^ key >> 112)
        raise ValueError("bad address family or length")

    return decode


def _check_text(text: str, max_chars: int, max_bytes: int) -> bytes:
    raw = text.encode()
    if len(text) > max_chars or len(raw) > max_bytes:
        raise ValueError(f"text too long ({len(text)} characters, {len(raw)} bytes)")
    return raw


def _enc_username(attr: Username, _tid: bytes) -> bytes:
    raw = attr.value.encode()
    if len(raw) > USERNAME_MAX_BYTES:
        raise ValueError(f"USERNAME of {len(raw)} bytes (RFC 8489 §14.3: fewer than 509)")
    return raw


def _enc_text(attr: TextAttribute, _tid: bytes) -> bytes:
    return _check_text(attr.value, TEXT_MAX_CHARS, TEXT_MAX_BYTES)


_T = TypeVar("_T", bound=TextAttribute)


def _text_decoder(cls: type[_T]) -> Callable[[bytes, bytes], _T]:
    def decode(value: bytes, _tid: bytes) -> _T:
        return cls(value.decode())  # lenient on length; strict on UTF-8

    return decode


def _exact(value: bytes, size: int) -> bytes:
    if len(value) != size:
        raise ValueError(f"length {len(value)}, expected {size}")
    return value


def _enc_error(attr: ErrorCodeAttr, _tid: bytes) -> bytes:
    code = attr.code
    if not 300 <= code <= 699:
        raise ValueError(f"error code {code} outside 300-699 (RFC 8489 §14.8)")
    return _ERROR_HEAD.pack(0, code // 100, code % 100) + _check_text(
        attr.reason, TEXT_MAX_CHARS, TEXT_MAX_BYTES
    )


def _dec_error(value: bytes, _tid: bytes) -> ErrorCodeAttr:
    _, klass, number = _ERROR_HEAD.unpack_from(value)
    klass &= 0x07  # the 21 bits above the class are reserved
    if not 3 <= klass <= 6 or number > 99:
        raise ValueError("error class or number out of range (RFC 8489 §14.8)")
    return ErrorCodeAttr(klass * 100 + number, value[4:].decode())


def _enc_unknown_attributes(attr: UnknownAttributes, _tid: bytes) -> bytes:
    return struct.pack(f"!{len(attr.types)}H", *attr.types)


def _dec_unknown_attributes(value: bytes, _tid: bytes) -> UnknownAttributes:
    if len(value) % 2:
        raise ValueError("odd length")
    return UnknownAttributes(struct.unpack(f"!{len(value) // 2}H", value))


def _enc_algorithm(entry: PasswordAlgorithmAttr, _tid: bytes) -> bytes:
    params = entry.parameters
    # RFC 8489 §14.11: parameters are padded to a 32-bit boundary.
    return _ALGO_HEAD.pack(entry.algorithm, len(params)) + params + _PAD[len(params) & 3]


def _dec_algorithms(value: bytes) -> list[PasswordAlgorithmAttr]:
    out = []
    pos, end = 0, len(value)
    while pos < end:
        algorithm, size = _ALGO_HEAD.unpack_from(value, pos)
        stop = pos + 4 + size
        if stop > end:
            raise ValueError("algorithm parameters overrun")
        out.append(PasswordAlgorithmAttr(algorithm, value[pos + 4 : stop]))
        pos = stop + (-size & 3)  # the last entry's padding may be the attribute's own
    return out


def _dec_algorithm(value: bytes, _tid: bytes) -> PasswordAlgorithmAttr:
    entries = _dec_algorithms(value)
    if len(entries) != 1:
        raise ValueError("PASSWORD-ALGORITHM holds exactly one algorithm")
    return entries[0]


def _enc_algorithms(attr: PasswordAlgorithms, tid: bytes) -> bytes:
    return b"".join([_enc_algorithm(entry, tid) for entry in attr.algorithms])


def _dec_algorithms_attr(value: bytes, _tid: bytes) -> PasswordAlgorithms:
    return PasswordAlgorithms(tuple(_dec_algorithms(value)))


def _enc_change_request(attr: ChangeRequest, _tid: bytes) -> bytes:
    # RFC 5780 §7.2: bit A (0x4) change IP, bit B (0x2) change port.
    return _U32.pack((4 if attr.change_ip else 0) | (2 if attr.change_port else 0))


def _dec_change_request(value: bytes, _tid: bytes) -> ChangeRequest:
    flags = _U32.unpack(value)[0]
    return ChangeRequest(bool(flags & 4), bool(flags & 2))


def _dec_response_port(value: bytes, _tid: bytes) -> ResponsePort:
    # RFC 5780 §7.5: a 16-bit port followed by 2 bytes of padding; some senders omit those.
    if len(value) not in (2, 4):
        raise ValueError("RESPONSE-PORT length")
    return ResponsePort(_U16.unpack_from(value)[0])


def _dec_empty(value: bytes) -> None:
    if value:
        raise ValueError("attribute takes no value")


def _dec_mi256(value: bytes, _tid: bytes) -> MessageIntegritySha256:
    # RFC 8489 §14.6: at least 16 bytes, at most 32, a multiple of 4.
    if not 16 <= len(value) <= 32 or len(value) & 3:
        raise ValueError("MESSAGE-INTEGRITY-SHA256 length")
    return MessageIntegritySha256(value)


def _dec_use_candidate(value: bytes, _tid: bytes) -> UseCandidate:
    _dec_empty(value)
    return UseCandidate()


def _dec_dont_fragment(value: bytes, _tid: bytes) -> DontFragment:
    _dec_empty(value)
    return DontFragment()


def _empty(_attr: Attribute, _tid: bytes) -> bytes:
    return b""


def _enc_raw_value(attr: Data | Padding, _tid: bytes) -> bytes:
    return attr.value


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    """One row of the registry. ``computed`` attributes (MESSAGE-INTEGRITY, -SHA256,
    FINGERPRINT) are produced by ``encode`` from its arguments, never copied from a message."""

    code: int
    cls: type[Attribute]
    encode: Callable[[Any, bytes], bytes]
    decode: Callable[[bytes, bytes], Attribute]
    computed: bool = False


_S = TypeVar("_S", bound=Attribute)


def _spec(
    code: AttributeType,
    cls: type[_S],
    encode: Callable[[_S, bytes], bytes],
    decode: Callable[[bytes, bytes], _S],
    *,
    computed: bool = False,
) -> AttributeSpec:
    return AttributeSpec(int(code), cls, encode, decode, computed)


T = AttributeType
ATTRIBUTE_SPECS: tuple[AttributeSpec, ...] = (
    _spec(T.XOR_MAPPED_ADDRESS, XorMappedAddress, _enc_xor_address,
          _xor_address_decoder(XorMappedAddress)),
    _spec(T.MAPPED_ADDRESS, MappedAddress, _enc_address, _address_decoder(MappedAddress)),
    _spec(T.XOR_PEER_ADDRESS, XorPeerAddress, _enc_xor_address,
          _xor_address_decoder(XorPeerAddress)),
    _spec(T.XOR_RELAYED_ADDRESS, XorRelayedAddress, _enc_xor_address,
          _xor_address_decoder(XorRelayedAddress)),
    _spec(T.ALTERNATE_SERVER, AlternateServer, _enc_address, _address_decoder(AlternateServer)),
    _spec(T.RESPONSE_ORIGIN, ResponseOrigin, _enc_address, _address_decoder(ResponseOrigin)),
    _spec(T.OTHER_ADDRESS, OtherAddress, _enc_address, _address_decoder(OtherAddress)),
    _spec(T.CHANGED_ADDRESS, ChangedAddress, _enc_address, _address_decoder(ChangedAddress)),
    _spec(T.SOURCE_ADDRESS, SourceAddress, _enc_address, _address_decoder(SourceAddress)),
    _spec(T.USERNAME, Username, _enc_username, _text_decoder(Username)),
    _spec(T.REALM, Realm, _enc_text, _text_decoder(Realm)),
    _spec(T.NONCE, Nonce, _enc_text, _text_decoder(Nonce)),
    _spec(T.SOFTWARE, Software, _enc_text, _text_decoder(Software)),
    _spec(T.USERHASH, Userhash, lambda a, _t: _exact(a.value, 32),
          lambda v, _t: Userhash(_exact(v, 32))),
    _spec(T.MESSAGE_INTEGRITY, MessageIntegrity, lambda a, _t: a.hmac,
          lambda v, _t: MessageIntegrity(_exact(v, 20)), computed=True),
    _spec(T.MESSAGE_INTEGRITY_SHA256, MessageIntegritySha256, lambda a, _t: a.hmac,
          _dec_mi256, computed=True),
    _spec(T.FINGERPRINT, Fingerprint, lambda a, _t: _U32.pack(a.crc),
          lambda v, _t: Fingerprint(_U32.unpack(v)[0]), computed=True),
    _spec(T.PASSWORD_ALGORITHM, PasswordAlgorithmAttr, _enc_algorithm, _dec_algorithm),
    _spec(T.PASSWORD_ALGORITHMS, PasswordAlgorithms, _enc_algorithms, _dec_algorithms_attr),
    _spec(T.ERROR_CODE, ErrorCodeAttr, _enc_error, _dec_error),
    _spec(T.UNKNOWN_ATTRIBUTES, UnknownAttributes, _enc_unknown_attributes,
          _dec_unknown_attributes),
    _spec(T.CHANGE_REQUEST, ChangeRequest, _enc_change_request, _dec_change_request),
    _spec(T.RESPONSE_PORT, ResponsePort, lambda a, _t: _U16_PAD.pack(a.port), _dec_response_port),
    _spec(T.PADDING, Padding, _enc_raw_value, lambda v, _t: Padding(v)),
    _spec(T.PRIORITY, Priority, lambda a, _t: _U32.pack(a.priority),
          lambda v, _t: Priority(_U32.unpack(v)[0])),
    _spec(T.USE_CANDIDATE, UseCandidate, _empty, _dec_use_candidate),
    _spec(T.ICE_CONTROLLED, IceControlled, lambda a, _t: _U64.pack(a.tiebreaker),
          lambda v, _t: IceControlled(_U64.unpack(v)[0])),
    _spec(T.ICE_CONTROLLING, IceControlling, lambda a, _t: _U64.pack(a.tiebreaker),
          lambda v, _t: IceControlling(_U64.unpack(v)[0])),
    _spec(T.CHANNEL_NUMBER, ChannelNumber, lambda a, _t: _U16_PAD.pack(a.number),
          lambda v, _t: ChannelNumber(_U16_PAD.unpack(v)[0])),
    _spec(T.LIFETIME, Lifetime, lambda a, _t: _U32.pack(a.seconds),
          lambda v, _t: Lifetime(_U32.unpack(v)[0])),
    _spec(T.DATA, Data, _enc_raw_value, lambda v, _t: Data(v)),
    _spec(T.REQUESTED_ADDRESS_FAMILY, RequestedAddressFamily,
          lambda a, _t: _U8_PAD.pack(a.family),
          lambda v, _t: RequestedAddressFamily(_U8_PAD.unpack(v)[0])),
    _spec(T.EVEN_PORT, EvenPort, lambda a, _t: b"\x80" if a.reserve else b"\x00",
          lambda v, _t: EvenPort(bool(_U8.unpack(v)[0] & 0x80))),
    _spec(T.REQUESTED_TRANSPORT, RequestedTransport, lambda a, _t: _U8_PAD.pack(a.protocol),
          lambda v, _t: RequestedTransport(_U8_PAD.unpack(v)[0])),
    _spec(T.DONT_FRAGMENT, DontFragment, _empty, _dec_dont_fragment),
    _spec(T.RESERVATION_TOKEN, ReservationToken, lambda a, _t: _exact(a.token, 8),
          lambda v, _t: ReservationToken(_exact(v, 8))),
)  # fmt: skip
del T

SPEC_BY_TYPE: dict[int, AttributeSpec] = {spec.code: spec for spec in ATTRIBUTE_SPECS}
SPEC_BY_CLASS: dict[type[Attribute], AttributeSpec] = {spec.cls: spec for spec in ATTRIBUTE_SPECS}
PAD = _PAD
