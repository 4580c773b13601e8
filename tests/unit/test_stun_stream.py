"""Stream framing of STUN and ChannelData over TCP/TLS (RFC 8489 §6.2.2, RFC 8656 §12.4)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.proto import stun

TID = bytes(12)


def _stun(n: int) -> bytes:
    msg = stun.Message(
        stun.Method.SEND,
        stun.MessageClass.INDICATION,
        n.to_bytes(12, "big"),
        (stun.XorPeerAddress(ipaddress.ip_address("198.18.0.2"), n), stun.Data(b"x" * n)),
    )
    return stun.encode(msg)


def _frames(framer: stun.StreamFramer) -> list[stun.StunFrame | stun.ChannelData]:
    out = []
    while (frame := framer.next_frame()) is not None:
        out.append(frame)
    return out


@settings(max_examples=100, deadline=None)
@given(
    kinds=st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=6),
    cuts=st.lists(st.integers(1, 50), max_size=20),
)
def test_any_chunking_yields_the_same_frames(kinds: list[tuple[bool, int]], cuts: list[int]) -> None:
    wire = b""
    expected: list[stun.StunFrame | stun.ChannelData] = []
    for is_stun, n in kinds:
        if is_stun:
            raw = _stun(n)
            wire += raw
            expected.append(stun.StunFrame(stun.decode(raw), raw))
        else:
            wire += stun.encode_channel_data(0x4000 + n, bytes([n]) * n, pad=True)
            expected.append(stun.ChannelData(0x4000 + n, bytes([n]) * n))
    framer = stun.StreamFramer()
    got = []
    pos = 0
    for cut in [*cuts, len(wire)]:
        framer.feed(wire[pos : pos + cut])
        pos += cut
        got += _frames(framer)
        if pos >= len(wire):
            break
    assert got == expected
    assert framer.buffered == 0


def test_raw_bytes_of_stun_frames_verify() -> None:
    raw = stun.encode(
        stun.Message(stun.Method.REFRESH, stun.MessageClass.REQUEST, TID, (stun.Lifetime(0),)),
        key=b"k",
    )
    framer = stun.StreamFramer()
    framer.feed(raw)
    frame = framer.next_frame()
    assert isinstance(frame, stun.StunFrame)
    assert stun.verify_integrity(frame.raw, b"k")
    assert frame.message.find(stun.Lifetime) == stun.Lifetime(0)


def test_overflow_raises_a_typed_remote_error_and_breaks_the_stream() -> None:
    framer = stun.StreamFramer(max_buffer=64)
    framer.feed(bytes(60))
    with pytest.raises(stun.StreamOverflowError) as caught:
        framer.feed(bytes(5))
    assert caught.value.limit == 64 and caught.value.wanted == 65
    assert framer.broken
    with pytest.raises(stun.StunDecodeError) as again:
        framer.next_frame()
    assert again.value.reason is stun.DecodeReason.STREAM_BROKEN


def test_frame_larger_than_the_cap_is_refused_at_its_header() -> None:
    framer = stun.StreamFramer(max_buffer=64)
    framer.feed(b"\x40\x00\x01\x00")  # ChannelData of 256 bytes
    with pytest.raises(stun.StreamOverflowError):
        framer.next_frame()
    assert framer.broken


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80\x00\x00\x00", stun.DecodeReason.NOT_STUN),
        (b"\x50\x00\x00\x00", stun.DecodeReason.NOT_STUN),
        (b"\x00\x01\x00\x00\x21\x12\xa4\x43", stun.DecodeReason.BAD_MAGIC),
        (b"\x00\x01\x00\x03\x21\x12\xa4\x42", stun.DecodeReason.BAD_LENGTH),
    ],
)
def test_framing_errors_are_fatal(data: bytes, reason: stun.DecodeReason) -> None:
    framer = stun.StreamFramer()
    framer.feed(data)
    with pytest.raises(stun.StunDecodeError) as caught:
        framer.next_frame()
    assert caught.value.reason is reason
    with pytest.raises(stun.StunDecodeError):
        framer.feed(b"more")


def test_bad_stun_content_is_consumed_and_the_stream_goes_on() -> None:
    bad = bytearray(_stun(3))
    bad[-1] ^= 1  # FINGERPRINT
    framer = stun.StreamFramer()
    framer.feed(bytes(bad) + stun.encode_channel_data(0x4001, b"ok", pad=True))
    with pytest.raises(stun.StunDecodeError) as caught:
        framer.next_frame()
    assert caught.value.reason is stun.DecodeReason.BAD_FINGERPRINT
    assert not framer.broken
    assert framer.next_frame() == stun.ChannelData(0x4001, b"ok")


def test_partial_header_waits() -> None:
    framer = stun.StreamFramer()
    framer.feed(b"\x00")
    assert framer.next_frame() is None
    framer.feed(b"\x01\x00\x00\x21\x12")
    assert framer.next_frame() is None
    framer.feed(b"\xa4\x42" + TID)
    frame = framer.next_frame()
    assert isinstance(frame, stun.StunFrame) and frame.message.method is stun.Method.BINDING


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=40), max_size=6), cap=st.integers(8, 200))
def test_arbitrary_bytes_raise_only_codec_errors(chunks: list[bytes], cap: int) -> None:
    framer = stun.StreamFramer(max_buffer=cap)
    try:
        for chunk in chunks:
            framer.feed(chunk)
            for _ in range(5):
                try:
                    if framer.next_frame() is None:
                        break
                except stun.StunDecodeError:
                    if framer.broken:
                        raise
    except (stun.StunDecodeError, stun.StreamOverflowError):
        assert framer.broken
