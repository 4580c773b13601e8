"""Integrity, fingerprint, credentials and the decoder's ordering rules."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct

import pytest

from node.errors import RemoteError
from node.proto import stun

TID = bytes(range(12))
IP4 = ipaddress.ip_address("203.0.113.9")


def _msg(*attrs: stun.Attribute) -> stun.Message:
    return stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, TID, attrs)


def _with_length(data: bytes, extra: int) -> bytes:
    return data[:2] + struct.pack("!H", len(data) - 20 + extra) + data[4:]


def test_wrong_key_fails_and_right_key_passes() -> None:
    raw = stun.encode(_msg(stun.Username("a:b")), key=b"secret")
    assert stun.verify_integrity(raw, b"secret")
    assert not stun.verify_integrity(raw, b"Secret")
    assert not stun.verify_integrity(stun.encode(_msg()), b"secret")  # absent


def test_sha256_round_trip() -> None:
    raw = stun.encode(_msg(stun.Username("a:b")), key=b"k", sha256=True)
    msg = stun.decode(raw)
    mi = msg.find(stun.MessageIntegritySha256)
    assert mi is not None and len(mi.hmac) == 32
    assert msg.find(stun.MessageIntegrity) is None
    assert stun.verify_integrity(raw, b"k") and not stun.verify_integrity(raw, b"K")


def test_truncated_sha256_integrity_verifies() -> None:
    # RFC 8489 §14.6: MESSAGE-INTEGRITY-SHA256 may be truncated to 16..32 bytes, 4n.
    body = stun.encode(_msg(stun.Software("x")), fingerprint=False)
    covered = _with_length(body, 4 + 16)
    mac = hmac.digest(b"k", covered, "sha256")[:16]
    raw = covered + struct.pack("!HH", 0x001C, 16) + mac
    assert stun.decode(raw).find(stun.MessageIntegritySha256) == stun.MessageIntegritySha256(mac)
    assert stun.verify_integrity(raw, b"k")
    assert not stun.verify_integrity(raw, b"j")


def test_sha256_is_preferred_when_both_are_present() -> None:
    first = stun.encode(_msg(), key=b"old", fingerprint=False)  # ends with MESSAGE-INTEGRITY
    covered = _with_length(first, 36)
    raw = covered + struct.pack("!HH", 0x001C, 32) + hmac.digest(b"new", covered, "sha256")
    assert stun.verify_integrity(raw, b"new")
    assert not stun.verify_integrity(raw, b"old")
    msg = stun.decode(raw)
    assert msg.find(stun.MessageIntegrity) is not None
    assert msg.find(stun.MessageIntegritySha256) is not None


def test_fingerprint_mismatch_is_detected() -> None:
    raw = bytearray(stun.encode(_msg(stun.Software("hello"))))
    raw[-1] ^= 1
    assert not stun.verify_fingerprint(bytes(raw))
    with pytest.raises(stun.StunDecodeError) as caught:
        stun.decode(bytes(raw))
    assert caught.value.reason is stun.DecodeReason.BAD_FINGERPRINT
    assert caught.value.transaction_id == TID


def test_attributes_after_integrity_are_ignored() -> None:
    signed = stun.encode(_msg(stun.Username("u")), key=b"k", fingerprint=False)
    extra = struct.pack("!HH", 0x8022, 4) + b"evil"
    raw = _with_length(signed, len(extra)) + extra
    msg = stun.decode(raw)
    assert msg.find(stun.Software) is None
    assert stun.verify_integrity(raw, b"k")


def test_attribute_after_fingerprint_is_rejected() -> None:
    raw = stun.encode(_msg())
    extra = struct.pack("!HH", 0x8022, 4) + b"late"
    with pytest.raises(stun.StunDecodeError) as caught:
        stun.decode(_with_length(raw, len(extra)) + extra)
    assert caught.value.reason is stun.DecodeReason.BAD_ORDER


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x01\x00", stun.DecodeReason.TOO_SHORT),
        (b"\x40" + bytes(19), stun.DecodeReason.NOT_STUN),
        (b"\x00\x01\x00\x00" + bytes(16), stun.DecodeReason.BAD_MAGIC),
        (b"\x00\x01\x00\x04\x21\x12\xa4\x42" + bytes(12), stun.DecodeReason.BAD_LENGTH),
        (b"\x00\x02\x00\x00\x21\x12\xa4\x42" + bytes(12), stun.DecodeReason.UNKNOWN_METHOD),
        (
            b"\x01\x01\x00\x08\x21\x12\xa4\x42" + bytes(12) + b"\x00\x20\x00\x04" + bytes(4),
            stun.DecodeReason.BAD_ATTRIBUTE,
        ),
        (
            b"\x01\x01\x00\x04\x21\x12\xa4\x42" + bytes(12) + b"\x00\x20\x00\x08",
            stun.DecodeReason.BAD_LENGTH,
        ),
    ],
)
def test_decode_reasons(data: bytes, reason: stun.DecodeReason) -> None:
    with pytest.raises(stun.StunDecodeError) as caught:
        stun.decode(data)
    assert caught.value.reason is reason
    assert isinstance(caught.value, RemoteError)


def test_unknown_method_error_carries_the_transaction_id() -> None:
    with pytest.raises(stun.StunDecodeError) as caught:
        stun.decode(b"\x00\x02\x00\x00\x21\x12\xa4\x42" + TID)
    assert caught.value.transaction_id == TID


def test_unknown_comprehension_required_and_find_first() -> None:
    msg = stun.decode(
        stun.encode(
            _msg(
                stun.UnknownAttribute(0x7001, b"a"),
                stun.UnknownAttribute(0xC001, b"b"),
                stun.Lifetime(1),
                stun.Lifetime(2),
                stun.UnknownAttribute(0x0002, b""),
            )
        )
    )
    assert msg.unknown_comprehension_required() == (0x7001, 0x0002)
    assert msg.find(stun.Lifetime) == stun.Lifetime(1)
    assert msg.find_all(stun.Lifetime) == (stun.Lifetime(1), stun.Lifetime(2))
    assert msg.find(stun.Data) is None


def test_padding_is_written_as_zeros() -> None:
    raw = stun.encode(_msg(stun.Software("abcde")), fingerprint=False)
    assert raw[20:] == b"\x80\x22\x00\x05abcde\x00\x00\x00"


def test_message_type_bits() -> None:
    # RFC 8489 §5: Binding success is 0x0101, Allocate error 0x0113, ChannelBind request 0x0009.
    assert stun.message_type(stun.Method.BINDING, stun.MessageClass.SUCCESS) == 0x0101
    assert stun.message_type(stun.Method.ALLOCATE, stun.MessageClass.ERROR) == 0x0113
    assert stun.message_type(stun.Method.DATA, stun.MessageClass.INDICATION) == 0x0017
    assert stun.message_type(0xFFF, stun.MessageClass.REQUEST) == 0x3EEF


@pytest.mark.parametrize(
    "msg",
    [
        stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, b"short"),
        _msg(stun.XorMappedAddress(IP4, 70000)),
        _msg(stun.XorMappedAddress("203.0.113.9", 1)),  # type: ignore[arg-type]
        _msg(stun.ErrorCodeAttr(200, "OK?")),
        _msg(stun.Username("u" * 509)),
        _msg(stun.Software("s" * 128)),
        _msg(stun.Userhash(b"too short")),
        _msg(stun.Data(bytes(70000))),
        _msg(stun.Data(bytes(65530))),
        _msg(stun.UnknownAttribute(0x10000, b"")),
        _msg(stun.Software("\udcff")),
        _msg("not an attribute"),  # type: ignore[arg-type]
        stun.Message(0x1000, stun.MessageClass.REQUEST, TID),  # type: ignore[arg-type]
        stun.Message(stun.Method.BINDING, 0x001, TID),  # type: ignore[arg-type]
        stun.Message("BINDING", stun.MessageClass.REQUEST, TID),  # type: ignore[arg-type]
    ],
)
def test_encode_errors_are_typed(msg: stun.Message) -> None:
    with pytest.raises(stun.StunEncodeError):
        stun.encode(msg, key=b"k")


def test_is_stun() -> None:
    assert stun.is_stun(stun.encode(_msg()))
    assert not stun.is_stun(b"\x40" + stun.encode(_msg())[1:])
    assert not stun.is_stun(bytes(20))
    assert not stun.is_stun(stun.encode(_msg())[:19])


def test_new_transaction_ids_are_12_random_bytes() -> None:
    ids = {stun.new_transaction_id() for _ in range(50)}
    assert len(ids) == 50 and all(len(i) == 12 for i in ids)


# --- credentials ---


def test_long_term_key_variants() -> None:
    text = b"user:realm:pass"
    assert stun.long_term_key("user", "realm", "pass") == hashlib.md5(text).digest()
    assert (
        stun.long_term_key("user", "realm", "pass", stun.PasswordAlgorithm.SHA256)
        == hashlib.sha256(text).digest()
    )
    assert stun.long_term_key("user", "realm", "pass", rfc5389=True) == hashlib.md5(text).digest()
    with pytest.raises(stun.StunEncodeError):
        stun.long_term_key("u", "r", "p", 7)  # type: ignore[arg-type]


def test_short_term_key_and_userhash() -> None:
    assert stun.short_term_key("VOkJxbRl1RmTxUk/WvJxBt") == b"VOkJxbRl1RmTxUk/WvJxBt"
    assert stun.short_term_key("caf\u0065\u0301") == "caf\u00e9".encode()  # NFC
    assert stun.userhash("user", "realm") == hashlib.sha256(b"user:realm").digest()


@pytest.mark.parametrize(
    ("raw", "prepared"),
    [
        # RFC 4013 §3 examples.
        ("I\u00adX", "IX"),
        ("user", "user"),
        ("USER", "USER"),
        ("\u00aa", "a"),
        ("\u2168", "IX"),
        ("The\u00adM\u00aatr\u2168", "TheMatrIX"),  # RFC 5769 §2.4
        ("a\u00a0b", "a b"),  # non-ASCII space mapped to SPACE
    ],
)
def test_saslprep(raw: str, prepared: str) -> None:
    assert stun.saslprep(raw) == prepared


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("\u0007", stun.PrepFailure.PROHIBITED),  # RFC 4013 §3
        ("\u0627\u0031", stun.PrepFailure.BIDI),  # RFC 4013 §3
        ("\u0221", stun.PrepFailure.UNASSIGNED),  # unassigned in Unicode 3.2, stored strings
    ],
)
def test_saslprep_rejects(raw: str, reason: stun.PrepFailure) -> None:
    with pytest.raises(stun.PrepError) as caught:
        stun.saslprep(raw, allow_unassigned=False)
    assert caught.value.reason is reason


@pytest.mark.parametrize(
    ("raw", "prepared"),
    [
        ("TheMatrIX", "TheMatrIX"),
        ("\u30de\u30c8\u30ea\u30c3\u30af\u30b9", "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"),
        ("a\u3000b", "a b"),  # ideographic space -> SPACE (RFC 8265 §4.2.1)
        ("e\u0301", "\u00e9"),  # NFC
        ("\u2168", "\u2168"),  # compatibility characters are kept (FreeformClass)
        ("l\u00b7l", "l\u00b7l"),  # CONTEXTO: middle dot between two l
    ],
)
def test_opaque_string(raw: str, prepared: str) -> None:
    assert stun.opaque_string(raw) == prepared


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", stun.PrepFailure.EMPTY),
        ("a\u0000", stun.PrepFailure.PROHIBITED),
        ("a\u00adb", stun.PrepFailure.PROHIBITED),  # default ignorable
        ("a\ue000", stun.PrepFailure.PROHIBITED),  # private use
        ("a\ufdd0", stun.PrepFailure.PROHIBITED),  # noncharacter
        ("\u1100", stun.PrepFailure.PROHIBITED),  # old Hangul jamo
        ("a\u0378", stun.PrepFailure.UNASSIGNED),
        ("a\u00b7b", stun.PrepFailure.CONTEXT),
        ("a\u200db", stun.PrepFailure.CONTEXT),
    ],
)
def test_opaque_string_rejects(raw: str, reason: stun.PrepFailure) -> None:
    with pytest.raises(stun.PrepError) as caught:
        stun.opaque_string(raw)
    assert caught.value.reason is reason


@pytest.mark.parametrize(
    ("raw", "allowed"),
    [
        # RFC 5892 Appendix A rules, each both ways.
        ("\u0375\u03b1", True),  # Greek keraia before Greek
        ("\u0375a", False),
        ("\u05d0\u05f3", True),  # Hebrew geresh after Hebrew
        ("a\u05f3", False),
        ("\u30a2\u30fb", True),  # katakana middle dot with katakana around
        ("a\u30fb", False),
        ("\u0660\u0661", True),  # Arabic-Indic digits, one kind only
        ("\u0660\u06f0", False),
        ("\u06f0\u0660", False),
        ("\u0915\u094d\u200d", True),  # ZWJ after a virama
        ("\u200c", False),
    ],
)
def test_opaque_string_context_rules(raw: str, allowed: bool) -> None:
    if allowed:
        assert stun.opaque_string(raw) == raw
    else:
        with pytest.raises(stun.PrepError) as caught:
            stun.opaque_string(raw)
        assert caught.value.reason is stun.PrepFailure.CONTEXT
