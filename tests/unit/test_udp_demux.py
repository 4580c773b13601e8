"""The UDP port's demultiplexer and cookie gate, in memory: every message kind, garbage, and the
half-open share that makes even an under-rate INIT bring a cookie back first."""

from __future__ import annotations

import os

import pytest

from node.proto import stun
from node.proto.session.cookie import CookieChecker, open_cookie_reply
from node.proto.session.messages import MessageType, decode_cookie_reply, encode_init, with_mac2
from node.proto.stun.types import MAGIC_COOKIE_BYTES
from node.transports.udp.admission import CookieGate
from node.transports.udp.demux import Kind, classify


@pytest.mark.parametrize("kind", list(MessageType))
def test_every_session_type_word_is_a_session_message(kind: MessageType) -> None:
    # Even with the STUN magic cookie where STUN has it: the type word decides first.
    assert classify(int(kind).to_bytes(4, "little") + MAGIC_COOKIE_BYTES + os.urandom(40)) is Kind.SESSION


@pytest.mark.parametrize(
    ("klass", "expected"),
    [
        (stun.MessageClass.REQUEST, Kind.STUN_REQUEST),
        (stun.MessageClass.INDICATION, Kind.STUN_REQUEST),
        (stun.MessageClass.SUCCESS, Kind.STUN_RESPONSE),
        (stun.MessageClass.ERROR, Kind.STUN_RESPONSE),
    ],
)
def test_stun_by_class(klass: stun.MessageClass, expected: Kind) -> None:
    message = stun.encode(stun.Message(stun.Method.BINDING, klass, stun.new_transaction_id()))
    assert classify(message) is expected


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01",
        b"\x01\x00\x00",
        b"\x05\x00\x00\x00" + bytes(40),
        b"\x80" * 64,
        b"\x00\x01\x00\x00" + bytes(16),
    ],
)
def test_anything_else_is_unknown(data: bytes) -> None:
    assert classify(data) is Kind.UNKNOWN


def test_a_full_half_open_share_asks_even_an_under_rate_init_for_a_cookie() -> None:
    checker = CookieChecker()  # 100 tokens: the rate alone would admit this INIT
    half_open = [50]
    gate = CookieGate(checker, lambda: half_open[0], 50)
    addr = ("127.0.0.1", 40000)
    init = encode_init(7, os.urandom(32))
    reply = gate(init, addr, 0.0)
    assert isinstance(reply, bytes) and gate.forced == 1
    cookie = open_cookie_reply(decode_cookie_reply(reply), init)
    assert gate(with_mac2(init, cookie), addr, 0.1) is True  # a proven source is let in
    half_open[0] = 49
    assert gate(encode_init(8, os.urandom(32)), ("127.0.0.1", 40001), 0.2) is True
    assert gate(b"\x01\x00\x00\x00" + bytes(252), addr, 0.3) is False  # a bad mac1 is dropped
