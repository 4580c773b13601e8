"""RFC 5769 test vectors ("Test Vectors for STUN", April 2010), copied from the RFC text.

Vectors 2.1-2.3 pad SOFTWARE/USERNAME with 0x20 bytes; we write zeros (RFC 8489 §14), and the
HMAC and CRC cover the padding. So re-encoding them is compared with the vector after its
padding is zeroed and its MESSAGE-INTEGRITY and FINGERPRINT recomputed by the plain reference
below (hashlib/binascii, written straight from RFC 8489 §14.5 and §14.7), and the original and
our bytes are checked to differ in nothing but padding, MESSAGE-INTEGRITY and FINGERPRINT.
Vector 2.4 has zero padding and no FINGERPRINT, so it must come out byte for byte.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import ipaddress
import struct

import pytest

from node.proto import stun


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


SHORT_TERM_PASSWORD = "VOkJxbRl1RmTxUk/WvJxBt"  # RFC 5769 §2.1-§2.3
TID = _hex("b7 e7 a7 01 bc 34 d6 86 fa 87 df ae")

SAMPLE_REQUEST = _hex("""
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf""")  # §2.1

SAMPLE_IPV4_RESPONSE = _hex("""
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96""")  # §2.2

SAMPLE_IPV6_RESPONSE = _hex("""
    01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04 c8 fb 0b 4c""")  # §2.3

LONG_TERM_REQUEST = _hex("""
    00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
    00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
    00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46
                53 54 76 79 36 34 73 41
    00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
    00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66""")  # §2.4

LT_USERNAME = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
LT_PASSWORD_RAW = "The\u00adM\u00aatr\u2168"  # as §2.4 gives it, before SASLprep
LT_PASSWORD = "TheMatrIX"  # its SASLprep/OpaqueString form
LT_REALM = "example.org"
LT_NONCE = "f//499k954d6OL34oL9FSTvy64sA"


# --- the plain reference (RFC 8489 §14, §14.5, §14.7), independent of the codec ---


def _walk(data: bytes) -> list[tuple[int, int, int]]:
    """(type, value offset, value length) of every attribute."""
    out, pos = [], 20
    while pos < len(data):
        code, size = struct.unpack_from("!HH", data, pos)
        out.append((code, pos + 4, size))
        pos += 4 + size + (-size % 4)
    return out


def _padding_offsets(data: bytes) -> set[int]:
    return {start + size + i for _, start, size in _walk(data) for i in range(-size % 4)}


def _zero_padding(data: bytes) -> bytes:
    out = bytearray(data)
    for i in _padding_offsets(data):
        out[i] = 0
    return bytes(out)


def _reference_resign(data: bytes, key: bytes) -> bytes:
    """Recompute MESSAGE-INTEGRITY and FINGERPRINT of ``data`` in place."""
    out = bytearray(data)
    for code, start, size in _walk(data):
        if code == 0x0008:
            covered = out[:2] + struct.pack("!H", start + size - 20) + out[4 : start - 4]
            out[start : start + size] = hmac.new(key, bytes(covered), hashlib.sha1).digest()
        if code == 0x8028:
            crc = binascii.crc32(bytes(out[: start - 4])) ^ 0x5354554E
            out[start : start + size] = struct.pack("!I", crc)
    return bytes(out)


def test_reference_accepts_the_vectors_as_published() -> None:
    # Guards the hand-copied hex: the reference re-signs each vector to itself.
    key = SHORT_TERM_PASSWORD.encode()
    for vector in (SAMPLE_REQUEST, SAMPLE_IPV4_RESPONSE, SAMPLE_IPV6_RESPONSE):
        assert _reference_resign(vector, key) == vector
    lt_key = hashlib.md5(f"{LT_USERNAME}:{LT_REALM}:{LT_PASSWORD}".encode()).digest()
    assert _reference_resign(LONG_TERM_REQUEST, lt_key) == LONG_TERM_REQUEST


# --- the codec against the vectors ---

SHORT_TERM_VECTORS = [
    pytest.param(SAMPLE_REQUEST, id="2.1-request"),
    pytest.param(SAMPLE_IPV4_RESPONSE, id="2.2-ipv4-response"),
    pytest.param(SAMPLE_IPV6_RESPONSE, id="2.3-ipv6-response"),
]


@pytest.mark.parametrize("vector", SHORT_TERM_VECTORS)
def test_short_term_vectors_verify(vector: bytes) -> None:
    key = stun.short_term_key(SHORT_TERM_PASSWORD)
    assert stun.is_stun(vector)
    assert stun.verify_fingerprint(vector)
    assert stun.verify_integrity(vector, key)
    assert not stun.verify_integrity(vector, b"VOkJxbRl1RmTxUk/WvJxBT")


@pytest.mark.parametrize("vector", SHORT_TERM_VECTORS)
def test_short_term_vectors_reencode_with_zero_padding(vector: bytes) -> None:
    key = stun.short_term_key(SHORT_TERM_PASSWORD)
    ours = stun.encode(stun.decode(vector), key=key)
    assert ours == _reference_resign(_zero_padding(vector), key)
    assert len(ours) == len(vector)
    _, mi_start, _ = next(a for a in _walk(vector) if a[0] == 0x0008)
    signed = set(range(mi_start, mi_start + 20)) | set(range(len(vector) - 4, len(vector)))
    differing = {i for i, (a, b) in enumerate(zip(ours, vector, strict=True)) if a != b}
    assert differing <= _padding_offsets(vector) | signed
    assert stun.verify_integrity(ours, key) and stun.verify_fingerprint(ours)


def test_sample_request_attributes() -> None:
    msg = stun.decode(SAMPLE_REQUEST)
    assert (msg.method, msg.message_class) == (stun.Method.BINDING, stun.MessageClass.REQUEST)
    assert msg.transaction_id == TID
    assert msg.attributes[:4] == (
        stun.Software("STUN test client"),
        stun.Priority(0x6E0001FF),
        stun.IceControlled(0x932FF9B151263B36),
        stun.Username("evtj:h6vY"),
    )
    assert msg.find(stun.MessageIntegrity) == stun.MessageIntegrity(
        _hex("9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2")
    )
    assert msg.find(stun.Fingerprint) == stun.Fingerprint(0xE57A3BCF)
    assert msg.unknown_comprehension_required() == ()


@pytest.mark.parametrize(
    ("vector", "ip"),
    [
        (SAMPLE_IPV4_RESPONSE, ipaddress.ip_address("192.0.2.1")),
        (SAMPLE_IPV6_RESPONSE, ipaddress.ip_address("2001:db8:1234:5678:11:2233:4455:6677")),
    ],
)
def test_sample_responses_xor_mapped_address(
    vector: bytes, ip: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> None:
    msg = stun.decode(vector)
    assert (msg.method, msg.message_class) == (stun.Method.BINDING, stun.MessageClass.SUCCESS)
    assert msg.find(stun.Software) == stun.Software("test vector")
    assert msg.find(stun.XorMappedAddress) == stun.XorMappedAddress(ip, 32853)


def test_long_term_vector_verifies_and_reencodes_byte_for_byte() -> None:
    key = stun.long_term_key(LT_USERNAME, LT_REALM, LT_PASSWORD)
    assert key == hashlib.md5(f"{LT_USERNAME}:{LT_REALM}:{LT_PASSWORD}".encode()).digest()
    assert stun.verify_integrity(LONG_TERM_REQUEST, key)
    assert not stun.verify_fingerprint(LONG_TERM_REQUEST)  # the vector has none
    msg = stun.decode(LONG_TERM_REQUEST)
    assert msg.transaction_id == _hex("78 ad 34 33 c6 ad 72 c0 29 da 41 2e")
    assert msg.attributes[:3] == (
        stun.Username(LT_USERNAME),
        stun.Nonce(LT_NONCE),
        stun.Realm(LT_REALM),
    )
    assert stun.encode(msg, key=key, fingerprint=False) == LONG_TERM_REQUEST


def test_long_term_vector_password_needs_saslprep() -> None:
    # §2.4 gives the password as "The<U+00AD>M<U+00AA>tr<U+2168>": SASLprep (RFC 5389's rule)
    # maps it to "TheMatrIX"; OpaqueString (RFC 8489's) refuses the soft hyphen.
    key = stun.long_term_key(LT_USERNAME, LT_REALM, LT_PASSWORD_RAW, rfc5389=True)
    assert stun.verify_integrity(LONG_TERM_REQUEST, key)
    with pytest.raises(stun.PrepError):
        stun.long_term_key(LT_USERNAME, LT_REALM, LT_PASSWORD_RAW)
    wrong = stun.long_term_key(LT_USERNAME, LT_REALM, "thematrix")
    assert not stun.verify_integrity(LONG_TERM_REQUEST, wrong)


def test_vectors_with_padding_bytes_changed_still_decode() -> None:
    # Padding is accepted as anything on input (RFC 8489 §14); FINGERPRINT then differs.
    key = stun.short_term_key(SHORT_TERM_PASSWORD)
    resigned = _reference_resign(_zero_padding(SAMPLE_REQUEST), key)
    assert stun.decode(resigned).attributes == (
        *stun.decode(SAMPLE_REQUEST).attributes[:4],
        stun.MessageIntegrity(resigned[-28:-8]),
        stun.Fingerprint(struct.unpack("!I", resigned[-4:])[0]),
    )
